//! A release checked on this machine: the function as the emulator's Lambda now describes it runs
//! behind a local API Gateway of its own (as `up` runs it), and the probes go there
//! ([`Gateway`], the `release::rollout::Prober` of `--local`). Only the probes that read no store
//! are sent (a store probe's answer depends on data: `bench lambda` seeds it, a fresh environment
//! has none), each retried with backoff until it passes or the check's deadline passes. A local
//! instance's lines go to the emulator's log group, not to the terminal, where only the verdict is
//! said.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;

use crate::aws::Connection;
use crate::environments::Environment;
use crate::local::deployed::Deployed;
use crate::local::gateway::logs::Logs;
use crate::local::gateway::terminal::Echo;
use crate::local::gateway::{self, Instances};
use crate::local::runtime::{self, Here, Local, binary_media_types, launch};
use crate::progress::Progress;
use crate::release::probe::show_last_lines;
use crate::release::report::StackReport;
use crate::release::rollout::{Probed, Prober};
use crate::workspace::{Probe, Service, Workspace};
use gate::event::Stage;
use gate::probe::release_checks;

/// The probes of a release deployed to the emulator at `endpoint`, sent through a local gateway.
pub struct Gateway<'a> {
    pub aws: &'a Connection,
    pub workspace: &'a Workspace,
    pub environment: Environment,
    pub endpoint: &'a str,
    pub progress: Progress,
}

impl Prober for Gateway<'_> {
    fn probe<'a>(
        &'a self,
        service: &'a Service,
        probes: &'a [Probe],
        _stack: &'a StackReport,
    ) -> Probed<'a> {
        Box::pin(async move {
            let step = self.progress.step(&format!(
                "probing {}-{} ({} probes)",
                service.name,
                self.environment,
                release_checks(probes).len()
            ));
            let listener =
                TcpListener::bind("127.0.0.1:0").context("a local port for the check")?;
            let base = format!("http://127.0.0.1:{}/v1", listener.local_addr()?.port());
            let (instances, stage, name) = one_instance(
                self.aws,
                self.workspace,
                service,
                self.environment,
                self.endpoint,
                Some(&base),
                self.progress,
            )
            .await?;
            // Stopped however the check ends, Ctrl-C (which drops this future) included.
            let running = Stopping(Arc::clone(&instances));
            let served = Arc::clone(&instances);
            std::thread::spawn(move || gateway::serve(listener, stage, served));
            let result = crate::release::probe::check(&[base], probes).await?;
            drop(running);
            match &result {
                Ok(()) => step.done(&format!("{name} passed its probes")),
                Err(failed) => {
                    step.done(&format!("{name} failed: {failed}"));
                    show_last_lines(self.progress, &name, &instances.last_lines());
                }
            }
            Ok(result)
        })
    }
}

/// Stops the instances it holds when dropped.
struct Stopping(Arc<Instances>);

impl Drop for Stopping {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The function `environment` runs for `service` on the emulator, made runnable here with one
/// instance (started on the first event), the stage its events name, and the function's name.
/// `url` is where the caller serves it, for the service's own `<SERVICE>_API_URL`.
pub async fn one_instance(
    aws: &Connection,
    workspace: &Workspace,
    service: &Service,
    environment: Environment,
    endpoint: &str,
    url: Option<&str>,
    progress: Progress,
) -> anyhow::Result<(Arc<Instances>, Stage, String)> {
    let functions = Deployed::read(aws, service, environment).await?;
    let deployed = functions
        .first()
        .context("the deployed stack has no function")?;
    let here = Here {
        workspace,
        urls: url
            .map(|url| (service.name.clone(), url.to_owned()))
            .into_iter()
            .collect(),
        endpoint: endpoint.to_owned(),
        install: false,
        progress,
    };
    let local = Local::prepare(aws, &here, service, deployed).await?;
    let scratch = workspace.target_dir.join("local/up");
    let launch = launch(aws, deployed, &local, &scratch, endpoint, false).await?;
    let stage = runtime::stage(deployed, binary_media_types(workspace)?);
    let instances = Arc::new(Instances::new(
        &service.name,
        launch,
        1,
        Logs::start(&aws.sdk),
        Echo::Off,
    ));
    Ok((instances, stage, deployed.name.clone()))
}
