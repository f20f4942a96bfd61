//! `cargo xtask up [<service>...] <env> --local`: what an environment runs on the local emulator,
//! run here. For each deployed service it reads the function as Lambda knows it, fetches the exact
//! zip its stack names (checked against its SHA-256), and serves it behind a local API Gateway
//! (`local::gateway`) on a port of its own, under both custom domains' prefixes. A redeploy is
//! picked up by the next request, without a restart.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::aws::Connection;
use crate::cli::Account;
use crate::environments::Environment;
use crate::local::deployed::Deployed;
use crate::local::emulator::Emulator;
use crate::local::gateway::terminal::{Echo, Kind};
use crate::local::gateway::{self, Instances};
use crate::local::runtime::{self, Here, Local, binary_media_types, launch};
use crate::progress::Progress;
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
    /// What stopped the last check, said once until it changes or passes.
    problem: Option<String>,
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
        let session = self.account.read(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        let emulator = session.emulator()?;
        let endpoint = emulator.endpoint.clone();
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
            let port = u16::try_from(offset)
                .ok()
                .and_then(|offset| self.port.checked_add(offset))
                .with_context(|| {
                    format!(
                        "--port {} leaves no room for {} services, one port each from it: pick a \
                         lower --port",
                        self.port,
                        deployed.len()
                    )
                })?;
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let listener = TcpListener::bind(address).with_context(|| {
                format!("port {port} is taken on 127.0.0.1: pick other ports with --port")
            })?;
            listeners.push(listener);
        }
        let scratch = workspace.target_dir.join("local/up");
        let binary_media_types = binary_media_types(workspace)?;
        let logs = gateway::logs::Logs::start(&aws.sdk);
        let metrics = gateway::metrics::Metrics::start(&aws.sdk);

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
            let local = aws
                .runtime
                .block_on(Local::prepare(aws, &here, service, deployed))?;
            let step = progress.step(&format!("fetching {}", deployed.key));
            let launch = aws.runtime.block_on(launch(
                aws,
                deployed,
                &local,
                &scratch,
                &endpoint,
                self.install_tools,
            ))?;
            step.done(&format!("{} is {}", deployed.name, launch.version));
            let stage = runtime::stage(deployed, binary_media_types.clone());
            let instances = Arc::new(
                Instances::new(
                    &service.name,
                    launch,
                    self.concurrency,
                    logs.clone(),
                    Echo::stderr(),
                )
                .metered(metrics.clone(), &api_name(deployed)),
            );
            let canary = aws.runtime.block_on(canary_of(
                aws,
                deployed,
                &local,
                &scratch,
                &endpoint,
                self.concurrency,
            ))?;
            instances.set_canary(canary);
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
                problem: None,
                deployed: deployed.clone(),
                local,
                instances,
            });
        }
        for note in &missing {
            progress.note(&format!("not served: {note}"));
        }
        // Ctrl-C is ours before the line that says it is.
        let stop = crate::local::process::stop_requested();
        println!(
            "serving the deployed zips; a redeploy is picked up by the next request; Ctrl-C stops"
        );
        follow(
            aws,
            &mut served,
            &scratch,
            emulator,
            (environment, self.concurrency),
            workspace,
            &stop,
        )?;
        for one in &served {
            one.instances.stop();
        }
        Ok(())
    }
}

/// Checks each served function once a second; a new key or configuration is fetched and served
/// from the next request on. A failed check is said and tried again.
fn follow(
    aws: &Connection,
    served: &mut [Served],
    scratch: &std::path::Path,
    emulator: &Emulator,
    (environment, concurrency): (Environment, usize),
    workspace: &Workspace,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let endpoint = emulator.endpoint.as_str();
    loop {
        for _ in 0..10 {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(());
            }
            crate::wait::pause_blocking(Duration::from_millis(100));
        }
        for one in served.iter_mut() {
            let service = workspace.service(&one.deployed.service)?;
            let now = match aws
                .runtime
                .block_on(Deployed::read(aws, service, environment))
            {
                Ok(functions) => {
                    if one.problem.take().is_some() {
                        one.instances
                            .say(Kind::Lambda, "the deployed function can be read again");
                    }
                    functions.into_iter().next()
                }
                Err(error) => {
                    // Once, not every second: what it is, and that the last code keeps serving.
                    let problem = format!(
                        "could not read the deployed function, so this keeps serving the code it \
                         last fetched: {error:#}{}",
                        if emulator.answers() {
                            String::new()
                        } else {
                            format!(
                                " (the local AWS emulator at {endpoint} is gone, and the stacks \
                                 with it: `cargo xtask deploy {} {environment} --local` makes \
                                 them again)",
                                one.deployed.service
                            )
                        }
                    );
                    if one.problem.as_deref() != Some(problem.as_str()) {
                        one.instances.say(Kind::Problem, &problem);
                        one.problem = Some(problem);
                    }
                    continue;
                }
            };
            let Some(now) = now.filter(|now| *now != one.deployed) else {
                continue;
            };
            let relaunched = aws.runtime.block_on(async {
                let primary = launch(aws, &now, &one.local, scratch, endpoint, false).await?;
                let canary =
                    canary_of(aws, &now, &one.local, scratch, endpoint, concurrency).await?;
                anyhow::Ok((primary, canary))
            });
            match relaunched {
                Ok((launch, canary)) => {
                    let split = match (&canary, &now.canary) {
                        (Some((instances, permille)), Some(_)) => format!(
                            ", and {} to {} (a canary)",
                            share(*permille),
                            instances.version()
                        ),
                        _ => String::new(),
                    };
                    one.instances.say(
                        Kind::Lambda,
                        &format!("redeployed: now serving {}{split}", launch.version),
                    );
                    one.instances.replace(launch);
                    one.instances.set_canary(canary);
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

/// The API in front of `deployed`, as its metrics name it (`apigateway.yaml`: the stack's name).
fn api_name(deployed: &Deployed) -> String {
    format!("{}-{}", deployed.service, deployed.stage)
}

/// The instances of the version a `live` alias sends a share to during a canary, and that share;
/// `None` when it routes to one version.
async fn canary_of(
    aws: &Connection,
    deployed: &Deployed,
    local: &Local,
    scratch: &std::path::Path,
    endpoint: &str,
    concurrency: usize,
) -> anyhow::Result<Option<(Arc<Instances>, u32)>> {
    let Some(canary) = &deployed.canary else {
        return Ok(None);
    };
    let launch = launch(aws, &canary.deployed, local, scratch, endpoint, false).await?;
    let instances = Instances::new(
        &deployed.service,
        launch,
        concurrency,
        gateway::logs::Logs::start(&aws.sdk),
        Echo::stderr(),
    )
    .metered(
        gateway::metrics::Metrics::start(&aws.sdk),
        &api_name(deployed),
    );
    instances.say(
        Kind::Lambda,
        &format!(
            "canary: {} of requests go to {}",
            share(canary.permille),
            instances.version()
        ),
    );
    Ok(Some((Arc::new(instances), canary.permille)))
}

/// A share in thousandths, as people read it.
fn share(permille: u32) -> String {
    format!("{:.1}%", f64::from(permille) / 10.0)
}
