//! The deploy history of each stack: `deployments/<stack>.json` in the artifact bucket, one entry
//! per deploy, rollback or promotion that changed the stack, newest last. `status` reads it to say where the
//! running code came from; `rollback` picks its target from it.
//!
//! CloudFormation keeps no history of parameter values, and a stack's events do not carry them,
//! so the release tool records its own. Entries are appended under the stack's deploy lock, and
//! written conditionally on the version read, so that no entry is lost even if the lock was not
//! honoured.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

/// How many entries a stack's history keeps.
const KEPT: usize = 100;

/// One deploy that changed a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub deployed_at: String,
    /// `deploy`, `rollback` or `promote`; `recovered` for a release a deploy found running but not
    /// recorded (one interrupted after it executed, or made by another tool).
    pub command: String,
    /// The commit the code was built from, and whether the tree had uncommitted changes.
    pub commit: String,
    pub dirty: bool,
    /// Artifact key parameter → key, for every function of the service.
    pub artifact_keys: BTreeMap<String, String>,
    /// The service template and the nested API Gateway template, as keys in the bucket.
    pub template_key: String,
    pub apigateway_template_key: String,
    /// Why this release was rolled back by the tool itself (a probe that failed), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
    /// The environment a promoted release was taken from, like `qa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
}

pub fn key(stack: &str) -> String {
    format!("deployments/{stack}.json")
}

/// The stack's history, oldest first; empty when nothing was ever recorded.
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

/// Marks the newest entry that deployed `artifact_keys` as rolled back, for `reason`.
pub async fn mark_rolled_back(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    stack: &str,
    artifact_keys: &BTreeMap<String, String>,
    reason: &str,
) -> anyhow::Result<()> {
    update(s3, bucket, stack, |entries| {
        let Some(entry) = entries
            .iter_mut()
            .rev()
            .find(|e| e.artifact_keys == *artifact_keys)
        else {
            return false;
        };
        entry.rolled_back = Some(reason.to_owned());
        true
    })
    .await
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
                    .with_context(|| format!("recording the deploy in s3://{bucket}/{key}"));
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
    let object = match s3.get_object().bucket(bucket).key(&key).send().await {
        Ok(object) => object,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            return Ok((Vec::new(), None));
        }
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("reading s3://{bucket}/{key}"));
        }
    };
    let etag = object.e_tag().map(str::to_owned);
    let bytes = object
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
        .into_bytes();
    let entries = serde_json::from_slice(&bytes).with_context(|| {
        format!("s3://{bucket}/{key} is not a deploy history; move it aside and deploy again")
    })?;
    Ok((entries, etag))
}

/// What `rollback --to` names: a commit (or a prefix of one) or an artifact key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The newest recorded release whose code differs from what runs now.
    Previous,
    Commit(String),
    Key(String),
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Target> {
        if text.starts_with("lambdas/") && text.ends_with(".zip") {
            return Ok(Target::Key(text.to_owned()));
        }
        let is_commit = (4..=40).contains(&text.len())
            && text
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        if is_commit {
            return Ok(Target::Commit(text.to_owned()));
        }
        bail!(
            "`{text}` is neither a commit (4 to 40 lowercase hex digits) nor an artifact key \
             (lambdas/<service>/<function>/<sha256>.zip)"
        )
    }
}

