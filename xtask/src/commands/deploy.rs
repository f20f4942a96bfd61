//! `cargo xtask deploy <service>... <env>`: package and publish (each a no-op when nothing
//! changed), then bring stack `<service>-<env>` to the published template and artifact keys
//! through a change set, following its events to the end. `--local` does all of it against the
//! AWS emulator, and gives each stack what it needs on this machine: the emulator's secrets
//! holding the local PostgreSQL's URL and the local service-token secret.

use anyhow::bail;

use crate::cli::{Account, ChangeSet, Destination, Output, Released, Rollout, Selection, Zips};
use crate::progress::Progress;
use crate::release::upload::{self, Outcome};
use crate::workspace::Workspace;

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
    #[command(flatten)]
    rollout: Rollout,
    #[command(flatten)]
    change_set: ChangeSet,
    /// Delete and create again a stack whose first deploy failed (ROLLBACK_COMPLETE).
    #[arg(long)]
    recreate: bool,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    zips: Zips,
}

impl Deploy {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (services, environment) = self.selection.resolve(workspace)?;
        if self.change_set.no_execute && self.recreate {
            bail!(
                "--recreate deletes the stack, which --no-execute promises not to change; pick one"
            );
        }
        let session = self
            .account
            .connect(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        let destination = Destination {
            session: &session,
            account: &self.account,
            workspace,
            services: &services,
            install_tools: self.zips.install.tools,
            progress,
        };
        let options = self
            .rollout
            .options(&self.change_set, self.recreate, &destination)?;
        let no_rollback = self.rollout.no_rollback;
        destination.roll_out(
            environment,
            options,
            no_rollback,
            self.output,
            |rollout, target| {
                let deployer = rollout.deployer;
                // A damaged history is refused before anything is built; the loop needs it.
                for service in &services {
                    aws.runtime.block_on(async {
                        deployer.precheck(service).await?;
                        deployer.history(&deployer.stack_name(&service.name)).await
                    })?;
                }
                let (plan, published) = upload::publish(
                    workspace,
                    &services,
                    environment,
                    target,
                    &aws.runtime,
                    self.zips.packaging(environment),
                    progress,
                )?;
                let releases = plan
                    .services()
                    .into_iter()
                    .map(|name| {
                        let release = deployer.packaged(name, &plan, &published)?;
                        Ok((workspace.service(name)?, release))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let (stacks, failure) = aws.runtime.block_on(rollout.each(releases))?;
                Ok(Released {
                    stacks,
                    failure,
                    uploaded: published
                        .objects
                        .iter()
                        .filter(|o| o.outcome == Outcome::Uploaded)
                        .count(),
                    bytes_sent: published.bytes_sent,
                })
            },
        )
    }
}
