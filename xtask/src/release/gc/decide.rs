//! gc's decision, a pure function of what it read: which versions stay, which go, and why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::PREFIXES;
use crate::aws::s3::Version;
use crate::release::history::Entry;

/// A stack that takes its artifacts from this bucket, as gc needs to know it.
#[derive(Debug, Clone)]
pub struct Using {
    pub stack: String,
    /// Every key of this bucket its parameters name (artifact keys, the nested template's URL).
    pub keys: BTreeSet<String>,
    /// A service's own stack (not nested, not the bucket's): its running templates are looked up in
    /// its history by the artifact keys it runs.
    pub service_stack: bool,
    /// Artifact key parameter → key: what the history entry of the running release must match.
    pub artifact_keys: BTreeMap<String, String>,
}

/// What gc decided for one version of an object, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub key: String,
    pub version_id: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
    pub action: Action,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    /// Would be deleted: listed without `--delete`.
    Delete,
    Deleted,
    /// S3 refused to delete it; the reason says why.
    Failed,
}

/// A stack that runs an object the bucket no longer has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub stack: String,
    pub key: String,
}

/// Everything gc reads before it decides.
#[derive(Debug, Default)]
pub struct Inputs {
    pub versions: Vec<Version>,
    pub stacks: Vec<Using>,
    /// Stack → its recorded releases, oldest first.
    pub histories: BTreeMap<String, Vec<Entry>>,
    /// Stacks with a history that no longer exist and whose environment deletes its stores with
    /// them (a destroyed preview): nothing will roll back to them, so their last releases are not
    /// kept for it.
    pub gone: BTreeSet<String>,
}

/// The service an artifact or template key belongs to: `lambdas/<service>/…`,
/// `cloudformation/<service>/…`.
fn service_of(key: &str) -> Option<&str> {
    key.split('/').nth(1).filter(|s| !s.is_empty())
}

/// The keys of this bucket a parameter value names: a key itself, or a template URL in the bucket.
pub fn keys_named(value: &str, bucket: &str) -> Option<String> {
    if PREFIXES.iter().any(|p| value.starts_with(p)) {
        return Some(value.to_owned());
    }
    let key = crate::aws::template_key_of(value, bucket)?;
    PREFIXES.iter().any(|p| key.starts_with(p)).then_some(key)
}

/// The keys `entry` needs: its artifacts and its two templates.
fn needs(entry: &Entry) -> impl Iterator<Item = &String> {
    entry
        .artifact_keys
        .values()
        .chain([&entry.template_key, &entry.apigateway_template_key])
}

/// What to do with each version, and the stacks that run something missing. `now` and each
/// version's time are seconds since the Unix epoch.
pub fn decide(
    inputs: &Inputs,
    keep: usize,
    older_than: Duration,
    now: i64,
) -> (Vec<Verdict>, Vec<Missing>) {
    let present: BTreeSet<&str> = inputs.versions.iter().map(|v| v.key.as_str()).collect();
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    let mut keep_for = |key: &str, reason: String| {
        reasons.entry(key.to_owned()).or_insert(reason);
    };
    let mut missing = Vec::new();
    let mut unrecorded: BTreeMap<String, String> = BTreeMap::new();

    for using in &inputs.stacks {
        let mut running: Vec<&String> = using.keys.iter().collect();
        let history = inputs.histories.get(&using.stack);
        let recorded = history.and_then(|entries| {
            entries
                .iter()
                .rev()
                .find(|entry| entry.artifact_keys == using.artifact_keys)
        });
        if let Some(entry) = recorded {
            running.extend(needs(entry));
        } else if using.service_stack {
            for service in using.keys.iter().filter_map(|k| service_of(k)) {
                unrecorded
                    .entry(service.to_owned())
                    .or_insert_with(|| using.stack.clone());
            }
        }
        for key in running {
            keep_for(key, format!("runs in {}", using.stack));
            if !present.contains(key.as_str()) {
                let gone = Missing {
                    stack: using.stack.clone(),
                    key: key.clone(),
                };
                if !missing.contains(&gone) {
                    missing.push(gone);
                }
            }
        }
    }
    for (stack, entries) in &inputs.histories {
        if inputs.gone.contains(stack) {
            continue;
        }
        for entry in entries.iter().rev().take(keep) {
            for key in needs(entry) {
                keep_for(
                    key,
                    format!(
                        "{stack}'s release of {} is one of its last {keep}",
                        entry.deployed_at
                    ),
                );
            }
        }
    }
    let guarded: BTreeMap<&str, &Missing> = missing
        .iter()
        .filter_map(|m| Some((service_of(&m.key)?, m)))
        .collect();

    let verdicts = inputs
        .versions
        .iter()
        .map(|version| {
            let service = service_of(&version.key).unwrap_or_default();
            let is_template = version.key.starts_with("cloudformation/");
            let age = Duration::from_secs(u64::try_from(now - version.last_modified).unwrap_or(0));
            let (action, reason) = if let Some(reason) = reasons.get(&version.key) {
                (Action::Keep, reason.clone())
            } else if let Some(gone) = guarded.get(service) {
                let reason = format!(
                    "{} runs {}, which is missing, so nothing of {service} is deleted",
                    gone.stack, gone.key
                );
                (Action::Keep, reason)
            } else if let Some(stack) = unrecorded.get(service).filter(|_| is_template) {
                let reason = format!(
                    "{stack} runs a release its history does not record, so every template of \
                     {service} is kept"
                );
                (Action::Keep, reason)
            } else if version.last_modified > now {
                let reason = "written after the scan began".to_owned();
                (Action::Keep, reason)
            } else if age < older_than {
                let reason = format!("newer than {}", days(older_than));
                (Action::Keep, reason)
            } else {
                let reason = format!(
                    "no stack runs it and no stack's last {keep} releases need it ({} old)",
                    days(age)
                );
                (Action::Delete, reason)
            };
            Verdict {
                key: version.key.clone(),
                version_id: version.version_id.clone(),
                size: version.size,
                last_modified: version.last_modified,
                action,
                reason,
            }
        })
        .collect();
    (verdicts, missing)
}

