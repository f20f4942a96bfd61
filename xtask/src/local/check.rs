//! A release checked where it runs, after a deploy or rollback changed its stack. In AWS, its
//! API's URLs get the probes (`release::probe`). On this machine, the function as the emulator's
//! Lambda now describes it runs behind a local API Gateway of its own (as `up` runs it), and the
//! probes go there. Either way only the probes that read no store are sent (a store probe's answer
//! depends on data: `bench lambda` seeds it, a fresh environment has none), each retried with
//! backoff until it passes or the check's deadline passes. A local instance's lines go to the
//! emulator's log group, not to the terminal, where only the verdict is said.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;

use crate::aws::Connection;
use crate::local::deployed::Deployed;
use crate::local::gateway::logs::Logs;
use crate::local::gateway::terminal::Echo;
use crate::local::gateway::{self, Instances};
use crate::local::runtime::{self, Here, Local, binary_media_types, launch};
use crate::names::Environment;
use crate::progress::Progress;
use crate::release::deployer::{Deployer, Release};
use crate::release::history;
use crate::release::report::{Probes, StackReport};
use crate::release::stack::Outcome as StackOutcome;
use crate::workspace::{Service, Workspace};
use gate::event::Stage;
pub use gate::probe::Failed;
use gate::probe::release_checks;

/// Sends `service`'s probes to what `environment` runs: on the emulator at `endpoint`, through a
/// local gateway; in AWS (`endpoint` is `None`), to the API's stage URL and custom domains from
/// the outputs of `stack`, the report of the deploy or rollback that changed it. The first that
/// fails; an error is a check that could not run at all (nothing deployed, no code object, no API),
/// or Ctrl-C, which says what runs.
pub fn probe(
    aws: &Connection,
    workspace: &Workspace,
    service: &Service,
    environment: Environment,
    endpoint: Option<&str>,
    stack: &StackReport,
    progress: Progress,
) -> anyhow::Result<Result<(), Failed>> {
    let probes = release_checks(&service.probes);
    let Some(endpoint) = endpoint else {
        let bases = crate::release::probe::urls(&stack.outputs, &aws.region)?;
        let step = progress.step(&format!(
            "probing {}-{environment} at {} ({} probes)",
            service.name,
            bases.join(", "),
            probes.len()
        ));
        let result = aws.runtime.block_on(interruptible(
            crate::release::probe::check(&bases, &service.probes),
            interrupted(service, environment, stack, ""),
        ))?;
        match &result {
            Ok(()) => step.done(&format!("{}-{environment} passed its probes", service.name)),
            Err(failed) => step.done(&format!("{}-{environment} failed: {failed}", service.name)),
        }
        return Ok(result);
    };
    let step = progress.step(&format!(
        "probing {}-{environment} ({} probes)",
        service.name,
        probes.len()
    ));
    let listener = TcpListener::bind("127.0.0.1:0").context("a local port for the check")?;
    let port = listener.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let (instances, stage, name) = one_instance(
        aws,
        workspace,
        service,
        environment,
        endpoint,
        Some(&base),
        progress,
    )?;
    let serving = Arc::clone(&instances);
    std::thread::spawn(move || gateway::serve(listener, stage, serving));

    let result = aws.runtime.block_on(interruptible(
        crate::release::probe::check(&[base], &service.probes),
        interrupted(service, environment, stack, " --local"),
    ));
    instances.stop();
    let result = result?;
    match &result {
        Ok(()) => step.done(&format!("{name} passed its probes")),
        Err(failed) => step.done(&format!("{name} failed: {failed}")),
    }
    Ok(result)
}

/// The function `environment` runs for `service` on the emulator, made runnable here with one
/// instance (started on the first event), the stage its events name, and the function's name.
/// `url` is where the caller serves it, for the service's own `<SERVICE>_API_URL`.
pub fn one_instance(
    aws: &Connection,
    workspace: &Workspace,
    service: &Service,
    environment: Environment,
    endpoint: &str,
    url: Option<&str>,
    progress: Progress,
) -> anyhow::Result<(Arc<Instances>, Stage, String)> {
    let functions = aws
        .runtime
        .block_on(Deployed::read(aws, service, environment))?;
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
    let local = Local::prepare(aws, &here, service, deployed)?;
    let scratch = workspace.target_dir.join("local/up");
    let launch = launch(aws, deployed, &local, &scratch, endpoint, false)?;
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

/// `check`, unless Ctrl-C comes first: then `interrupted`, which says what runs.
async fn interruptible(
    check: impl Future<Output = anyhow::Result<Result<(), Failed>>>,
    interrupted: String,
) -> anyhow::Result<Result<(), Failed>> {
    tokio::select! {
        checked = check => checked,
        _ = tokio::signal::ctrl_c() => anyhow::bail!(interrupted),
    }
}

/// What Ctrl-C during the probes leaves: the release `stack` was just brought to, unchecked.
fn interrupted(
    service: &Service,
    environment: Environment,
    stack: &StackReport,
    local: &str,
) -> String {
    let keys: Vec<&str> = stack.artifact_keys.values().map(String::as_str).collect();
    let service = &service.name;
    format!(
        "interrupted while probing {}: it runs the release just deployed ({}), which was not \
         checked and was not rolled back. Check it with `cargo xtask status {service} \
         {environment}{local}`, and undo it with `cargo xtask rollback {service} \
         {environment}{local}`",
        stack.stack,
        keys.join(", ")
    )
}

/// What checking a release after a deploy needs (on the emulator, where it listens), and what
/// rolls it back when it fails.
pub struct Checked<'a> {
    pub aws: &'a Connection,
    pub workspace: &'a Workspace,
    pub deployer: &'a Deployer<'a>,
    pub environment: Environment,
    pub endpoint: Option<&'a str>,
    pub progress: Progress,
}

