//! `cargo xtask rollback <service> <env> [--to <commit-or-key>]`: bring a stack back to an earlier
//! release whose artifacts are still in the bucket, through deploy's own change-set path (lock,
//! change set, execute, follow, history). Nothing is built or uploaded.
//!
//! With no `--to`, the target is the newest release in the stack's history whose code differs from
//! what runs now. The release's templates are restored with its code, so a rollback undoes a
//! deploy as a whole.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::aws::{cloudformation, s3};
use crate::cli::{Account, ChangeSet, Output, Stack};
use crate::names::short;
use crate::progress::{Progress, print_result};
use crate::release::deployer::{Deployer, Release};
use crate::release::history::{self, Target};
use crate::release::manifest::artifact_key_parameter;
use crate::release::report::Report;
use crate::release::stack::Template;
use crate::workspace::{APIGATEWAY_TEMPLATE, Workspace, service_template};

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
        let deployer = Deployer::new(
            aws,
            workspace,
            environment,
            self.change_set.options(Vec::new(), false),
            progress,
        );
        let stack = deployer.stack_name(&service.name);
        let (s3, bucket) = (aws.s3(), aws.bucket.as_str());

        let release = aws.runtime.block_on(async {
            deployer.precheck(service).await?;
            let Some(current) = cloudformation::describe(&aws.cloudformation(), &stack).await?
            else {
                bail!(
                    "stack {stack} does not exist in {}: there is nothing to roll back; \
                     deploy it with `cargo xtask deploy {} {}`",
                    aws.region,
                    service.name,
                    environment
                );
            };
            let running: BTreeMap<String, String> = service
                .functions
                .iter()
                .map(|f| artifact_key_parameter(&f.name))
                .filter_map(|p| Some((p.clone(), current.parameters.get(&p)?.clone())))
                .collect();
            let history = history::read(&s3, bucket, &stack).await?;
            let target = self.to.clone().unwrap_or(Target::Previous);
            let entry = history::pick(&history, &running, &target, &stack)?;
            for key in entry
                .artifact_keys
                .values()
                .chain([&entry.template_key, &entry.apigateway_template_key])
            {
                if s3::head_object(&s3, bucket, key).await?.is_none() {
                    bail!(
                        "s3://{bucket}/{key} does not exist, so that release cannot be deployed again; \
                         nothing was changed. Pick another with --to (`cargo xtask status` lists the releases)"
                    );
                }
            }
            progress.note(&format!(
                "rolling {stack} back to the release from commit {} (deployed {} by {})",
                short(&entry.commit),
                entry.deployed_at,
                entry.command
            ));
            let template = read_template(&s3, bucket, &entry.template_key, &service_template(&service.name)).await?;
            let nested = read_template(&s3, bucket, &entry.apigateway_template_key, APIGATEWAY_TEMPLATE).await?;
            Ok(Release {
                template,
                nested,
                template_key: entry.template_key,
                apigateway_template_key: entry.apigateway_template_key,
                artifact_keys: entry.artifact_keys,
                commit: entry.commit,
                dirty: entry.dirty,
                command: "rollback",
            })
        })?;
        let stack = aws
            .runtime
            .block_on(deployer.release(&service.name, release))?;
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
        })
    }
}

/// A release's template, read back from the bucket.
async fn read_template(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    name: &str,
) -> anyhow::Result<Template> {
    let bytes = s3::read_object(s3, bucket, key)
        .await?
        .with_context(|| format!("s3://{bucket}/{key} disappeared while rolling back"))?;
    let body =
        String::from_utf8(bytes).with_context(|| format!("s3://{bucket}/{key} is not text"))?;
    Template::parse(name, body)
}
