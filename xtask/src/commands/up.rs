//! `cargo xtask up [<service>...] <env> --local`: what an environment runs on the local emulator,
//! run here. For each deployed service it reads the function as Lambda knows it, fetches the exact
//! zip its stack names (checked against its SHA-256), and serves it behind a local API Gateway
//! (`local::gateway`) on a port of its own, under both custom domains' prefixes. A redeploy is
//! picked up by the next request, without a restart.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::aws::Connection;
use crate::cli::Account;
use crate::local::deployed::Deployed;
use crate::local::deployed::{self, Fill, is_unresolved};
use crate::local::emulator::CREDENTIALS;
use crate::local::gateway::event::Stage;
use crate::local::gateway::terminal::{Echo, Kind};
use crate::local::gateway::{self, Instances, Launch};
use crate::local::postgres::Postgres;
use crate::local::provision::{self, Needs, Source};
use crate::local::secrets;
use crate::names::Environment;
use crate::progress::Progress;
use crate::release::stack::Template;
use crate::workspace::{Service, Workspace};

/// Serve what an environment runs on the local emulator: the published zips, behind a local API
/// Gateway.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask deploy hardware dev --local && cargo xtask up hardware dev --local\n  \
    cargo xtask up dev --local                       # every service deployed to dev\n  \
    cargo xtask up hardware users dev --local --port 8000 --concurrency 8\n\n\
    Each service served gets a port of its own, from --port on, in the order given (or the\n\
    workspace's order), and answers both custom domains' paths there: /v1/... as\n\
    <service>.<env>.<domain>/v1 delivers them, and /<service>/... as apis.<env>.<domain>/<service>\n\
    does. arm64 functions run under qemu-aarch64-static: --install-tools installs it (apt-get\n\
    install qemu-user-static libc6-arm64-cross), and PostgreSQL for the services' database.")]
pub struct Up {
    /// The services (default: every one deployed), then the environment.
    #[arg(value_name = "[SERVICE...] ENV", required = true)]
    names: Vec<String>,
    #[command(flatten)]
    account: Account,
    /// The first service's port on 127.0.0.1; the next service gets the next port.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// The most instances of one function at once; more requests than that wait.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Install what is missing with apt-get (as root): qemu for arm64 functions, PostgreSQL.
    #[arg(long = "install-tools")]
    install_tools: bool,
}

/// One service being served.
struct Served {
    deployed: Deployed,
    local: Local,
    instances: Arc<Instances>,
}

/// What this machine provides for a function's environment: the user pools the emulator accepted
/// without creating, the local PostgreSQL whose URL the database secret holds, the secrets a
/// stack deployed without them lacks, and the values of variables built from stack parameters:
/// another served API's URL, another service's token issuer, the crate's
/// `[package.metadata.lambda.local.env]`. What is filled in is said.
struct Local {
    needs: Needs,
    fill: Fill,
}

/// What every served service's environment may draw on here.
struct Here<'a> {
    workspace: &'a Workspace,
    /// The local API Gateway's URL (`/v1`) of each service this command serves, by name.
    urls: BTreeMap<String, String>,
    /// The emulator's endpoint.
    endpoint: String,
    /// `--install-tools`.
    install: bool,
    progress: Progress,
}

impl Local {
    fn prepare(
        aws: &Connection,
        here: &Here,
        service: &Service,
        deployed: &Deployed,
    ) -> anyhow::Result<Local> {
        let Here {
            workspace,
            urls,
            endpoint,
            install,
            progress,
        } = here;
        let needs = Needs::for_service(workspace, &service.name)?;
        let unresolved: Vec<&Source> = needs
            .env
            .iter()
            .filter(|(name, _)| is_unresolved(deployed.environment.get(*name).map(String::as_str)))
            .map(|(_, source)| source)
            .collect();
        let mut fill = Fill::default();
        if unresolved
            .iter()
            .any(|s| matches!(s, Source::Resource(_) | Source::Unset))
        {
            fill.pools = aws.runtime.block_on(provision::provision_pools(
                &aws.sdk,
                &service.name,
                &needs,
            ))?;
        }
        // The emulator's database secret holds the local server's URL as it is now (a restarted
        // server listens on another port), whether deploy passed its ARN or it is filled in here.
        let passed = needs
            .env
            .iter()
            .filter(|(_, source)| **source == Source::Database)
            .filter_map(|(name, _)| deployed.environment.get(name))
            .any(|arn| secrets::is_database_secret(arn));
        if passed || unresolved.contains(&&Source::Database) {
            let url = Postgres::ensure_installed(workspace, *install, *progress)?.url();
            fill.database = Some(
                aws.runtime
                    .block_on(secrets::database_secret(&aws.sdk, &url))?,
            );
        }
        if unresolved.contains(&&Source::ServiceSecret) {
            fill.service_secret = Some(
                aws.runtime
                    .block_on(secrets::service_token_secret(&aws.sdk, workspace))?,
            );
        }
        fill.values = service.local.env.clone();
        for (name, _) in needs.env.iter().filter(|(_, s)| **s == Source::Unset) {
            // `HARDWARE_API_URL`: the hardware API this command serves, where it serves it.
            if let Some(url) = name
                .strip_suffix("_API_URL")
                .and_then(|other| urls.get(&other.to_ascii_lowercase()))
            {
                fill.values.insert(name.clone(), url.clone());
            }
        }
        let issuers = provision::issuers(&aws.sdk, workspace, service, &aws.region, endpoint);
        fill.values.extend(aws.runtime.block_on(issuers)?);
        Ok(Local { needs, fill })
    }