impl Checked<'_> {
    /// [`probe`]s what `stack` now runs.
    pub fn probe(
        &self,
        service: &Service,
        stack: &StackReport,
    ) -> anyhow::Result<Result<(), Failed>> {
        probe(
            self.aws,
            self.workspace,
            service,
            self.environment,
            self.endpoint,
            stack,
            self.progress,
        )
    }

    /// Brings each service's stack to its release in turn, checking each that changed; stops at
    /// the first that fails its probes. The stacks' reports, and that failure.
    pub fn each(
        &self,
        releases: Vec<(&Service, Release)>,
        no_rollback: bool,
    ) -> anyhow::Result<(Vec<StackReport>, Option<String>)> {
        let mut stacks = Vec::new();
        for (service, release) in releases {
            let released = self.deployer.release(&service.name, release);
            let mut stack = self.aws.runtime.block_on(released)?;
            if matches!(stack.outcome, StackOutcome::Created | StackOutcome::Updated) {
                let (probes, failure) = self.run(service, &stack, no_rollback)?;
                stack.probes = Some(probes);
                if failure.is_some() {
                    stacks.push(stack);
                    return Ok((stacks, failure));
                }
            }
            stacks.push(stack);
        }
        Ok((stacks, None))
    }

    /// Probes what `stack` now runs; on a failure, rolls back to the release before it (unless
    /// `no_rollback` or there is none) and probes that. The result, and the failure to report.
    fn run(
        &self,
        service: &Service,
        stack: &StackReport,
        no_rollback: bool,
    ) -> anyhow::Result<(Probes, Option<String>)> {
        let Checked {
            aws,
            deployer,
            environment,
            endpoint,
            progress,
            ..
        } = self;
        let local = if endpoint.is_some() { " --local" } else { "" };
        let probe = |stack: &StackReport| self.probe(service, stack);
        let Err(failed) = probe(stack)? else {
            return Ok((Probes::Passed, None));
        };
        let name = &stack.stack;
        let failed = failed.to_string();
        if stack.outcome == StackOutcome::Created {
            let failure = format!(
                "{name}: {failed}. It was the stack's first deploy, so there is nothing to roll \
                 back to: it stays as it is; fix the service and deploy again"
            );
            return Ok((Probes::Failed { failed }, Some(failure)));
        }
        if no_rollback {
            let failure = format!(
                "{name}: {failed}. The release stays, as --no-rollback asks; undo it with \
                 `cargo xtask rollback {} {environment}{local}`",
                service.name
            );
            return Ok((Probes::Failed { failed }, Some(failure)));
        }
        progress.note(&format!("{name}: {failed}; rolling back"));
        let undo = async {
            let earlier = deployer
                .earlier(service, &history::Target::Previous)
                .await?;
            deployer
                .mark_rolled_back(&service.name, &stack.artifact_keys, &failed)
                .await;
            deployer.release(&service.name, earlier).await
        };
        let restored = aws.runtime.block_on(undo).map_err(|error| {
            anyhow::anyhow!(
                "{name}: {failed}, and rolling it back failed: {error:#}. The failed release may \
                 still run: see `cargo xtask status {} {environment}{local}`, and roll back with \
                 `cargo xtask rollback {} {environment}{local}`",
                service.name,
                service.name
            )
        })?;
        let now = restored
            .artifact_keys
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let again = match probe(&restored)? {
            Ok(()) => "and it passes its probes".to_owned(),
            Err(also) => format!("but it fails its probes too ({also})"),
        };
        let failure = format!(
            "{name}: {failed}. Rolled back by itself to the release before: {now} runs again, \
             {again}"
        );
        let probes = Probes::RolledBack {
            failed,
            restored: restored.artifact_keys,
        };
        Ok((probes, Some(failure)))
    }
}