/// A span as people read it: whole days, else hours, minutes or seconds.
fn days(span: Duration) -> String {
    let seconds = span.as_secs();
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_800_000_000;

    fn version(key: &str, days_old: i64) -> Version {
        Version {
            key: key.to_owned(),
            version_id: "v1".to_owned(),
            size: 100,
            last_modified: NOW - days_old * DAY,
        }
    }

    fn zip(n: u32) -> String {
        format!("lambdas/hardware/apigateway-execute/{n:064}.zip")
    }

    fn template(n: u32) -> String {
        format!("cloudformation/hardware/{n:064}/hardware-environment.yaml")
    }

    fn entry(n: u32) -> Entry {
        Entry {
            deployed_at: format!("2026-11-{n:02}T10:00:00Z"),
            kind: crate::release::history::Kind::Deploy,
            commit: format!("{n:040}"),
            dirty: false,
            artifact_keys: BTreeMap::from([("ApigatewayExecuteArtifactKey".to_owned(), zip(n))]),
            template_key: template(n),
            apigateway_template_key: "cloudformation/hardware/a/apigateway.yaml".to_owned(),
            digest: format!("{n}"),
            profile: None,
            probes: None,
            outcome: crate::release::history::Outcome::Superseded,
            promoted_from: None,
        }
    }

    fn stack(name: &str, n: u32) -> Using {
        Using {
            stack: name.to_owned(),
            keys: BTreeSet::from([
                zip(n),
                "cloudformation/hardware/a/apigateway.yaml".to_owned(),
            ]),
            service_stack: true,
            artifact_keys: BTreeMap::from([("ApigatewayExecuteArtifactKey".to_owned(), zip(n))]),
        }
    }

    fn verdict<'a>(verdicts: &'a [Verdict], key: &str) -> &'a Verdict {
        verdicts.iter().find(|v| v.key == key).unwrap()
    }

    /// Five releases of hardware-dev (the fifth runs), each a zip and a template, all 60 days old,
    /// and the shared nested template.
    fn five_releases() -> Inputs {
        let mut versions = vec![version("cloudformation/hardware/a/apigateway.yaml", 60)];
        for n in 1..=5 {
            versions.push(version(&zip(n), 60));
            versions.push(version(&template(n), 60));
        }
        Inputs {
            versions,
            stacks: vec![stack("hardware-dev", 5)],
            histories: BTreeMap::from([("hardware-dev".to_owned(), (1..=5).map(entry).collect())]),
            gone: BTreeSet::new(),
        }
    }

    #[test]
    fn a_destroyed_previews_releases_are_not_kept_for_it() {
        // hardware-pr-7 was destroyed; its history stays, but nothing rolls back to it.
        let mut inputs = five_releases();
        inputs.stacks.clear();
        inputs
            .histories
            .insert("hardware-pr-7".to_owned(), (1..=5).map(entry).collect());
        inputs.histories.remove("hardware-dev");
        let keep_one = Duration::from_secs(30 * 86_400);
        let (verdicts, _) = decide(&inputs, 2, keep_one, NOW);
        assert_eq!(verdict(&verdicts, &zip(5)).action, Action::Keep);
        inputs.gone.insert("hardware-pr-7".to_owned());
        let (verdicts, _) = decide(&inputs, 2, keep_one, NOW);
        assert_eq!(verdict(&verdicts, &zip(5)).action, Action::Delete);
    }

    #[test]
    fn what_runs_and_the_last_releases_are_kept_and_the_rest_deleted() {
        let (verdicts, missing) =
            decide(&five_releases(), 2, Duration::from_secs(30 * 86_400), NOW);
        assert!(missing.is_empty());
        assert_eq!(verdict(&verdicts, &zip(5)).reason, "runs in hardware-dev");
        assert_eq!(
            verdict(&verdicts, &template(5)).reason,
            "runs in hardware-dev"
        );
        let fourth = verdict(&verdicts, &zip(4));
        assert_eq!(fourth.action, Action::Keep);
        assert_eq!(
            fourth.reason,
            "hardware-dev's release of 2026-11-04T10:00:00Z is one of its last 2"
        );
        for n in 1..=3 {
            let old = verdict(&verdicts, &zip(n));
            assert_eq!(old.action, Action::Delete, "{old:?}");
            assert_eq!(
                old.reason,
                "no stack runs it and no stack's last 2 releases need it (60d old)"
            );
            assert_eq!(verdict(&verdicts, &template(n)).action, Action::Delete);
        }
    }

    #[test]
    fn young_objects_are_kept_whatever_else() {
        let mut inputs = five_releases();
        inputs.versions.push(version(&zip(9), 2));
        let (verdicts, _) = decide(&inputs, 2, Duration::from_secs(30 * 86_400), NOW);
        let young = verdict(&verdicts, &zip(9));
        assert_eq!(
            (young.action, young.reason.as_str()),
            (Action::Keep, "newer than 30d")
        );
        // With no age limit, what nothing needs goes, however new, but never what is newer than
        // the scan.
        inputs.versions.push(version(&zip(10), -1));
        let (verdicts, _) = decide(&inputs, 2, Duration::ZERO, NOW);
        assert_eq!(verdict(&verdicts, &zip(9)).action, Action::Delete);
        let newer = verdict(&verdicts, &zip(10));
        assert_eq!(
            (newer.action, newer.reason.as_str()),
            (Action::Keep, "written after the scan began")
        );
    }

    #[test]
    fn a_missing_object_is_reported_and_guards_its_service() {
        let mut inputs = five_releases();
        inputs.versions.retain(|v| v.key != zip(5));
        inputs
            .versions
            .push(version("lambdas/users/apigateway-execute/old.zip", 60));
        let (verdicts, missing) = decide(&inputs, 2, Duration::ZERO, NOW);
        assert_eq!(
            missing,
            [Missing {
                stack: "hardware-dev".to_owned(),
                key: zip(5)
            }]
        );
        let guarded = verdict(&verdicts, &zip(1));
        assert_eq!(guarded.action, Action::Keep);
        assert!(
            guarded
                .reason
                .contains("which is missing, so nothing of hardware is deleted")
        );
        // Another service's garbage still goes.
        let other = verdict(&verdicts, "lambdas/users/apigateway-execute/old.zip");
        assert_eq!(other.action, Action::Delete);
    }

    #[test]
    fn a_stack_running_an_unrecorded_release_keeps_its_templates() {
        let mut inputs = five_releases();
        inputs.stacks = vec![stack("hardware-dev", 7)];
        inputs.versions.push(version(&zip(7), 60));
        let (verdicts, _) = decide(&inputs, 1, Duration::ZERO, NOW);
        assert_eq!(verdict(&verdicts, &zip(7)).reason, "runs in hardware-dev");
        let template = verdict(&verdicts, &template(1));
        assert_eq!(template.action, Action::Keep);
        assert!(
            template
                .reason
                .contains("runs a release its history does not record")
        );
        // Its old zips are still garbage: the stack names the one zip it runs.
        assert_eq!(verdict(&verdicts, &zip(1)).action, Action::Delete);
    }

    #[test]
    fn keys_are_read_from_parameters_and_template_urls() {
        let bucket = "biometrix-infrastructure-us-west-2";
        assert_eq!(keys_named(&zip(1), bucket), Some(zip(1)));
        let url = format!(
            "https://s3.us-west-2.amazonaws.com/{bucket}/{}",
            template(1)
        );
        assert_eq!(keys_named(&url, bucket), Some(template(1)));
        let pinned = format!("{url}?versionId=3%2FL4kq");
        assert_eq!(keys_named(&pinned, bucket), Some(template(1)));
        assert_eq!(
            keys_named("https://s3.amazonaws.com/other/lambdas/x.zip", bucket),
            None
        );
        assert_eq!(keys_named("dev", bucket), None);
    }
}
