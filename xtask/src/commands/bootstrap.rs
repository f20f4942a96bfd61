//! `cargo xtask bootstrap`: create or update a region's infrastructure stack, which holds the
//! artifact bucket that `publish` uploads to.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};

use crate::aws::{check_credentials, region_of, sdk_config};
use crate::progress::Progress;
use crate::workspace::Workspace;

pub const TEMPLATE: &str = "cloudformation/infrastructure.yaml";

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
        let (stack, region) = (self.stack.as_str(), self.region.as_deref());
        runtime.block_on(async {
            let sdk = sdk_config(region).await;
            check_credentials(&sdk).await?;
            let (outcome, bucket) = apply(
                &sdk,
                &template,
                stack,
                self.bucket.as_deref(),
                self.timeout,
                progress,
            )
            .await?;
            println!("stack {stack} in {}: {outcome}", region_of(&sdk));
            println!("artifact bucket: {bucket}");
            Ok(())
        })
    }
}

/// Creates or updates the infrastructure stack `stack` from `template`; returns how it ended and
/// the artifact bucket it holds.
pub async fn apply(
    sdk: &aws_config::SdkConfig,
    template: &str,
    stack: &str,
    bucket: Option<&str>,
    timeout: u64,
    progress: Progress,
) -> anyhow::Result<(String, String)> {
    let region = region_of(sdk);
    let cloudformation = aws_sdk_cloudformation::Client::new(sdk);
    let parameters = vec![
        Parameter::builder()
            .parameter_key("BucketName")
            .parameter_value(bucket.unwrap_or_default())
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
                    let bucket = artifact_bucket(&cloudformation, stack).await?;
                    return Ok(("already up to date".to_owned(), bucket));
                }
                return Err(anyhow::Error::new(error))
                    .context(format!("updating stack {stack} in {region}"));
            }
        }
    }

    let step = progress.step(&format!("waiting for stack {stack}"));
    let deadline = started + Duration::from_secs(timeout);
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
                let bucket = artifact_bucket(&cloudformation, stack).await?;
                return Ok((status.to_owned(), bucket));
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
                timeout
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn artifact_bucket(
    cloudformation: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> anyhow::Result<String> {
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
    Ok(bucket.to_owned())
}
