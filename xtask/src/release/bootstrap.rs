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
    let path = workspace.root.join(TEMPLATE);
    let template = Template::read(&path)?;
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
        template: &template,
        nested: &[],
        source: Source::Body,
        set: BTreeMap::from([(
            "BucketName".to_owned(),
            bucket.unwrap_or_default().to_owned(),
        )]),
        description: "cargo xtask bootstrap",
        fence: None,
        role_arn: None,
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
