//! `cargo xtask deploy <service>... <env>`: package and publish (each a no-op when nothing
//! changed), then bring stack `<service>-<env>` to the published template and artifact keys
//! through a change set, following its events to the end. `--local` does all of it against the
//! AWS emulator, and gives each stack what it needs on this machine: the emulator's secrets
//! holding the local PostgreSQL's URL and the local service-token secret.

use anyhow::bail;

use crate::cli::{Account, ChangeSet, Install, Output, Selection};
use crate::local::secrets;
use crate::names::parse_key_value;
use crate::progress::{Progress, print_result};
use crate::release::deployer::Deployer;
use crate::release::report::Report;
use crate::release::upload::{self, Outcome, Target};
use crate::workspace::Workspace;

/// Package, publish and deploy services: one change set per stack, followed to the end.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask deploy hardware dev --local --install-tools   # all of it on the local AWS emulator\n  \
    cargo xtask deploy hardware qa --no-execute               # make the change set, leave it for review\n  \
    cargo xtask deploy --all production --parameter DomainName=biometrix.io --json\n\n\
    A stack another deploy is changing is waited for (or refused with --no-wait). A stack whose first\n\
    deploy failed (ROLLBACK_COMPLETE) is only replaced when --recreate is given.")]
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
        for service in plan.services() {
            let release = deployer.packaged(service, &plan, &published)?;
            report
                .stacks
                .push(aws.runtime.block_on(deployer.release(service, release))?);
        }
        print_result(&report, self.output.json, |report| {
            report.text() + &session.note()
        })
    }
}
