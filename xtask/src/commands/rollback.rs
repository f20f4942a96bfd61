//! `cargo xtask rollback <service> <env> [--to <commit-or-key>]`: bring a stack back to an earlier
//! release whose artifacts are still in the bucket, through deploy's own change-set path (lock,
//! change set, execute, follow, history). Nothing is built or uploaded.
//!
//! With no `--to`, the target is the newest release in the stack's history whose code differs from
//! what runs now. The release's templates are restored with its code, so a rollback undoes a
//! deploy as a whole.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::aws::{Account, Connection, s3_client};
use crate::deploy::{self, Deploy, Deployer, Release};
use crate::history::{self, Target};
use crate::manifest::artifact_key_parameter;
use crate::names::Environment;
use crate::progress::{Progress, print_json};
use crate::stack::Template;
use crate::workspace::Workspace;

/// Redeploy an earlier release that is already in the bucket.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask rollback hardware production                 # the release before the current one\n  \
    cargo xtask rollback hardware production --to 3f2a9c1    # the release built from that commit\n  \
    cargo xtask rollback hardware dev --to lambdas/hardware/apigateway-execute/<sha256>.zip\n\n\
    `cargo xtask status <service> <env>` lists the recorded releases.")]
pub struct Rollback {
    /// The service.
    service: String,
    /// The environment (dev, qa or production).
    environment: Environment,
    /// A commit (or its first digits) from the stack's history, or an artifact key in the bucket.
    #[arg(long, value_name = "COMMIT-OR-KEY")]
    to: Option<Target>,
    #[command(flatten)]
    account: Account,
    /// Create and show the change set, but leave it for review instead of executing it.
    #[arg(long)]
    no_execute: bool,
    /// Fail at once, instead of waiting, when another deploy is changing the stack.
    #[arg(long)]
    no_wait: bool,
    /// The longest to wait for other deploys and for CloudFormation, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    timeout: u64,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl Rollback {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let service = workspace.service(&self.service)?;
        let Connection {
            runtime,
            sdk,
            region,
            bucket,
            emulator,
        } = self.account.connect(workspace, progress)?;
        let options = Deploy {
            names: vec![service.name.clone(), self.environment.to_string()],
            all: false,
            account: self.account.clone(),
            parameters: Vec::new(),
            no_execute: self.no_execute,
            no_wait: self.no_wait,
            recreate: false,
            timeout: self.timeout,
            json: self.json,
            install_tools: false,
        };
        let deployer = Deployer::new(
            &sdk,
            &region,
            &bucket,
            workspace,
            self.environment,
            &options,
            progress,
        );
        let stack = deployer.stack_name(&service.name);
        let s3 = s3_client(&sdk);
        let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);

        let release = runtime.block_on(async {
            deployer.precheck(service).await?;
            let Some(current) = deploy::describe(&cloudformation, &stack).await? else {
                bail!(
                    "stack {stack} does not exist in {region}: there is nothing to roll back; \
                     deploy it with `cargo xtask deploy {} {}`",
                    service.name,
                    self.environment
                );
            };
            let running: BTreeMap<String, String> = service
                .functions
                .iter()
                .map(|f| artifact_key_parameter(&f.name))
                .filter_map(|p| Some((p.clone(), current.parameters.get(&p)?.clone())))
                .collect();
            let history = history::read(&s3, &bucket, &stack).await?;
            let target = self.to.clone().unwrap_or(Target::Previous);
            let entry = history::pick(&history, &running, &target, &stack)?;
            for key in entry
                .artifact_keys
                .values()
                .chain([&entry.template_key, &entry.apigateway_template_key])
            {
                exists(&s3, &bucket, key).await?;
            }
            progress.note(&format!(
                "rolling {stack} back to the release from commit {} (deployed {} by {})",
                short(&entry.commit),
                entry.deployed_at,
                entry.command
            ));
            let file = format!("{}-environment.yaml", service.name);
            let body = text(&s3, &bucket, &entry.template_key).await?;
            let nested = text(&s3, &bucket, &entry.apigateway_template_key).await?;
            let template = Template::parse(&file, body, &[&nested])?;
            Ok(Release {
                template,
                template_key: entry.template_key,
                apigateway_template_key: entry.apigateway_template_key,
                artifact_keys: entry.artifact_keys,
                commit: entry.commit,
                dirty: entry.dirty,
                command: "rollback",
            })
        })?;
        let stack = runtime.block_on(deployer.release(&service.name, release))?;
        let report = deploy::Report {
            region,
            bucket,
            endpoint: emulator.as_ref().map(|e| e.endpoint.clone()),
            uploaded: 0,
            bytes_sent: 0,
            stacks: vec![stack],
        };
        if self.json {
            return print_json(&report);
        }
        deploy::print(&report, emulator.as_ref())
    }
}

/// Refuses a key that is not in the bucket, before anything is sent to CloudFormation.
async fn exists(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<()> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => bail!(
            "s3://{bucket}/{key} does not exist, so that release cannot be deployed again; \
             nothing was changed. Pick another with --to (`cargo xtask status` lists the releases)"
        ),
        Err(error) => {
            Err(anyhow::Error::new(error)).with_context(|| format!("checking s3://{bucket}/{key}"))
        }
    }
}

async fn text(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<String> {
    let bytes = crate::aws::read_object(s3, bucket, key)
        .await?
        .with_context(|| format!("s3://{bucket}/{key} disappeared while rolling back"))?;
    String::from_utf8(bytes).with_context(|| format!("s3://{bucket}/{key} is not text"))
}

pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
