//! What `gc` keeps in the artifact bucket and what it deletes. Every build adds a content-addressed
//! zip under `lambdas/` and templates under `cloudformation/`, and nothing else ever removes one.
//!
//! An object is kept when a stack in the region runs it now (read from each stack's parameters,
//! and the templates from the history entry that deployed those keys), when one of the last N
//! recorded releases of any stack needs it (what rollback may go back to), or when it is younger
//! than the age limit (what a publish has uploaded for a deploy that has not happened yet). The
//! rest is deleted with `--delete`: by exact version, so a version written after the listing is
//! never touched, and only under `locks/gc.json` after every publisher's lease is gone (see
//! `lease`). A stack that runs an object already missing is reported, and nothing of its service
//! is deleted. The decision is a pure function (`decide.rs`), unit-tested; [`scan`] gathers its
//! inputs, [`sweep`] carries it out.

mod decide;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use super::history;
use super::lease;
use super::lock::{Contention, Lock, RENEWED_LIFETIME, Scope};
use crate::aws::s3::{self, Version};
use crate::aws::{Connection, cloudformation};
use crate::progress::Progress;
pub use decide::{Action, Missing, Verdict};
use decide::{Inputs, Using, decide, keys_named};

/// The prefixes gc looks under; nothing else in the bucket is ever listed for deletion.
pub const PREFIXES: [&str; 2] = ["lambdas/", "cloudformation/"];

/// What `gc` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many recorded releases of each stack keep their objects.
    pub keep: usize,
    /// Objects younger than this are kept.
    pub older_than: Duration,
    /// Delete what is not kept; otherwise only list it.
    pub delete: bool,
    /// Refuse, instead of waiting, when another gc or a publish holds the bucket.
    pub no_wait: bool,
    /// The longest to wait for them.
    pub timeout: Duration,
}

/// How many objects, and how many bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    pub objects: usize,
    pub bytes: u64,
}

/// What gc found and did.
#[derive(Debug, Serialize)]
pub struct Report {
    pub region: String,
    pub bucket: String,
    pub keep: usize,
    pub older_than_seconds: u64,
    pub deleting: bool,
    pub kept: Tally,
    /// Not kept: deleted with `--delete`, listed otherwise.
    pub not_kept: Tally,
    pub deleted: Tally,
    pub failed: Tally,
    pub missing: Vec<Missing>,
    /// Every version under the prefixes, with what was done and why.
    pub objects: Vec<Verdict>,
}

impl Report {
    fn tally(&self, action: Action) -> Tally {
        self.objects
            .iter()
            .filter(|v| v.action == action)
            .fold(Tally::default(), |t, v| Tally {
                objects: t.objects + 1,
                bytes: t.bytes + v.size,
            })
    }
}

/// Scans `aws`'s bucket and decides; with `options.delete`, deletes what is not kept, holding
/// `locks/gc.json` and only once no publisher's lease is live. Ctrl-C stops it with what it did.
pub async fn run(
    aws: &Connection,
    options: &Options,
    progress: Progress,
) -> anyhow::Result<Report> {
    let (s3, bucket) = (aws.s3(), aws.bucket.as_str());
    if !options.delete {
        return collect(aws, options, None, progress).await;
    }
    let until = Instant::now() + options.timeout;
    let contention = match options.no_wait {
        true => Contention::Refuse,
        false => Contention::Wait { until },
    };
    let lock = Lock::acquire(
        &s3,
        bucket,
        Scope::Artifacts,
        RENEWED_LIFETIME,
        contention,
        progress,
    )
    .await?;
    let work = async {
        lease::wait_until_none(&s3, bucket, until, progress).await?;
        collect(aws, options, Some(&lock), progress).await
    };
    let result = tokio::select! {
        result = work => result,
        () = lock.keep(progress) => unreachable!("keep never returns"),
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
            "interrupted: what gc had deleted is gone, the rest is as it was; run it again to finish"
        )),
    };
    let released = lock.release().await;
    let report = result?;
    released?;
    Ok(report)
}

