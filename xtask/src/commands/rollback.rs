//! `cargo xtask rollback <service> <env> [--to <commit-or-key>]`: bring a stack back to an earlier
//! release whose artifacts are still in the bucket, through deploy's own change-set path (lock,
//! change set, execute, follow, history). Nothing is built or uploaded.
//!
//! With no `--to`, the target is the release that ran before the one that runs now, skipping any
//! that failed or was rolled back; `--to` may name a known failure, and then it is said. The
//! release's templates are restored with its code, so a rollback undoes a deploy as a whole. With
//! a damaged history, `--to <key>` still works, from what the stack runs.

use crate::cli::{Account, ChangeSet, Destination, Output, Released, Stack};
use crate::progress::Progress;
use crate::release::history::Target;
use crate::workspace::Workspace;

/// Redeploy an earlier release that is already in the bucket.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask rollback hardware production                 # the release before the current one\n  \
    cargo xtask rollback hardware production --to 3f2a9c1    # the release built from that commit\n  \
    cargo xtask rollback hardware dev --to lambdas/hardware/apigateway-execute/<sha256>.zip\n\n\
    `cargo xtask status <service> <env>` lists the recorded releases.")]
pub struct Rollback {
    #[command(flatten)]
    stack: Stack,
    /// A commit (or its first digits) from the stack's history, or an artifact key in the bucket.
    #[arg(long, value_name = "COMMIT-OR-KEY")]
    to: Option<Target>,
    #[command(flatten)]
    account: Account,
    #[command(flatten)]
    change_set: ChangeSet,
    #[command(flatten)]
    output: Output,
}

impl Rollback {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (service, environment) = self.stack.resolve(workspace)?;
        let session = self
            .account
            .connect(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        let destination = Destination {
            session: &session,
            account: &self.account,
            workspace,
            services: &[service],
            install_tools: false,
            progress,
        };
        let options = self.change_set.options(&self.account, Vec::new(), false);
        let target = self.to.clone().unwrap_or(Target::Previous);
        // A rollback that fails its probes is not rolled back again: it says so.
        destination.roll_out(environment, options, true, self.output, |rollout, _| {
            let (stack, failure) = aws.runtime.block_on(async {
                rollout.deployer.precheck(service).await?;
                rollout.restore(service, &target).await
            })?;
            Ok(Released {
                stacks: vec![stack],
                failure,
                ..Released::default()
            })
        })
    }
}
