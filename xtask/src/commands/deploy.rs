//! `cargo xtask deploy <service>... <env>`: package and publish (each a no-op when nothing
//! changed), then bring stack `<service>-<env>` to the published template and artifact keys
//! through a change set, following its events to the end. `--local` does all of it against the
//! AWS emulator, and gives each stack what it needs on this machine: the emulator's secrets
//! holding the local PostgreSQL's URL and the local service-token secret.

use anyhow::bail;

use crate::cli::{Account, ChangeSet, Install, Output, Selection};
use crate::local::{check, secrets};
use crate::names::{Environment, parse_key_value};
use crate::progress::{Progress, print_result};
use crate::release::deployer::Deployer;
use crate::release::history;
use crate::release::report::{Probes, Report, StackReport};
use crate::release::stack::Outcome as StackOutcome;
use crate::release::traffic::Traffic;
use crate::release::upload::{self, Outcome, Target};
use crate::workspace::{Service, Workspace};

/// Package, publish and deploy services: one change set per stack, followed to the end.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask deploy hardware dev --local --install-tools   # all of it on the local AWS emulator\n  \
    cargo xtask deploy hardware qa --no-execute               # make the change set, leave it for review\n  \
    cargo xtask deploy --all production --parameter DomainName=biometrix.io --json\n  \
    cargo xtask deploy users production --traffic all-at-once  # a fix that cannot wait for the canary\n\n\
    A stack another deploy is changing is waited for (or refused with --no-wait). A stack whose first\n\
    deploy failed (ROLLBACK_COMPLETE) is only replaced when --recreate is given.\n\n\
    In AWS, API Gateway invokes each function's `live` alias. A deploy publishes a new version, the\n\
    pre-traffic gate probes it, and CodeDeploy moves `live` to it: all at once on dev, linear (10% a\n\
    minute) on qa, canary (10% for 5 minutes) on production; an alarm moves it back.")]
pub struct Deploy {
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    account: Account,
    /// A stack parameter that deploy does not set itself, like DomainName=example.com; others keep
    /// their previous values (repeatable).
    #[arg(long = "parameter", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    parameters: Vec<(String, String)>,
    #[command(flatten)]
    change_set: ChangeSet,
    /// Delete and create again a stack whose first deploy failed (ROLLBACK_COMPLETE).
    #[arg(long)]
    recreate: bool,
    /// Leave a release that fails its probes in place, instead of rolling it back.
    #[arg(long)]
    no_rollback: bool,
    /// How CodeDeploy moves traffic to the new version in AWS: all-at-once, linear or canary
    /// (default: the environment's, see below).
    #[arg(long, value_name = "POLICY")]
    traffic: Option<Traffic>,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    install: Install,
}

impl Deploy {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (services, environment) = self.selection.resolve(workspace)?;
        if self.change_set.no_execute && self.recreate {
            bail!(
                "--recreate deletes the stack, which --no-execute promises not to change; pick one"
            );
        }
        let session = self.account.connect(workspace, progress)?;
        let aws = &session.aws;
        // Checked before packaging, which can take minutes.
        let target = aws
            .runtime
            .block_on(Target::check(&aws.sdk, &aws.region, &aws.bucket))?;
        let mut options = self.change_set.options(self.parameters, self.recreate);
        options.traffic = self.traffic;
        if session.emulator.is_some() {
            options.defaults = secrets::stack_parameters(
                aws,
                workspace,
                &services,
                &options.parameters,
                self.install.tools,
                progress,
            )?;
        }
        let deployer = Deployer::new(aws, workspace, environment, options, progress);
        for service in &services {
            aws.runtime.block_on(deployer.precheck(service))?;
        }

        let (plan, published) = upload::publish(
            workspace,
            &services,
            environment,
            &target,
            &aws.runtime,
            self.install.tools,
            progress,
        )?;
        let mut report = Report {
            region: aws.region.clone(),
            bucket: aws.bucket.clone(),
            endpoint: session.emulator.as_ref().map(|e| e.endpoint.clone()),
            uploaded: published
                .objects
                .iter()
                .filter(|o| o.outcome == Outcome::Uploaded)
                .count(),
            bytes_sent: published.bytes_sent,
            stacks: Vec::new(),
        };
        let mut failures = Vec::new();
        for name in plan.services() {
            let release = deployer.packaged(name, &plan, &published)?;
            let mut stack = aws.runtime.block_on(deployer.release(name, release))?;
            if matches!(stack.outcome, StackOutcome::Created | StackOutcome::Updated) {
                let service = workspace.service(name)?;
                let checked = Checked {
                    aws,
                    workspace,
                    deployer: &deployer,
                    environment,
                    endpoint: report.endpoint.as_deref(),
                    progress,
                };
                let (probes, failure) = checked.run(service, &stack, self.no_rollback)?;
                stack.probes = Some(probes);
                if let Some(failure) = failure {
                    failures.push(failure);
                    report.stacks.push(stack);
                    break;
                }
            }
            report.stacks.push(stack);
        }
        print_result(&report, self.output.json, |report| {
            report.text() + &session.note()
        })?;
        match failures.is_empty() {
            true => Ok(()),
            false => bail!("{}", failures.join("\n")),
        }
    }
}

/// What checking a release needs: on the emulator, where it listens.
struct Checked<'a> {
    aws: &'a crate::aws::Connection,
    workspace: &'a Workspace,
    deployer: &'a Deployer<'a>,
    environment: Environment,
    endpoint: Option<&'a str>,
    progress: Progress,
}

impl Checked<'_> {
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
            workspace,
            deployer,
            environment,
            endpoint,
            progress,
        } = self;
        let local = if endpoint.is_some() { " --local" } else { "" };
        let probe = |stack: &StackReport| {
            check::probe(
                aws,
                workspace,
                service,
                *environment,
                *endpoint,
                stack,
                *progress,
            )
        };
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
