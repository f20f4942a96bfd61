//! The release history of each stack: `deployments/<stack>.json` in the artifact bucket, one entry
//! per release that changed the stack (or that a deploy found running unrecorded), newest last.
//!
//! A release is its whole identity: its templates' keys, its artifact keys, the profile they were
//! built with, and its digest (`ReleaseDigest`: the templates and every parameter's final value),
//! so that two releases of the same code with other templates or parameters are told apart. Each
//! entry carries an [`Outcome`] that the release loop (`release::rollout`) keeps current: recorded
//! `unchecked` the moment its stack runs it, then `live`, `failed` or `rolled_back` by the verdict,
//! `superseded` once a later release goes live. Rollback goes to the release that ran before, and
//! never to one known to fail ([`previous_good`]).
//!
//! CloudFormation keeps no history of parameter values, and a stack's events do not carry them,
//! so the release tool records its own. Entries are written under the stack's deploy lock, and
//! conditionally on the version read, so that no entry is lost even if the lock was not honoured.
//! A history that does not parse is [`Damaged`]: nothing that changes a stack trusts it, and
//! `cargo xtask reset-history` moves it aside.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::environments::Profile;
use crate::workspace::Probe;

mod pick;

pub use pick::{Target, find_running, pick, previous_good, swap_key};

/// How many entries a stack's history keeps.
const KEPT: usize = 100;

/// How a release came to run on its stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Deploy,
    Rollback,
    Promote,
    /// Found running but not recorded (a deploy interrupted after it executed, or another tool),
    /// and recorded by the next deploy.
    Recovered,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Rollback => "rollback",
            Kind::Promote => "promote",
            Kind::Recovered => "recovered",
        }
    }
}

/// What showed that a release fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// Its probes, sent by the release tool after the stack ran it.
    Probe,
    /// The pre-traffic gate, before CodeDeploy gave it traffic.
    Gate,
    /// An alarm while CodeDeploy shifted traffic to it.
    Alarm,
    /// Its function did not start.
    Init,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Probe => "probe",
            Cause::Gate => "gate",
            Cause::Alarm => "alarm",
            Cause::Init => "init",
        }
    }
}

/// Where a release stands. Only `live` and `superseded` releases are rolled back to by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Its stack ran it, and its check has not ended: interrupted, or under way.
    Unchecked,
    /// It passed its check and runs.
    Live,
    /// It failed its check and was left running (a first deploy, `--no-rollback`, or nothing
    /// good to go back to).
    Failed { cause: Cause, reason: String },
    /// It failed its check and the release before it was restored.
    RolledBack { cause: Cause, reason: String },
    /// It passed its check; a later release replaced it.
    Superseded,
}

impl Outcome {
    /// A release this one may be rolled back to: it passed its check.
    pub fn is_good(&self) -> bool {
        matches!(self, Outcome::Live | Outcome::Superseded)
    }

    /// A release known to fail.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed { .. } | Outcome::RolledBack { .. })
    }

    /// As people read it: `live`, `failed (probe): …`.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Unchecked => "unchecked".to_owned(),
            Outcome::Live => "live".to_owned(),
            Outcome::Superseded => "superseded".to_owned(),
            Outcome::Failed { cause, reason } => format!("failed ({}): {reason}", cause.as_str()),
            Outcome::RolledBack { cause, reason } => {
                format!("rolled back by itself ({}): {reason}", cause.as_str())
            }
        }
    }
}