/// The scan, the decision and (with `--delete`, holding `lock`) the sweep.
async fn collect(
    aws: &Connection,
    options: &Options,
    lock: Option<&Lock>,
    progress: Progress,
) -> anyhow::Result<Report> {
    let (s3, bucket) = (aws.s3(), aws.bucket.as_str());
    let step = progress.step(&format!(
        "reading the stacks of {} and s3://{bucket}",
        aws.region
    ));
    let now = crate::aws::clock::server_now();
    let inputs = scan(&aws.cloudformation(), &s3, bucket).await?;
    step.done(&format!(
        "{} stacks use s3://{bucket}; {} histories; {} objects under {}",
        inputs.stacks.len(),
        inputs.histories.len(),
        inputs.versions.len(),
        PREFIXES.join(" and ")
    ));
    let (mut objects, missing) = decide(&inputs, options.keep, options.older_than, now);
    if let Some(lock) = lock.filter(|_| options.delete)
        && objects.iter().any(|v| v.action == Action::Delete)
    {
        let step = progress.step("deleting what is not kept");
        sweep(&s3, bucket, lock, &mut objects).await?;
        step.done("deleted");
    }
    let mut report = Report {
        region: aws.region.clone(),
        bucket: bucket.to_owned(),
        keep: options.keep,
        older_than_seconds: options.older_than.as_secs(),
        deleting: options.delete,
        kept: Tally::default(),
        not_kept: Tally::default(),
        deleted: Tally::default(),
        failed: Tally::default(),
        missing,
        objects,
    };
    report.kept = report.tally(Action::Keep);
    report.deleted = report.tally(Action::Deleted);
    report.failed = report.tally(Action::Failed);
    let listed = report.tally(Action::Delete);
    report.not_kept = Tally {
        objects: listed.objects + report.deleted.objects + report.failed.objects,
        bytes: listed.bytes + report.deleted.bytes + report.failed.bytes,
    };
    Ok(report)
}

/// Reads what [`decide`] needs: the stacks of the region that use `bucket`, every history in it,
/// and every version under [`PREFIXES`].
pub async fn scan(
    cloudformation: &aws_sdk_cloudformation::Client,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> anyhow::Result<Inputs> {
    let mut inputs = Inputs::default();
    for (stack, nested, current) in cloudformation::all(cloudformation).await? {
        if current.parameters.get("ArtifactBucket").map(String::as_str) != Some(bucket) {
            continue;
        }
        inputs.stacks.push(Using {
            keys: current
                .parameters
                .values()
                .filter_map(|value| keys_named(value, bucket))
                .collect(),
            service_stack: !nested && current.parameters.contains_key("ApiGatewayTemplateUrl"),
            artifact_keys: current
                .parameters
                .iter()
                .filter(|(name, _)| name.ends_with("ArtifactKey"))
                .map(|(name, key)| (name.clone(), key.clone()))
                .collect(),
            stack,
        });
    }
    for key in s3::list_keys(s3, bucket, "deployments/").await? {
        let Some(stack) = key
            .strip_prefix("deployments/")
            .and_then(|k| k.strip_suffix(".json"))
        else {
            continue;
        };
        let entries = history::read(s3, bucket, stack)
            .await
            .context("gc cannot tell what that stack's releases need, so it deletes nothing")?;
        inputs.histories.insert(stack.to_owned(), entries);
    }
    let exists: BTreeSet<&str> = inputs.stacks.iter().map(|u| u.stack.as_str()).collect();
    inputs.gone = inputs
        .histories
        .keys()
        .filter(|stack| !exists.contains(stack.as_str()) && throwaway(stack))
        .cloned()
        .collect();
    for prefix in PREFIXES {
        inputs
            .versions
            .extend(s3::list_versions(s3, bucket, prefix).await?);
    }
    Ok(inputs)
}

/// Whether `stack` (`<service>-<environment>`) is of an environment the workspace declares with
/// its stores deleted: a throwaway one, whose destroyed stacks nothing rolls back to.
fn throwaway(stack: &str) -> bool {
    stack.match_indices('-').any(|(at, _)| {
        stack[at + 1..]
            .parse::<crate::environments::Environment>()
            .is_ok_and(|e| e.stores() == crate::environments::Stores::Deleted)
    })
}

/// Deletes the versions `verdicts` mark [`Action::Delete`], marking each deleted or failed, in
/// batches, each only once `lock` is confirmed still gc's: a gc whose lock was taken over (it
/// could not renew it in time) stops before it deletes anything more.
pub async fn sweep(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    lock: &Lock,
    verdicts: &mut [Verdict],
) -> anyhow::Result<()> {
    let doomed: Vec<Version> = verdicts
        .iter()
        .filter(|v| v.action == Action::Delete)
        .map(|v| Version {
            key: v.key.clone(),
            version_id: v.version_id.clone(),
            size: v.size,
            last_modified: v.last_modified,
        })
        .collect();
    let mut failed = Vec::new();
    for batch in doomed.chunks(s3::DELETE_BATCH) {
        crate::wait::pause_point("sweep").await;
        lock.confirm().await.context(
            "gc stopped before deleting more: what it deleted is gone, the rest is as it was",
        )?;
        failed.extend(s3::delete_versions(s3, bucket, batch).await?);
    }
    for verdict in verdicts.iter_mut().filter(|v| v.action == Action::Delete) {
        let refused = failed
            .iter()
            .find(|(f, _)| f.key == verdict.key && f.version_id == verdict.version_id);
        match refused {
            Some((_, reason)) => {
                verdict.action = Action::Failed;
                verdict.reason = format!("S3 did not delete it: {reason}");
            }
            None => verdict.action = Action::Deleted,
        }
    }
    Ok(())
}
