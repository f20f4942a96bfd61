//! `cargo xtask serve <service>`: the service as a plain HTTP server on 127.0.0.1, against the
//! local AWS emulator and a local PostgreSQL, both started if needed. Its stores and environment
//! come from its own template (`local::provision`); what the template builds from stack parameters
//! comes from the service's `[package.metadata.lambda.local]` or `--env`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::aws::DEFAULT_REGION;
use crate::local::emulator::{CREDENTIALS, Emulator};
use crate::local::postgres::Postgres;
use crate::local::process::{Program, listening};
use crate::local::provision::{self, Needs, Source};
use crate::local::secrets;
use crate::local::seed;
use crate::names::parse_key_value;
use crate::progress::Progress;
use crate::workspace::Workspace;

/// Run a service locally as an HTTP server, against the emulator and PostgreSQL.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  cargo xtask serve hardware\n  \
                        cargo xtask serve hardware --port 8080 --seed firmware.json\n\n\
    A seed file maps a table's logical id in the template to the items to put in it:\n  \
    {\"FirmwareTable\": [{\"device_type\": \"accessory\", \"version\": \"1.10\", \"created_date\": \"2026-02-01T09:30:00Z\"}]}")]
pub struct Serve {
    /// The service.
    service: String,
    /// The port to listen on, on 127.0.0.1.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// A JSON file of items to put into the service's tables before serving.
    #[arg(long, value_name = "FILE")]
    seed: Option<PathBuf>,
    /// A variable to set in the service's environment, over what serve computes (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    env: Vec<(String, String)>,
}

impl Serve {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let service = workspace.service(&self.service)?;
        let [function] = service.functions.as_slice() else {
            bail!(
                "serve runs services with exactly one function; {} has {}",
                service.name,
                service.functions.len()
            );
        };
        let needs = Needs::for_service(workspace, &service.name)?;
        let seed = self
            .seed
            .as_deref()
            .map(seed::read_seed)
            .transpose()?
            .unwrap_or_default();
        for table in seed.keys() {
            if !needs.tables.contains_key(table) {
                bail!(
                    "the seed file names table {table}, which cloudformation/{}-environment.yaml \
                     does not declare; its tables are {}",
                    service.name,
                    needs.tables.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        if listening(address) {
            bail!(
                "port {} is taken on 127.0.0.1: pick another with --port",
                self.port
            );
        }

        let emulator = Emulator::ensure(workspace, progress)?;
        let database = needs
            .uses(&Source::Database)
            .then(|| Postgres::ensure(workspace, progress))
            .transpose()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sdk = runtime.block_on(emulator.sdk_config(None));
        let scope = provision::SERVE_SCOPE;
        let names = runtime.block_on(provision::provision(
            &sdk,
            &service.name,
            scope,
            &needs,
            progress,
        ))?;
        runtime.block_on(seed::put_seed(&sdk, &service.name, scope, &seed, progress))?;

        // The function reads its secrets from the emulator's Secrets Manager, as it would in AWS.
        let database_secret = match &database {
            Some(database) => {
                Some(runtime.block_on(secrets::database_secret(&sdk, &database.url()))?)
            }
            None => None,
        };
        let service_secret = match needs.uses(&Source::ServiceSecret) {
            true => Some(runtime.block_on(secrets::service_token_secret(&sdk, workspace))?),
            false => None,
        };
        let (mut env, mut unset) = needs.environment(
            &names,
            database_secret.as_deref(),
            service_secret.as_deref(),
        );
        // What `up` fills in, filled in the same way (serve serves no other service, so another
        // API's URL comes from the crate's local.env); then --env over it.
        let values = runtime.block_on(provision::local_values(
            &sdk,
            workspace,
            service,
            scope,
            &emulator.endpoint,
            &Default::default(),
        ))?;
        let mut filled = Vec::new();
        for (name, value) in values.iter().chain(self.env.iter().map(|(k, v)| (k, v))) {
            env.insert(name.clone(), value.clone());
            unset.retain(|n| n != name);
            filled.push(format!("{name}={value}"));
        }
        if !filled.is_empty() {
            progress.note(&format!(
                "filled in locally (built from stack parameters in AWS): {}",
                filled.join(" ")
            ));
        }
        if !unset.is_empty() {
            progress.note(&format!(
                "not set locally (built from stack parameters; set them with --env KEY=VALUE): {}",
                unset.join(", ")
            ));
        }

        let step = progress.step(&format!("building {} (debug)", function.bin));
        let sh = Shell::new()?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = workspace.root.join("Cargo.toml");
        let bin = &function.bin;
        cmd!(
            sh,
            "{cargo} build --quiet --manifest-path {manifest} --bin {bin}"
        )
        .quiet()
        .run()
        .map_err(|_| anyhow::anyhow!("the build failed (the compiler's output is above)"))?;
        step.done(&format!("built {bin}"));

        let binary = workspace.target_dir.join("debug").join(bin);
        let mut program = Program::new(&binary)
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env_remove("AWS_PROFILE");
        for (name, value) in &env {
            program = program.env(name, value);
        }
        let mut running = program
            .env("LISTEN_ADDR", address.to_string())
            .env("AWS_ENDPOINT_URL", &emulator.endpoint)
            .env("AWS_ACCESS_KEY_ID", CREDENTIALS)
            .env("AWS_SECRET_ACCESS_KEY", CREDENTIALS)
            .env("AWS_REGION", DEFAULT_REGION)
            .start(bin)?;
        running.stop_on_signal();
        running
            .wait_until(Duration::from_secs(30), || listening(address))
            .with_context(|| format!("{bin} did not listen on {address}"))?;
        let url = format!("http://{address}");
        let mut banner = format!(
            "{} is serving at {url}/v1 (and {url}/{})\n",
            service.name, service.name
        );
        if let Some(probe) = service.probes.first() {
            let method = match probe.method.as_str() {
                "GET" => String::new(),
                other => format!("-X {other} "),
            };
            banner.push_str(&format!("  try: curl -i {method}{url}{}\n", probe.path));
        }
        banner.push_str(&format!(
            "  stores: the emulator at {}{}\n",
            emulator.endpoint,
            database
                .as_ref()
                .map(|d| format!(", PostgreSQL at {}", d.url()))
                .unwrap_or_default()
        ));
        banner.push_str(
            "  stop with Ctrl-C; the emulator and PostgreSQL keep running for the next serve\n",
        );
        // The service goes on serving when nobody reads the banner any more (a closed pipe).
        let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
        let status = running.wait()?;
        if !status.success() && status.code().is_some() {
            bail!("{bin} stopped ({status})");
        }
        Ok(())
    }
}