/// One release of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct Entry {
    /// RFC 3339, UTC.
    pub deployed_at: String,
    #[serde(rename = "command")]
    pub kind: Kind,
    /// The commit the code was built from, and whether the tree had uncommitted changes.
    pub commit: String,
    pub dirty: bool,
    /// Artifact key parameter → key, for every function of the service.
    pub artifact_keys: BTreeMap<String, String>,
    /// The service template and the nested API Gateway template, as keys in the bucket.
    pub template_key: String,
    pub apigateway_template_key: String,
    /// The stack's `ReleaseDigest` for this release: its templates and every parameter's value.
    /// Empty in entries written before it was recorded.
    pub digest: String,
    /// The profile its artifacts were built with, as the tool that packaged them stamped it into
    /// the zips (never from object metadata); `None` where that is not known.
    pub profile: Option<Profile>,
    /// The probes it was checked with (its `Probes` parameter): part of the release, so that a
    /// rollback checks it as it was checked. `None` in entries written before they were recorded.
    pub probes: Option<Vec<Probe>>,
    pub outcome: Outcome,
    /// The environment a promoted release was taken from, like `qa`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
}

/// An entry as stored, including those written before releases had outcomes.
#[derive(Deserialize)]
struct Stored {
    deployed_at: String,
    command: Kind,
    commit: String,
    dirty: bool,
    artifact_keys: BTreeMap<String, String>,
    template_key: String,
    apigateway_template_key: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    profile: Option<Profile>,
    #[serde(default)]
    probes: Option<Vec<Probe>>,
    #[serde(default)]
    outcome: Option<Outcome>,
    /// Before outcomes: why the tool rolled it back.
    #[serde(default)]
    rolled_back: Option<String>,
    #[serde(default)]
    promoted_from: Option<String>,
}

impl From<Stored> for Entry {
    fn from(stored: Stored) -> Entry {
        // An entry from before outcomes ran; it was rolled back when it says so.
        let outcome = stored.outcome.unwrap_or(match stored.rolled_back {
            Some(reason) => Outcome::RolledBack {
                cause: Cause::Probe,
                reason,
            },
            None => Outcome::Superseded,
        });
        Entry {
            deployed_at: stored.deployed_at,
            kind: stored.command,
            commit: stored.commit,
            dirty: stored.dirty,
            artifact_keys: stored.artifact_keys,
            template_key: stored.template_key,
            apigateway_template_key: stored.apigateway_template_key,
            digest: stored.digest,
            profile: stored.profile,
            probes: stored.probes,
            outcome,
            promoted_from: stored.promoted_from,
        }
    }
}

impl Entry {
    /// Whether the two are one release: the same digest, or (for entries without one) the same
    /// artifacts and templates.
    pub fn same_release(&self, other: &Entry) -> bool {
        if !self.digest.is_empty() && !other.digest.is_empty() {
            return self.digest == other.digest;
        }
        self.artifact_keys == other.artifact_keys
            && self.template_key == other.template_key
            && self.apigateway_template_key == other.apigateway_template_key
    }

    /// Whether this entry is what a stack runs.
    pub fn is(&self, running: &Running) -> bool {
        match &running.digest {
            Some(digest) if !self.digest.is_empty() => self.digest == *digest,
            _ => {
                self.artifact_keys == running.artifact_keys
                    && running
                        .apigateway_template_key
                        .as_ref()
                        .is_none_or(|key| *key == self.apigateway_template_key)
            }
        }
    }
}

/// What a stack runs, as its parameters say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its `ReleaseDigest`, where the template declares one.
    pub digest: Option<String>,
    pub artifact_keys: BTreeMap<String, String>,
    /// The key `ApiGatewayTemplateUrl` names.
    pub apigateway_template_key: Option<String>,
}

/// A history that is there but is not one this tool can read.
#[derive(Debug)]
pub struct Damaged {
    pub location: String,
    pub why: String,
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not a release history ({})",
            self.location, self.why
        )
    }
}

impl std::error::Error for Damaged {}

/// Whether `error` is (or wraps) a [`Damaged`] history.
pub fn is_damaged(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.downcast_ref::<Damaged>().is_some())
}

pub fn key(stack: &str) -> String {
    format!("deployments/{stack}.json")
}

