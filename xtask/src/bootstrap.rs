//! `cargo xtask bootstrap`: create or update a region's infrastructure stack, which holds the
//! artifact bucket that `publish` uploads to.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};

use crate::aws::{DEFAULT_REGION, check_credentials, sdk_config};
use crate::progress::Progress;
use crate::workspace::Workspace;

const TEMPLATE: &str = "cloudformation/infrastructure.yaml";

/// Create or update the region's artifact bucket (cloudformation/infrastructure.yaml).
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  cargo xtask bootstrap --region eu-west-1")]
pub struct Bootstrap {
    /// The AWS region (default: the standard AWS configuration, else us-west-2).
    #[arg(long)]
    pub region: Option<String>,
    /// The bucket's name, for organisations other than biometrix (default: biometrix-infrastructure-<region>).
    #[arg(long)]
    pub bucket: Option<String>,
    /// The stack's name.
    #[arg(long, default_value = "biometrix-infrastructure")]
    pub stack: String,
    /// How long to wait for CloudFormation, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

impl Bootstrap {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let template = std::fs::read_to_string(workspace.root.join(TEMPLATE))
            .with_context(|| format!("reading {TEMPLATE}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.apply(&template, progress))
    }

    async fn apply(self, template: &str, progress: Progress) -> anyhow::Result<()> {
        let sdk = sdk_config(self.region.as_deref()).await;
        let region = sdk
            .region()
            .map_or(DEFAULT_REGION.to_owned(), ToString::to_string);
        check_credentials(&sdk).await?;
        let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
        let stack = self.stack.as_str();
        let parameters = vec![
            Parameter::builder()
                .parameter_key("BucketName")
                .parameter_value(self.bucket.clone().unwrap_or_default())
                .build(),
        ];

        let existing = match cloudformation
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
        {
            Ok(output) => output
                .stacks()
                .first()
                .and_then(|s| s.stack_status().cloned()),
            Err(error) if format!("{error:?}").contains("does not exist") => None,
            Err(error) => {
                return Err(anyhow::Error::new(error))
                    .context(format!("looking up stack {stack} in {region}"));
            }
        };
        let started = Instant::now();
        match existing {
            None => {
                progress.note(&format!("creating stack {stack} in {region}"));
                cloudformation
                    .create_stack()
                    .stack_name(stack)
                    .template_body(template)
                    .set_parameters(Some(parameters))
                    .capabilities(Capability::CapabilityIam)
                    .send()
                    .await
                    .with_context(|| format!("creating stack {stack} in {region}"))?;
            }
            Some(status) if status.as_str().ends_with("_IN_PROGRESS") => bail!(
                "stack {stack} in {region} is busy ({}): wait for it to finish, then run bootstrap again",
                status.as_str()
            ),
            Some(StackStatus::RollbackComplete) => bail!(
                "stack {stack} in {region} is in ROLLBACK_COMPLETE: its creation failed and it cannot be updated; \
                 delete it (aws cloudformation delete-stack --stack-name {stack} --region {region}) and bootstrap again"
            ),
            Some(_) => {
                progress.note(&format!("updating stack {stack} in {region}"));
                let update = cloudformation
                    .update_stack()
                    .stack_name(stack)
                    .template_body(template)
                    .set_parameters(Some(parameters))
                    .capabilities(Capability::CapabilityIam)
                    .send()
                    .await;
                if let Err(error) = update {
                    if format!("{error:?}").contains("No updates are to be performed") {
                        return report(&cloudformation, stack, &region, "already up to date").await;
                    }
                    return Err(anyhow::Error::new(error))
                        .context(format!("updating stack {stack} in {region}"));
                }
            }
        }

        let step = progress.step(&format!("waiting for stack {stack}"));
        let deadline = started + Duration::from_secs(self.timeout);
        loop {
            let output = cloudformation
                .describe_stacks()
                .stack_name(stack)
                .send()
                .await?;
            let current = output.stacks().first().context("the stack disappeared")?;
            let status = current
                .stack_status()
                .map_or("UNKNOWN", StackStatus::as_str);
            if !status.ends_with("_IN_PROGRESS") {
                if matches!(status, "CREATE_COMPLETE" | "UPDATE_COMPLETE") {
                    step.done(&format!("stack {stack} is {status}"));
                    return report(&cloudformation, stack, &region, status).await;
                }
                bail!(
                    "stack {stack} in {region} ended in {status}: {}; see its events with \
                     `aws cloudformation describe-stack-events --stack-name {stack} --region {region}`",
                    current.stack_status_reason().unwrap_or("no reason given")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "stack {stack} is still {status} after {}s; CloudFormation carries on: watch it with \
                     `aws cloudformation describe-stacks --stack-name {stack} --region {region}`",
                    self.timeout
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

async fn report(
    cloudformation: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    outcome: &str,
) -> anyhow::Result<()> {
    let output = cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await?;
    let bucket = output
        .stacks()
        .first()
        .and_then(|s| {
            s.outputs()
                .iter()
                .find(|o| o.output_key() == Some("ArtifactBucket"))
        })
        .and_then(|o| o.output_value())
        .context("the infrastructure stack has no ArtifactBucket output")?;
    println!("stack {stack} in {region}: {outcome}");
    println!("artifact bucket: {bucket}");
    Ok(())
}