/// The release to go back to, given the history and the keys the stack runs now.
///
/// A key names one function's artifact; the other functions keep the keys of the newest release
/// that used it (or, when no recorded release did, of the newest release, with that key swapped in).
pub fn pick(
    history: &[Entry],
    running: &BTreeMap<String, String>,
    target: &Target,
    stack: &str,
) -> anyhow::Result<Entry> {
    let Some(newest) = history.last() else {
        bail!(
            "stack {stack} has no recorded deploys (deployments/{stack}.json): only deploys made \
             by this tool can be rolled back; pass --to <artifact key> to name one"
        );
    };
    match target {
        Target::Previous => history
            .iter()
            .rev()
            .find(|entry| entry.artifact_keys != *running)
            .cloned()
            .with_context(|| {
                format!(
                    "every recorded deploy of {stack} runs the code that runs now: there is \
                     nothing earlier to roll back to"
                )
            }),
        Target::Commit(commit) => history
            .iter()
            .rev()
            .find(|entry| entry.commit.starts_with(commit.as_str()))
            .cloned()
            .with_context(|| {
                let known: Vec<&str> = history
                    .iter()
                    .rev()
                    .map(|e| e.commit.get(..12).unwrap_or(&e.commit))
                    .collect();
                format!(
                    "no recorded deploy of {stack} was built from commit {commit}; recorded \
                     commits, newest first: {}",
                    known.join(", ")
                )
            }),
        Target::Key(key) => {
            if let Some(entry) = history
                .iter()
                .rev()
                .find(|entry| entry.artifact_keys.values().any(|k| k == key))
            {
                return Ok(entry.clone());
            }
            let function = key.split('/').nth(2).unwrap_or_default();
            let parameter = super::manifest::artifact_key_parameter(function);
            if !newest.artifact_keys.contains_key(&parameter) {
                bail!(
                    "{key} is not an artifact of a function of stack {stack} (its functions' \
                     parameters are {})",
                    newest
                        .artifact_keys
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let mut entry = newest.clone();
            entry.artifact_keys.insert(parameter, key.clone());
            entry.commit = "unknown".to_owned();
            entry.dirty = false;
            Ok(entry)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(commit: &str, key: &str) -> Entry {
        Entry {
            deployed_at: "2026-11-28T10:00:00Z".into(),
            command: "deploy".into(),
            commit: commit.into(),
            dirty: false,
            artifact_keys: BTreeMap::from([(
                "ApigatewayExecuteArtifactKey".to_owned(),
                format!("lambdas/hardware/apigateway-execute/{key}.zip"),
            )]),
            template_key: format!("cloudformation/hardware/{commit}/hardware-environment.yaml"),
            apigateway_template_key: "cloudformation/hardware/x/apigateway.yaml".into(),
            rolled_back: None,
            promoted_from: None,
        }
    }

    #[test]
    fn targets_parse_as_commits_or_keys() {
        assert_eq!(
            "a1b2c3d".parse::<Target>().unwrap(),
            Target::Commit("a1b2c3d".into())
        );
        assert_eq!(
            "lambdas/hardware/apigateway-execute/ab.zip"
                .parse::<Target>()
                .unwrap(),
            Target::Key("lambdas/hardware/apigateway-execute/ab.zip".into())
        );
        for bad in ["main", "abc", "A1B2C3D", "lambdas/x", "v1.2.3"] {
            let error = bad.parse::<Target>().unwrap_err().to_string();
            assert!(error.contains("neither a commit"), "{bad}: {error}");
        }
    }

    #[test]
    fn previous_is_the_newest_release_running_other_code() {
        let history = vec![
            entry("aaaa111", "k1"),
            entry("bbbb222", "k2"),
            entry("cccc333", "k3"),
        ];
        let running = history[2].artifact_keys.clone();
        let picked = pick(&history, &running, &Target::Previous, "hardware-dev").unwrap();
        assert_eq!(picked.commit, "bbbb222");
        // After a rollback to k2, recorded as an entry of its own, the previous code is k3 again.
        let mut history = history;
        history.push(entry("bbbb222", "k2"));
        let running = history[3].artifact_keys.clone();
        let picked = pick(&history, &running, &Target::Previous, "hardware-dev").unwrap();
        assert_eq!(picked.commit, "cccc333");
    }

    #[test]
    fn refusals_say_why() {
        let history = vec![entry("aaaa111", "k1")];
        let running = history[0].artifact_keys.clone();
        let error = pick(&history, &running, &Target::Previous, "s").unwrap_err();
        assert!(error.to_string().contains("nothing earlier"), "{error}");
        let error = pick(&[], &running, &Target::Previous, "s").unwrap_err();
        assert!(error.to_string().contains("no recorded deploys"), "{error}");
        let error = pick(&history, &running, &Target::Commit("ffff".into()), "s").unwrap_err();
        assert!(error.to_string().contains("aaaa111"), "{error}");
        let other = Target::Key("lambdas/hardware/other-function/k.zip".into());
        let error = pick(&history, &running, &other, "s").unwrap_err();
        assert!(
            error.to_string().contains("ApigatewayExecuteArtifactKey"),
            "{error}"
        );
    }

    #[test]
    fn commits_and_keys_find_their_release() {
        let history = vec![entry("aaaa111", "k1"), entry("bbbb222", "k2")];
        let running = history[1].artifact_keys.clone();
        let by_commit = pick(&history, &running, &Target::Commit("aaaa".into()), "s").unwrap();
        assert_eq!(by_commit, history[0]);
        let key = "lambdas/hardware/apigateway-execute/k1.zip".to_owned();
        let by_key = pick(&history, &running, &Target::Key(key), "s").unwrap();
        assert_eq!(by_key, history[0]);
        // A key no recorded release used: the newest release with that key swapped in.
        let key = "lambdas/hardware/apigateway-execute/k0.zip".to_owned();
        let swapped = pick(&history, &running, &Target::Key(key.clone()), "s").unwrap();
        assert_eq!(swapped.artifact_keys["ApigatewayExecuteArtifactKey"], key);
        assert_eq!(swapped.template_key, history[1].template_key);
        assert_eq!(swapped.commit, "unknown");
    }
}