/// The stack's history, oldest first; empty when nothing was ever recorded. A history that does
/// not parse is a [`Damaged`] error.
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    stack: &str,
) -> anyhow::Result<Vec<Entry>> {
    Ok(read_with_etag(s3, bucket, stack).await?.0)
}

/// Appends `entry`, keeping the newest [`KEPT`].
pub async fn append(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    stack: &str,
    entry: Entry,
) -> anyhow::Result<()> {
    update(s3, bucket, stack, |entries| {
        entries.push(entry.clone());
        let excess = entries.len().saturating_sub(KEPT);
        entries.drain(..excess);
        true
    })
    .await
}

/// Sets the outcome of the newest entry that is `release`. A release that goes live supersedes
/// every other live one.
pub async fn set_outcome(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    stack: &str,
    release: &Entry,
    outcome: Outcome,
) -> anyhow::Result<()> {
    update(s3, bucket, stack, |entries| {
        apply_outcome(entries, release, &outcome)
    })
    .await
}

/// [`set_outcome`] on entries in memory; `false` when no entry is `release`.
pub fn apply_outcome(entries: &mut [Entry], release: &Entry, outcome: &Outcome) -> bool {
    let Some(at) = entries.iter().rposition(|e| e.same_release(release)) else {
        return false;
    };
    if *outcome == Outcome::Live {
        for entry in entries.iter_mut() {
            if entry.outcome == Outcome::Live {
                entry.outcome = Outcome::Superseded;
            }
        }
    }
    entries[at].outcome = outcome.clone();
    true
}

/// Moves the history aside to `deployments/<stack>.json.damaged-<stamp>` and starts a new one
/// holding `fresh` (what runs, as recovered) or nothing. The copy is made before the history is
/// replaced, so nothing is lost; the new history is written only if nobody changed it since.
pub async fn reset(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    stack: &str,
    stamp: &str,
    fresh: Vec<Entry>,
) -> anyhow::Result<Option<String>> {
    let key = key(stack);
    let aside = format!("{key}.damaged-{stamp}");
    let found = crate::aws::s3::read_object_with_etag(s3, bucket, &key).await?;
    let mut put = s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/json")
        .body(ByteStream::from(serde_json::to_vec_pretty(&fresh)?));
    let moved = match found {
        Some((bytes, etag)) => {
            s3.put_object()
                .bucket(bucket)
                .key(&aside)
                .if_none_match("*")
                .body(ByteStream::from(bytes))
                .send()
                .await
                .with_context(|| format!("copying s3://{bucket}/{key} to {aside}"))?;
            if let Some(etag) = etag {
                put = put.if_match(etag);
            }
            Some(aside)
        }
        None => {
            put = put.if_none_match("*");
            None
        }
    };
    put.send().await.with_context(|| {
        format!(
            "writing a new s3://{bucket}/{key} (someone may have written it meanwhile; try again)"
        )
    })?;
    Ok(moved)
}

/// How many times a history write that lost a race is tried again.
const ATTEMPTS: usize = 10;

/// Applies `change` to the stack's history and writes it back, on the condition that nobody wrote
/// it since it was read (`If-Match` on its ETag, `If-None-Match: *` for a first entry); when
/// somebody did, reads it again and applies `change` to that, so no entry is ever lost. `change`
/// says whether it changed anything.
async fn update(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    stack: &str,
    mut change: impl FnMut(&mut Vec<Entry>) -> bool,
) -> anyhow::Result<()> {
    let key = key(stack);
    for _ in 0..ATTEMPTS {
        let (mut entries, etag) = read_with_etag(s3, bucket, stack).await?;
        if !change(&mut entries) {
            return Ok(());
        }
        crate::wait::pause_point("history").await;
        let mut put = s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(serde_json::to_vec_pretty(&entries)?));
        put = match &etag {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(_) => return Ok(()),
            Err(error) if super::lock::is_conflict(&error) => continue,
            Err(error) => {
                return Err(anyhow::Error::new(error))
                    .with_context(|| format!("recording the release in s3://{bucket}/{key}"));
            }
        }
    }
    bail!(
        "s3://{bucket}/{key} was changed by someone else each of {ATTEMPTS} times this tried to \
         write it"
    )
}

