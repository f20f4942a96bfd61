//! The local AWS emulator (moto in server mode, `xtask/emulator.py`) on 127.0.0.1, started once
//! per workspace and reused, so the whole release pipeline runs with no AWS account.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

use super::process::{Program, free_port, on_path};
use super::state;
use crate::progress::Progress;
use crate::workspace::Workspace;

/// The pinned emulator; `scripts/test` installs the same file.
const REQUIREMENTS: &str = include_str!("../../requirements-local.txt");
/// moto's server, serialising requests so conditional writes are atomic, as on AWS, with the
/// module beside it that models CodeDeploy and CloudWatch alarms.
const LAUNCHER: [(&str, &str); 2] = [
    ("emulator.py", include_str!("../../emulator.py")),
    (
        "emulator_traffic.py",
        include_str!("../../emulator_traffic.py"),
    ),
];
/// Credentials the emulator accepts; they are not secrets and reach nothing real.
pub const CREDENTIALS: &str = "testing";
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running emulator, as recorded in `target/local/emulator.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Emulator {
    pub endpoint: String,
    pub pid: u32,
    pub log: PathBuf,
}

impl Emulator {
    /// The workspace's emulator: the recorded one if it still answers, else a new one.
    pub fn ensure(workspace: &Workspace, progress: Progress) -> anyhow::Result<Emulator> {
        let state = state::path(workspace, "emulator");
        if let Some(emulator) = state::read::<Emulator>(&state) {
            if emulator.answers() {
                progress.note(&format!(
                    "using the local AWS emulator at {} (pid {})",
                    emulator.endpoint, emulator.pid
                ));
                return Ok(emulator);
            }
            // Said once: the new emulator records itself, and the next command uses it.
            progress.note(&format!(
                "warning: the local AWS emulator this workspace used (pid {}) is gone, and with it \
                 every local stack, the artifact bucket and the release histories: the emulator \
                 keeps them in memory only. A new, empty one starts now; deploy again to rebuild \
                 the local environment",
                emulator.pid
            ));
        }
        let server = moto_server(workspace, progress)?;
        let dir = state
            .parent()
            .expect("the state file is inside target/local");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("emulator.log");
        let port = free_port()?;
        let step = progress.step(&format!("starting the local AWS emulator on port {port}"));
        // The Python that has moto, beside its moto_server.
        let python = server.with_file_name("python3");
        // Lambda's Invoke runs the function's code through this binary (`lambda-run`).
        let runner = std::env::current_exe().context("finding the release tool's own binary")?;
        for (name, text) in LAUNCHER {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let launcher = dir.join(LAUNCHER[0].0);
        let mut running = Program::new(&python)
            .args([launcher.as_os_str()])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("EMULATOR_LAMBDA_RUNNER", &runner)
            // Its request recorder writes into its working directory.
            .current_dir(dir)
            .log(&log)?
            .detached()
            .start("the local AWS emulator")?;
        let emulator = Emulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            pid: running.id(),
            log,
        };
        running.wait_until(READY_WITHIN, || emulator.answers())?;
        state::write(&state, &emulator)?;
        step.done(&format!(
            "started the local AWS emulator at {} (pid {})",
            emulator.endpoint, emulator.pid
        ));
        Ok(emulator)
    }

    /// Makes the emulator evaluate IAM for every request from now on (moto's
    /// `INITIAL_NO_AUTH_ACTION_COUNT`, set to 0), except its administrator's (`emulator.py`).
    pub fn enforce_iam(&self) -> anyhow::Result<()> {
        let answer = self.request("POST", "/moto-api/reset-auth", "0");
        anyhow::ensure!(
            answer.is_some_and(|head| head.starts_with(b"HTTP/1.1 200")),
            "the local AWS emulator at {} did not switch IAM enforcement on; stop it (`kill {}`) \
             and run the command again, which starts a new one",
            self.endpoint,
            self.pid
        );
        Ok(())
    }

    /// The first bytes of the emulator's answer to one plain HTTP request, or `None`.
    fn request(&self, method: &str, path: &str, body: &str) -> Option<[u8; 12]> {
        let address = self
            .endpoint
            .strip_prefix("http://")
            .and_then(|a| a.parse::<SocketAddr>().ok())?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).ok()?;
        Some(head)
    }

    /// True when something at the endpoint answers like the emulator.
    pub fn answers(&self) -> bool {
        self.request("GET", "/moto-api/", "")
            .is_some_and(|head| head.starts_with(b"HTTP/1.1 200"))
    }

    /// The AWS configuration for the emulator: its endpoint and its dummy credentials, never the
    /// caller's real ones. They are the emulator's administrator, whatever IAM it enforces.
    pub async fn sdk_config(&self, region: Option<&str>) -> aws_config::SdkConfig {
        self.sdk_config_as(region, CREDENTIALS, CREDENTIALS).await
    }

    /// The AWS configuration for the emulator with an access key the emulator made (one of its IAM
    /// users'), which it holds to that user's policies once it enforces IAM.
    pub async fn sdk_config_as(
        &self,
        region: Option<&str>,
        key_id: &str,
        secret: &str,
    ) -> aws_config::SdkConfig {
        let credentials =
            aws_credential_types::Credentials::new(key_id, secret, None, None, "local emulator");
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .region(aws_config::Region::new(
                region.unwrap_or(crate::aws::DEFAULT_REGION).to_owned(),
            ))
            .load()
            .await
    }

    /// The AWS configuration for the emulator as an administrator of `account`: a role in it,
    /// assumed through the emulator's STS as AWS assumes one across accounts. The emulator keeps
    /// each account's stacks, buckets and functions apart.
    pub async fn sdk_config_in(
        &self,
        region: Option<&str>,
        account: &str,
    ) -> anyhow::Result<aws_config::SdkConfig> {
        let administrator = self.sdk_config(region).await;
        let assumed = aws_sdk_sts::Client::new(&administrator)
            .assume_role()
            .role_arn(format!(
                "arn:aws:iam::{account}:role/biometrix-local-administrator"
            ))
            .role_session_name("cargo-xtask")
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sts::error::DisplayErrorContext(&e)))
            .with_context(|| format!("assuming a role in account {account} on the emulator"))?;
        let credentials = assumed
            .credentials()
            .context("the emulator's STS gave no credentials")?;
        Ok(self
            .sdk_config_as(
                region,
                credentials.access_key_id(),
                credentials.secret_access_key(),
            )
            .await)
    }

    /// What a command says after using it: that it keeps running (PostgreSQL too, when a local
    /// deploy started it), and how to look and stop it.
    pub fn note(&self) -> String {
        format!(
            "\nThe local AWS emulator keeps running at {} (pid {}, log {}), with PostgreSQL if a \
             local deploy started it.\n\
             Look around with `AWS_ENDPOINT_URL={} aws cloudformation describe-stacks`; stop \
             both with `cargo xtask stop` (the emulator's stacks and bucket go with it).\n",
            self.endpoint,
            self.pid,
            self.log.display(),
            self.endpoint,
        )
    }

    /// Stops the workspace's emulator, if one is recorded and answers; what was stopped.
    pub fn stop(workspace: &Workspace) -> anyhow::Result<Option<Emulator>> {
        let state = state::path(workspace, "emulator");
        let Some(emulator) = state::read::<Emulator>(&state).filter(Emulator::answers) else {
            return Ok(None);
        };
        super::process::terminate(emulator.pid)?;
        let _ = std::fs::remove_file(&state);
        Ok(Some(emulator))
    }
}

/// `moto_server` from the workspace's `.venv`, from PATH, or installed into `.venv` now.
fn moto_server(workspace: &Workspace, progress: Progress) -> anyhow::Result<PathBuf> {
    let venv = workspace.root.join(".venv");
    let local = venv.join("bin/moto_server");
    if local.is_file() {
        return Ok(local);
    }
    if let Some(found) = on_path("moto_server") {
        return Ok(found);
    }
    let step = progress.step("installing the AWS emulator (moto) into .venv");
    let sh = Shell::new()?;
    if !venv.join("bin/pip").is_file() {
        cmd!(sh, "python3 -m venv {venv}")
            .quiet()
            .run()
            .context("creating .venv for the emulator (is python3 with venv installed?)")?;
    }
    let pip = venv.join("bin/pip");
    let requirements = requirements();
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check {requirements...}"
    )
    .quiet()
    .run()
    .context("installing moto into .venv (PyPI must be reachable)")?;
    step.done("installed the AWS emulator");
    Ok(local)
}

fn requirements() -> Vec<&'static str> {
    REQUIREMENTS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}