    /// `environment` with what the emulator left unresolved filled in; the names filled.
    fn complete(&self, environment: &mut BTreeMap<String, String>, endpoint: &str) -> Vec<String> {
        deployed::complete(&self.needs, environment, &self.fill, endpoint)
    }

    /// The variables the template builds from stack parameters that nothing here could fill.
    fn unset(&self, environment: &BTreeMap<String, String>) -> Vec<String> {
        self.needs
            .env
            .iter()
            .filter(|(name, source)| {
                **source == Source::Unset
                    && is_unresolved(environment.get(*name).map(String::as_str))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl Up {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let Some((environment, names)) = self.names.split_last() else {
            bail!("name the environment, like `up dev --local`, and optionally services before it");
        };
        let environment: Environment = environment.parse()?;
        let services: Vec<&Service> = if names.is_empty() {
            workspace.services.iter().collect()
        } else {
            names
                .iter()
                .map(|name| workspace.service(name))
                .collect::<anyhow::Result<_>>()?
        };
        if !self.account.local {
            bail!("up runs what the local emulator holds: pass --local");
        }
        let session = self.account.connect(workspace, progress)?;
        let aws = &session.aws;
        let endpoint = session.endpoint()?;
        // What is deployed, then the ports of those: a taken one stops everything before anything
        // is fetched, and `up <env>` numbers only the services it serves.
        let mut deployed = Vec::new();
        let mut missing = Vec::new();
        for service in &services {
            match aws
                .runtime
                .block_on(Deployed::read(aws, service, environment))
            {
                Ok(functions) => match <[Deployed; 1]>::try_from(functions) {
                    Ok([function]) => deployed.push((*service, function)),
                    Err(functions) => bail!(
                        "up serves services with one function; {} has {}",
                        service.name,
                        functions.len()
                    ),
                },
                Err(error) if names.is_empty() => {
                    missing.push(format!("{}: {error:#}", service.name));
                }
                Err(error) => return Err(error),
            }
        }
        if deployed.is_empty() {
            bail!(
                "nothing is deployed to {environment} on the emulator: deploy first, like \
                 `cargo xtask deploy hardware {environment} --local`\n{}",
                missing.join("\n")
            );
        }
        let mut listeners = Vec::new();
        for offset in 0..deployed.len() {
            let port = self.port + offset as u16;
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let listener = TcpListener::bind(address).with_context(|| {
                format!("port {port} is taken on 127.0.0.1: pick other ports with --port")
            })?;
            listeners.push(listener);
        }
        let scratch = workspace.target_dir.join("local/up");
        let binary_media_types = binary_media_types(workspace)?;
        let logs = gateway::logs::Logs::start(&aws.sdk);

        let urls = deployed
            .iter()
            .zip(&listeners)
            .map(|((service, _), listener)| {
                let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
                (service.name.clone(), format!("http://127.0.0.1:{port}/v1"))
            })
            .collect();
        let here = Here {
            workspace,
            urls,
            endpoint: endpoint.clone(),
            install: self.install_tools,
            progress,
        };
        let mut served = Vec::new();
        for ((service, deployed), listener) in deployed.iter().zip(listeners) {
            let local = Local::prepare(aws, &here, service, deployed)?;
            let step = progress.step(&format!("fetching {}", deployed.key));
            let launch = launch(
                aws,
                deployed,
                &local,
                &scratch,
                &endpoint,
                self.install_tools,
            )?;
            step.done(&format!("{} is {}", deployed.name, launch.version));
            let stage = Stage {
                name: "v1".to_owned(),
                api_id: deployed
                    .api_id
                    .clone()
                    .unwrap_or_else(|| "local".to_owned()),
                account_id: "123456789012".to_owned(),
                binary_media_types: binary_media_types.clone(),
            };
            let instances = Arc::new(Instances::new(
                &service.name,
                launch,
                self.concurrency,
                logs.clone(),
                Echo::stderr(),
            ));
            let port = listener.local_addr()?.port();
            let serving = Arc::clone(&instances);
            std::thread::spawn(move || gateway::serve(listener, stage, serving));
            println!(
                "{:<14} http://127.0.0.1:{port}/v1  http://127.0.0.1:{port}/{}  ({})",
                service.name,
                service.name,
                instances.version()
            );
            served.push(Served {
                deployed: deployed.clone(),
                local,
                instances,
            });
        }
        for note in &missing {
            progress.note(&format!("not served: {note}"));
        }
        println!(
            "serving the deployed zips; a redeploy is picked up by the next request; Ctrl-C stops"
        );
        let stop = crate::local::process::stop_requested();
        follow(
            aws,
            &mut served,
            &scratch,
            &endpoint,
            environment,
            workspace,
            &stop,
        )?;
        for one in &served {
            one.instances.stop();
        }
        Ok(())
    }
}

/// How to start the function `deployed` describes: its zip fetched and unpacked, run natively or
/// under qemu, with Lambda's environment, the emulator's endpoint, and its own variables.
fn launch(
    aws: &Connection,
    deployed: &Deployed,
    local: &Local,
    scratch: &std::path::Path,
    endpoint: &str,
    install: bool,
) -> anyhow::Result<Launch> {
    let (bootstrap, architecture) = aws.runtime.block_on(deployed.fetch(aws, scratch))?;
    let mut runner = gateway::runner(&bootstrap, architecture, install)?
        .function_name(&deployed.name)
        .memory_mb(deployed.memory_mb)
        .timeout(Duration::from_secs(deployed.timeout_s.into()))
        .env("AWS_REGION", &aws.region)
        .env("AWS_DEFAULT_REGION", &aws.region)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", CREDENTIALS)
        .env("AWS_SECRET_ACCESS_KEY", CREDENTIALS);
    let mut environment = deployed.environment.clone();
    let filled = local.complete(&mut environment, endpoint);
    if !filled.is_empty() {
        Echo::stderr().line(
            &deployed.service,
            Kind::Lambda,
            &format!(
                "filled in locally, since the emulator could not resolve them: {}",
                filled.join(", ")
            ),
        );
    }
    let unset = local.unset(&environment);
    if !unset.is_empty() {
        Echo::stderr().line(
            &deployed.service,
            Kind::Problem,
            &format!(
                "not set (built from stack parameters; deploy with --parameter, or give them in \
                 [package.metadata.lambda.local.env]): {}",
                unset.join(", ")
            ),
        );
    }
    for (name, value) in &environment {
        runner = runner.env(name, value);
    }
    let hash = deployed.sha256()?;
    Ok(Launch {
        function: deployed.name.clone(),
        bootstrap: runner,
        timeout: Duration::from_secs(deployed.timeout_s.into()),
        memory_mb: deployed.memory_mb,
        version: format!("{architecture} {}", &hash[..12]),
    })
}

/// Checks each served function once a second; a new key or configuration is fetched and served
/// from the next request on. A failed check is said and tried again.
fn follow(
    aws: &Connection,
    served: &mut [Served],
    scratch: &std::path::Path,
    endpoint: &str,
    environment: Environment,
    workspace: &Workspace,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    loop {
        for _ in 0..10 {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for one in served.iter_mut() {
            let service = workspace.service(&one.deployed.service)?;
            let now = match aws
                .runtime
                .block_on(Deployed::read(aws, service, environment))
            {
                Ok(functions) => functions.into_iter().next(),
                Err(error) => {
                    one.instances.say(
                        Kind::Problem,
                        &format!("could not read the deployed function: {error:#}"),
                    );
                    continue;
                }
            };
            let Some(now) = now.filter(|now| *now != one.deployed) else {
                continue;
            };
            match launch(aws, &now, &one.local, scratch, endpoint, false) {
                Ok(launch) => {
                    one.instances.say(
                        Kind::Lambda,
                        &format!("redeployed: now serving {}", launch.version),
                    );
                    one.instances.replace(launch);
                    one.deployed = now;
                }
                Err(error) => one.instances.say(
                    Kind::Problem,
                    &format!(
                        "the new deploy cannot be served ({error:#}); the previous one still is"
                    ),
                ),
            }
        }
    }
}

/// The content types whose bodies API Gateway passes base64-encoded, as `apigateway.yaml` declares.
fn binary_media_types(workspace: &Workspace) -> anyhow::Result<Vec<String>> {
    let template = Template::parse("apigateway.yaml", workspace.template("apigateway.yaml")?)?;
    let apis = template.resources("AWS::ApiGateway::RestApi");
    let types = apis
        .first()
        .and_then(|(_, api)| api["Properties"]["BinaryMediaTypes"].as_vec())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(types)
}