/// The stack's history and the ETag it was read at (`None` when there is no history yet).
async fn read_with_etag(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    stack: &str,
) -> anyhow::Result<(Vec<Entry>, Option<String>)> {
    let key = key(stack);
    let Some((bytes, etag)) = crate::aws::s3::read_object_with_etag(s3, bucket, &key).await? else {
        return Ok((Vec::new(), None));
    };
    let entries = serde_json::from_slice(&bytes).map_err(|error| Damaged {
        location: format!("s3://{bucket}/{key}"),
        why: error.to_string(),
    })?;
    Ok((entries, etag))
}

#[cfg(test)]
pub(crate) mod tests {

    use super::*;

    pub(crate) fn entry(commit: &str, key: &str, digest: &str, outcome: Outcome) -> Entry {
        Entry {
            deployed_at: "2026-11-28T10:00:00Z".into(),
            kind: Kind::Deploy,
            commit: commit.into(),
            dirty: false,
            artifact_keys: BTreeMap::from([(
                "ApigatewayExecuteArtifactKey".to_owned(),
                format!("lambdas/hardware/apigateway-execute/{key}.zip"),
            )]),
            template_key: format!("cloudformation/hardware/{commit}/hardware-environment.yaml"),
            apigateway_template_key: "cloudformation/hardware/x/apigateway.yaml".into(),
            digest: digest.into(),
            profile: Some(Profile::Release),
            probes: None,
            outcome,
            promoted_from: None,
        }
    }

    pub(crate) fn running(entry: &Entry) -> Running {
        Running {
            digest: Some(entry.digest.clone()),
            artifact_keys: entry.artifact_keys.clone(),
            apigateway_template_key: Some(entry.apigateway_template_key.clone()),
        }
    }

    pub(crate) fn failed(reason: &str) -> Outcome {
        Outcome::RolledBack {
            cause: Cause::Probe,
            reason: reason.into(),
        }
    }

    #[test]
    fn entries_from_before_outcomes_read_as_superseded_or_rolled_back() {
        let old = r#"[
          {"deployed_at": "t1", "command": "deploy", "commit": "a", "dirty": false,
           "artifact_keys": {"K": "lambdas/s/f/1.zip"}, "template_key": "t", "apigateway_template_key": "n"},
          {"deployed_at": "t2", "command": "deploy", "commit": "b", "dirty": false,
           "artifact_keys": {"K": "lambdas/s/f/2.zip"}, "template_key": "t", "apigateway_template_key": "n",
           "rolled_back": "probe GET /v1/x got 502"}
        ]"#;
        let entries: Vec<Entry> = serde_json::from_str(old).unwrap();
        assert_eq!(entries[0].outcome, Outcome::Superseded);
        assert_eq!(entries[1].outcome, failed("probe GET /v1/x got 502"));
        assert_eq!(entries[1].kind, Kind::Deploy);
        // Written back in the new form, read the same.
        let again: Vec<Entry> =
            serde_json::from_slice(&serde_json::to_vec(&entries).unwrap()).unwrap();
        assert_eq!(again, entries);
    }

    #[test]
    fn going_live_supersedes_the_release_that_was() {
        let mut history = vec![
            entry("aaaa111", "k1", "d1", Outcome::Live),
            entry("bbbb222", "k2", "d2", Outcome::Unchecked),
        ];
        let second = history[1].clone();
        assert!(apply_outcome(&mut history, &second, &Outcome::Live));
        assert_eq!(history[0].outcome, Outcome::Superseded);
        assert_eq!(history[1].outcome, Outcome::Live);
        let stranger = entry("cccc333", "k3", "d3", Outcome::Live);
        assert!(!apply_outcome(&mut history, &stranger, &Outcome::Live));
    }
}
