//! `cargo xtask rollback <service> <env> [--to <commit-or-key>]`: bring a stack back to an earlier
//! release whose artifacts are still in the bucket, through deploy's own change-set path (lock,
//! change set, execute, follow, history). Nothing is built or uploaded.
//!
//! With no `--to`, the target is the newest release in the stack's history whose code differs from
//! what runs now. The release's templates are restored with its code, so a rollback undoes a
//! deploy as a whole.

use anyhow::bail;

use crate::cli::{Account, ChangeSet, Output, Stack};
use crate::local::check;
use crate::progress::{Progress, print_result};
use crate::release::deployer::Deployer;
use crate::release::history::Target;
use crate::release::lease::Lease;
use crate::release::report::{Probes, Report};
use crate::release::stack::Outcome;
use crate::release::upload;
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
        let session = self.account.connect(workspace, progress)?;
        let aws = &session.aws;
        aws.runtime
            .block_on(upload::Target::check(&aws.sdk, &aws.region, &aws.bucket))?;
        // From before the release's objects are found until the stack runs them, gc deletes none.
        let _lease = Lease::take(aws, self.change_set.timeout(), progress)?;
        let deployer = Deployer::new(
            aws,
            workspace,
            environment,
            self.change_set.options(Vec::new(), false),
            progress,
        );

        let target = self.to.clone().unwrap_or(Target::Previous);
        let release = aws.runtime.block_on(async {
            deployer.precheck(service).await?;
            deployer.earlier(service, &target).await
        })?;
        let mut stack = aws
            .runtime
            .block_on(deployer.release(&service.name, release))?;
        // The restored release is checked as a deploy is.
        let mut failure = None;
        if matches!(stack.outcome, Outcome::Created | Outcome::Updated) {
            let endpoint = session.emulator.as_ref().map(|e| e.endpoint.as_str());
            let checked = check::probe(
                aws,
                workspace,
                service,
                environment,
                endpoint,
                &stack,
                progress,
            )?;
            stack.probes = Some(match checked {
                Ok(()) => Probes::Passed,
                Err(failed) => {
                    failure = Some(failed.to_string());
                    Probes::Failed {
                        failed: failed.to_string(),
                    }
                }
            });
        }
        let name = stack.stack.clone();
        let report = Report {
            region: aws.region.clone(),
            bucket: aws.bucket.clone(),
            endpoint: session.emulator.as_ref().map(|e| e.endpoint.clone()),
            uploaded: 0,
            bytes_sent: 0,
            stacks: vec![stack],
        };
        print_result(&report, self.output.json, |report| {
            report.text() + &session.note()
        })?;
        if let Some(failed) = failure {
            bail!(
                "{name} is rolled back, but the release it restored fails its probes too \
                 ({failed}): pick another with --to (`cargo xtask status` lists the releases)"
            );
        }
        Ok(())
    }
}
