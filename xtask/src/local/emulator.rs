//! `--local`: the AWS emulator (moto in server mode) on 127.0.0.1, started once per workspace and
//! reused, so the whole release pipeline runs with no AWS account.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::progress::Progress;
use crate::workspace::Workspace;

/// The pinned emulator; `scripts/test` installs the same file.
const REQUIREMENTS: &str = include_str!("../requirements-local.txt");
/// moto's server, serialising requests so conditional writes are atomic, as on AWS.
const LAUNCHER: &str = include_str!("../emulator.py");
/// Credentials the emulator accepts; they are not secrets and reach nothing real.
const CREDENTIALS: &str = "testing";
const READY_WITHIN: Duration = Duration::from_secs(30);
/// The emulator creates stacks synchronously; this bounds a stuck one.
const BOOTSTRAP_TIMEOUT_SECONDS: u64 = 600;

/// A running emulator, as recorded in `target/local/emulator.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Emulator {
    pub endpoint: String,
    pub pid: u32,
    pub log: PathBuf,
}

impl Emulator {
    /// Creates the artifact bucket in the emulator the first time, as `cargo xtask bootstrap`
    /// does in an AWS account.
    pub async fn bootstrap(
        &self,
        workspace: &Workspace,
        sdk: &aws_config::SdkConfig,
        bucket: &str,
        progress: Progress,
    ) -> anyhow::Result<()> {
        let exists = crate::aws::s3_client(sdk)
            .head_bucket()
            .bucket(bucket)
            .send()
            .await;
        if exists.is_ok() {
            return Ok(());
        }
        let path = workspace.root.join(crate::bootstrap::TEMPLATE);
        let template = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}, which --local bootstraps", path.display()))?;
        progress.note(&format!("bootstrapping the local artifact bucket {bucket}"));
        crate::bootstrap::apply(
            sdk,
            &template,
            "biometrix-infrastructure",
            Some(bucket),
            BOOTSTRAP_TIMEOUT_SECONDS,
            progress,
        )
        .await?;
        Ok(())
    }

    /// The workspace's emulator: the recorded one if it still answers, else a new one.
    pub fn ensure(workspace: &Workspace, progress: Progress) -> anyhow::Result<Emulator> {
        let state = state_file(workspace);
        if let Some(emulator) = std::fs::read(&state)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Emulator>(&bytes).ok())
            && emulator.answers()
        {
            progress.note(&format!(
                "using the local AWS emulator at {} (pid {})",
                emulator.endpoint, emulator.pid
            ));
            return Ok(emulator);
        }
        let server = moto_server(workspace, progress)?;
        let dir = state.parent().context("the state file has a directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("emulator.log");
        let port = free_port()?;
        let step = progress.step(&format!("starting the local AWS emulator on port {port}"));
        let output =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // The Python that has moto, beside its moto_server.
        let python = server.with_file_name("python3");
        let mut command = Command::new(&python);
        command
            .args(["-c", LAUNCHER, "-H", "127.0.0.1", "-p", &port.to_string()])
            // Its request recorder writes into its working directory.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        #[cfg(unix)]
        {
            // Its own process group: a Ctrl-C meant for this command leaves it running.
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the emulator with {}", python.display()))?;
        let emulator = Emulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            pid: child.id(),
            log: log.clone(),
        };
        let deadline = Instant::now() + READY_WITHIN;
        while !emulator.answers() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the local AWS emulator exited ({status}) before it was ready; its log is {}:\n{}",
                    log.display(),
                    tail(&log)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "the local AWS emulator did not answer within {}s; its log is {}",
                    READY_WITHIN.as_secs(),
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::fs::write(&state, serde_json::to_vec_pretty(&emulator)?)
            .with_context(|| format!("writing {}", state.display()))?;
        step.done(&format!(
            "started the local AWS emulator at {} (pid {})",
            emulator.endpoint, emulator.pid
        ));
        Ok(emulator)
    }

    /// True when something at the endpoint answers like the emulator.
    fn answers(&self) -> bool {
        let Some(address) = self
            .endpoint
            .strip_prefix("http://")
            .and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            return false;
        };
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request =
            format!("GET /moto-api/ HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
    }

    /// The AWS configuration for the emulator: its endpoint and its dummy credentials, never the
    /// caller's real ones.
    pub async fn sdk_config(&self, region: Option<&str>) -> aws_config::SdkConfig {
        let credentials = aws_credential_types::Credentials::new(
            CREDENTIALS,
            CREDENTIALS,
            None,
            None,
            "local emulator",
        );
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .region(aws_config::Region::new(
                region.unwrap_or(crate::aws::DEFAULT_REGION).to_owned(),
            ))
            .load()
            .await
    }
}

pub fn state_file(workspace: &Workspace) -> PathBuf {
    workspace.target_dir.join("local/emulator.json")
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
    if !venv.join("bin/pip").is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("creating .venv for the emulator (is python3 with venv installed?)")?;
    }
    let requirements: Vec<&str> = REQUIREMENTS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(&requirements))
    .context("installing moto into .venv (PyPI must be reachable)")?;
    step.done("installed the AWS emulator");
    Ok(local)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(status.success(), "{command:?} failed ({status})");
    Ok(())
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(listener.local_addr()?.port())
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
