//! A region's infrastructure stack, which holds the artifact bucket everything else is published
//! to. It goes through the same change-set engine as a service deploy, with its template sent as
//! text (the bucket it would be published to is what it creates), and with no lock or history,
//! which live in that bucket.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::stack::{Change, Engine, Outcome, Phase, Source, Template};
use crate::aws::cloudformation;
use crate::progress::Progress;
use crate::workspace::Workspace;

/// The infrastructure template, in the workspace.
pub const TEMPLATE: &str = "cloudformation/infrastructure.yaml";
/// The stack's name unless told otherwise.
pub const STACK: &str = "biometrix-infrastructure";

/// How the infrastructure stack ended.
#[derive(Debug)]
pub struct Bootstrapped {
    /// `CREATE_COMPLETE`, `UPDATE_COMPLETE`, or `already up to date`.
    pub outcome: String,
    pub bucket: String,
}

/// Creates or updates the infrastructure stack `stack`; `bucket` names the artifact bucket (the
/// template's default is `biometrix-infrastructure-<region>`).
pub async fn apply(
    sdk: &aws_config::SdkConfig,
    workspace: &Workspace,
    stack: &str,
    bucket: Option<&str>,
    timeout: Duration,
    progress: Progress,
) -> anyhow::Result<Bootstrapped> {
    let set = BTreeMap::from([(
        "BucketName".to_owned(),
        bucket.unwrap_or_default().to_owned(),
    )]);
    let template = Template::read(&workspace.root.join(TEMPLATE))?;
    let (outcome, current) = apply_template(sdk, &template, stack, set, timeout, progress).await?;
    let client = aws_sdk_cloudformation::Client::new(sdk);
    // The output is the contract; the emulator computes no outputs for change sets, so the
    // bucket resource itself is the fallback.
    let bucket = match current.outputs.get("ArtifactBucket") {
        Some(bucket) => bucket.clone(),
        None => cloudformation::resources(&client, &current.id)
            .await?
            .into_iter()
            .find(|r| r.logical_id == "ArtifactBucket")
            .map(|r| r.physical_id)
            .context("the infrastructure stack has no ArtifactBucket")?,
    };
    Ok(Bootstrapped { outcome, bucket })
}

/// The per-environment template: what one environment's release pipeline may do.
pub const PIPELINE_TEMPLATE: &str = "cloudformation/pipeline.yaml";

/// An environment's pipeline stack's name; a pattern's (`pr-*`) is `biometrix-pipeline-pr-any`.
pub fn pipeline_stack(environment: &str) -> String {
    format!("biometrix-pipeline-{}", environment.replace('*', "any"))
}

/// What an environment's pipeline stack is made from.
#[derive(Debug)]
pub struct Pipeline<'a> {
    pub environment: &'a str,
    /// The environment whose releases this one promotes, if any.
    pub promotes_from: Option<&'a str>,
    /// `owner/name` of the repository whose workflow gets a role, if any.
    pub repository: Option<&'a str>,
    /// Whether the environment's stores go with its stacks: its deployer may then empty its
    /// buckets, so that destroy can delete them.
    pub deletes_stores: bool,
    /// The environment whose secrets its new stacks borrow, if any.
    pub secrets_from: Option<&'a str>,
    /// The region's infrastructure stack, whose bucket and role the policy names.
    pub infrastructure: &'a str,
}

/// How a pipeline stack ended, and what to hand the pipeline.
#[derive(Debug)]
pub struct PipelineDone {
    pub stack: String,
    pub outcome: String,
    pub outputs: BTreeMap<String, String>,
}

/// Creates or updates `pipeline`'s stack, naming the bucket and role of the region's
/// infrastructure stack, which must exist.
pub async fn pipeline(
    sdk: &aws_config::SdkConfig,
    workspace: &Workspace,
    pipeline: &Pipeline<'_>,
    timeout: Duration,
    progress: Progress,
) -> anyhow::Result<PipelineDone> {
    let client = aws_sdk_cloudformation::Client::new(sdk);
    let region = crate::aws::region_of(sdk);
    let infrastructure = cloudformation::describe(&client, pipeline.infrastructure)
        .await?
        .with_context(|| {
            format!(
                "the infrastructure stack {} does not exist in {region}: run `cargo xtask \
                 bootstrap --region {region}` first; nothing was created",
                pipeline.infrastructure
            )
        })?;
    let output = |name: &str| {
        infrastructure.outputs.get(name).cloned().with_context(|| {
            format!(
                "the infrastructure stack {} has no {name} output: run `cargo xtask bootstrap \
                 --region {region}` to update it first; nothing was created",
                pipeline.infrastructure
            )
        })
    };
    let set = BTreeMap::from([
        ("Environment".to_owned(), pipeline.environment.to_owned()),
        (
            "PromotesFrom".to_owned(),
            pipeline.promotes_from.unwrap_or_default().to_owned(),
        ),
        (
            "GitHubRepository".to_owned(),
            pipeline.repository.unwrap_or_default().to_owned(),
        ),
        (
            "StoresDeleted".to_owned(),
            pipeline.deletes_stores.to_string(),
        ),
        (
            "SecretsFrom".to_owned(),
            pipeline.secrets_from.unwrap_or_default().to_owned(),
        ),
        (
            "InfrastructureStack".to_owned(),
            pipeline.infrastructure.to_owned(),
        ),
        ("ArtifactBucket".to_owned(), output("ArtifactBucket")?),
        (
            "CloudFormationRoleArn".to_owned(),
            output("CloudFormationRoleArn")?,
        ),
    ]);
    let stack = pipeline_stack(pipeline.environment);
    let template = Template::read(&workspace.root.join(PIPELINE_TEMPLATE))?;
    let (outcome, current) = apply_template(sdk, &template, &stack, set, timeout, progress).await?;
    Ok(PipelineDone {
        stack,
        outcome,
        outputs: current.outputs,
    })
}

/// Creates or updates `stack` from `template`, sent as text, with `set` as its parameters: its
/// outcome (`CREATE_COMPLETE`, `UPDATE_COMPLETE`, `already up to date`) and what the stack is now.
pub async fn apply_template(
    sdk: &aws_config::SdkConfig,
    template: &Template,
    stack: &str,
    set: BTreeMap<String, String>,
    timeout: Duration,
    progress: Progress,
) -> anyhow::Result<(String, cloudformation::Current)> {
    let region = crate::aws::region_of(sdk);
    let client = aws_sdk_cloudformation::Client::new(sdk);
    let engine = Engine {
        cloudformation: &client,
        region: &region,
        progress,
        no_execute: false,
        no_wait: false,
        recreate: false,
    };
    let change = Change {
        stack,
        template,
        nested: &[],
        source: Source::Body,
        set,
        description: "cargo xtask bootstrap",
        fence: None,
        role_arn: None,
        tags: &[],
    };
    let phase = RefCell::new(Phase::Preparing);
    let outcome = engine
        .apply(&change, Instant::now() + timeout, &phase)
        .await?
        .outcome;
    let current = cloudformation::describe(&client, stack)
        .await?
        .with_context(|| format!("stack {stack} disappeared in {region}"))?;
    let outcome = match outcome {
        Outcome::Unchanged => "already up to date".to_owned(),
        _ => current.status.as_str().to_owned(),
    };
    Ok((outcome, current))
}
