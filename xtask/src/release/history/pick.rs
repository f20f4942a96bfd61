//! What `rollback` goes back to: by deploy order, the release that ran before the one that runs,
//! never one known to fail unless `--to` names it, and then said.

use anyhow::bail;

use super::{Entry, Outcome, Running};

/// What `rollback --to` names: a commit (or a prefix of one) or an artifact key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The release that ran before the one that runs now, skipping any known to fail.
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

/// The newest entry that is what the stack runs, by its position.
pub fn find_running(history: &[Entry], running: &Running) -> Option<usize> {
    history.iter().rposition(|entry| entry.is(running))
}

/// Whether some entry records `release` as having failed.
fn known_to_fail(history: &[Entry], release: &Entry) -> bool {
    history
        .iter()
        .any(|e| e.outcome.is_failure() && e.same_release(release))
}

/// The release that ran before the one at `current` (or before the newest, when the history does
/// not know what runs), by deploy order: the newest earlier entry that passed its check, is
/// another release than the current one, and was never recorded as failing.
pub fn previous_good(history: &[Entry], current: Option<usize>) -> Option<&Entry> {
    let end = current.unwrap_or(history.len());
    let now = current.map(|at| &history[at]);
    history[..end].iter().rev().find(|entry| {
        entry.outcome.is_good()
            && now.is_none_or(|now| !entry.same_release(now))
            && !known_to_fail(history, entry)
    })
}

/// What `rollback` picks, and what it should say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub entry: Entry,
    /// Said before deploying it: why it is this one, or that it is known to fail.
    pub note: Option<String>,
}

/// The release `target` names, given the history and what runs. A known failure is picked only
/// when `target` names it alone, and then said.
pub fn pick(
    history: &[Entry],
    running: Option<&Running>,
    target: &Target,
    stack: &str,
    status: &str,
) -> anyhow::Result<Picked> {
    if history.is_empty() {
        bail!(
            "stack {stack} has no recorded releases (deployments/{stack}.json): only releases made \
             by this tool can be rolled back to; pass --to <artifact key> to name one"
        );
    }
    let current = running.and_then(|r| find_running(history, r));
    let runs = |entry: &Entry| current.is_some_and(|at| history[at].same_release(entry));
    let said_failing = |entry: &Entry| {
        history
            .iter()
            .rev()
            .find(|e| e.outcome.is_failure() && e.same_release(entry))
            .map(|e| e.outcome.describe())
    };
    match target {
        Target::Previous => match previous_good(history, current) {
            Some(entry) => Ok(Picked {
                entry: entry.clone(),
                note: None,
            }),
            None => bail!(
                "no release of {stack} before the one that runs passed its checks and is not \
                 known to fail: there is nothing safe to roll back to. Deploy a fix, or name a \
                 release with --to ({status} lists them with their outcomes)"
            ),
        },
        Target::Commit(commit) => {
            let of_commit: Vec<&Entry> = history
                .iter()
                .rev()
                .filter(|e| e.commit.starts_with(commit.as_str()))
                .collect();
            if of_commit.is_empty() {
                let known: Vec<&str> = history
                    .iter()
                    .rev()
                    .map(|e| e.commit.get(..12).unwrap_or(&e.commit))
                    .collect();
                bail!(
                    "no recorded release of {stack} was built from commit {commit}; recorded \
                     commits, newest first: {}",
                    known.join(", ")
                );
            }
            // Not what runs; clean before dirty; passed before unchecked before failing.
            let rank = |e: &Entry| {
                let standing = match &e.outcome {
                    o if o.is_good() && said_failing(e).is_none() => 0,
                    Outcome::Unchecked => 1,
                    _ => 2,
                };
                (standing, e.dirty)
            };
            let Some(best) = of_commit
                .iter()
                .filter(|e| !runs(e))
                .min_by_key(|e| rank(e))
            else {
                bail!(
                    "every recorded release of {stack} from commit {commit} is the release that \
                     runs now: there is nothing to roll back to there"
                );
            };
            let note = match said_failing(best) {
                Some(failed) => Some(format!(
                    "the release from commit {} that --to names is recorded as {failed}; \
                     deploying it because --to names it",
                    crate::names::short(&best.commit)
                )),
                None if best.dirty => Some(format!(
                    "the release from commit {} was built with uncommitted changes",
                    crate::names::short(&best.commit)
                )),
                None => None,
            };
            Ok(Picked {
                entry: (*best).clone(),
                note,
            })
        }
        Target::Key(key) => {
            if let Some(entry) = history
                .iter()
                .rev()
                .find(|entry| entry.artifact_keys.values().any(|k| k == key))
            {
                let note = said_failing(entry).map(|failed| {
                    format!("{key} is recorded as {failed}; deploying it because --to names it")
                });
                return Ok(Picked {
                    entry: entry.clone(),
                    note,
                });
            }
            let newest = history.last().expect("the history is not empty");
            let mut entry = newest.clone();
            swap_key(&mut entry, key, stack)?;
            Ok(Picked { entry, note: None })
        }
    }
}

/// `entry` with `key` in place of the key of the function it is for, as a release never recorded
/// (commit unknown, profile unknown, unchecked).
pub fn swap_key(entry: &mut Entry, key: &str, stack: &str) -> anyhow::Result<()> {
    let function = key.split('/').nth(2).unwrap_or_default();
    let parameter = crate::release::manifest::artifact_key_parameter(function);
    if !entry.artifact_keys.contains_key(&parameter) {
        bail!(
            "{key} is not an artifact of a function of stack {stack} (its functions' parameters \
             are {})",
            entry
                .artifact_keys
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    entry.artifact_keys.insert(parameter, key.to_owned());
    entry.commit = "unknown".to_owned();
    entry.dirty = false;
    entry.digest = String::new();
    entry.profile = None;
    entry.outcome = Outcome::Unchecked;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Outcome;
    use super::super::tests::{entry, failed, running};
    use super::*;

    /// [`pick`] for stack `s`, whose status command carries the user's `--local`.
    fn pick_in(
        history: &[Entry],
        running: Option<&Running>,
        target: &Target,
    ) -> anyhow::Result<Picked> {
        pick(
            history,
            running,
            target,
            "s",
            "`cargo xtask status s dev --local`",
        )
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
    fn a_template_only_failure_goes_back_to_the_release_that_ran_before_it() {
        // Code k1 twice: first with one template, then another (template-only change), which failed.
        let history = vec![
            entry("aaaa111", "k0", "d0", Outcome::Superseded),
            entry("bbbb222", "k1", "d1", Outcome::Superseded),
            entry("cccc333", "k1", "d2", failed("probe failed")),
        ];
        let picked = previous_good(&history, Some(2)).unwrap();
        assert_eq!(
            picked.digest, "d1",
            "the release just before, not older code"
        );
    }

    #[test]
    fn a_known_failure_is_never_picked_by_default() {
        let history = vec![
            entry("aaaa111", "k1", "d1", Outcome::Superseded),
            entry("bbbb222", "k2", "d2", failed("panics at init")),
            entry("aaaa111", "k1", "d3", Outcome::Live),
            entry("cccc333", "k1", "d4", failed("a probe header")),
        ];
        // The failed d4 runs: back to d3, never to d2.
        let picked = previous_good(&history, Some(3)).unwrap();
        assert_eq!(picked.digest, "d3");
        // A plain rollback from d3 skips d2, which failed, and goes to d1.
        let picked = pick_in(&history, Some(&running(&history[2])), &Target::Previous).unwrap();
        assert_eq!(picked.entry.digest, "d1");
        assert_eq!(picked.note, None);
        // An unchecked release is not known to be good either.
        let history = vec![
            entry("aaaa111", "k1", "d1", Outcome::Unchecked),
            entry("bbbb222", "k2", "d2", Outcome::Live),
        ];
        let error = pick_in(&history, Some(&running(&history[1])), &Target::Previous);
        let error = error.unwrap_err().to_string();
        assert!(
            error.contains("nothing safe"),
            "no good release: refused, never something else"
        );
        assert!(
            error.contains("(`cargo xtask status s dev --local` lists them"),
            "the advice carries the user's flags: {error}"
        );
    }

    #[test]
    fn a_release_that_once_failed_is_not_good_under_another_entry() {
        let mut history = vec![
            entry("aaaa111", "k1", "d1", Outcome::Superseded),
            entry("bbbb222", "k2", "d2", Outcome::Superseded),
            entry("cccc333", "k3", "d3", Outcome::Live),
        ];
        // d2 deployed again later and failed: the earlier d2 entry is no longer a target.
        history.push(entry("bbbb222", "k2", "d2", failed("alarm")));
        history.push(entry("dddd444", "k4", "d4", Outcome::Unchecked));
        let picked = previous_good(&history, Some(4)).unwrap();
        assert_eq!(picked.digest, "d3");
        let picked = previous_good(&history[..3], Some(2)).unwrap();
        assert_eq!(picked.digest, "d2");
    }

    #[test]
    fn commits_prefer_a_clean_good_release_that_does_not_run() {
        let mut dirty = entry("aaaa111", "k2", "d2", Outcome::Live);
        dirty.dirty = true;
        let history = vec![
            entry("aaaa111", "k1", "d1", Outcome::Superseded),
            entry("bbbb222", "k0", "d0", Outcome::Superseded),
            dirty,
        ];
        let now = running(&history[2]);
        let picked = pick_in(&history, Some(&now), &Target::Commit("aaaa".into())).unwrap();
        assert_eq!(
            picked.entry.digest, "d1",
            "the clean one, not the running dirty one"
        );
        // Only the running one: said, not "nothing to deploy".
        let only = vec![history[2].clone()];
        let error = pick_in(&only, Some(&now), &Target::Commit("aaaa".into())).unwrap_err();
        assert!(error.to_string().contains("runs now"), "{error}");
        // An unknown commit names the recorded ones.
        let error = pick_in(&history, Some(&now), &Target::Commit("ffff".into())).unwrap_err();
        assert!(error.to_string().contains("aaaa111"), "{error}");
    }

    #[test]
    fn a_failed_release_is_picked_only_by_name_and_then_said() {
        let history = vec![
            entry("aaaa111", "k1", "d1", failed("panics at init")),
            entry("bbbb222", "k2", "d2", Outcome::Live),
        ];
        let now = running(&history[1]);
        let by_commit = pick_in(&history, Some(&now), &Target::Commit("aaaa".into())).unwrap();
        assert_eq!(by_commit.entry.digest, "d1");
        assert!(
            by_commit.note.unwrap().contains("panics at init"),
            "named explicitly, and said"
        );
        let key = Target::Key("lambdas/hardware/apigateway-execute/k1.zip".into());
        let by_key = pick_in(&history, Some(&now), &key).unwrap();
        assert!(by_key.note.unwrap().contains("because --to names it"));
    }

    #[test]
    fn keys_find_their_release_or_swap_into_the_newest() {
        let history = vec![
            entry("aaaa111", "k1", "d1", Outcome::Superseded),
            entry("bbbb222", "k2", "d2", Outcome::Live),
        ];
        let now = running(&history[1]);
        let key = "lambdas/hardware/apigateway-execute/k0.zip".to_owned();
        let swapped = pick_in(&history, Some(&now), &Target::Key(key.clone())).unwrap();
        assert_eq!(
            swapped.entry.artifact_keys["ApigatewayExecuteArtifactKey"],
            key
        );
        assert_eq!(swapped.entry.template_key, history[1].template_key);
        assert_eq!(swapped.entry.commit, "unknown");
        assert_eq!(swapped.entry.outcome, Outcome::Unchecked);
        let other = Target::Key("lambdas/hardware/other-function/k.zip".into());
        let error = pick_in(&history, Some(&now), &other).unwrap_err();
        assert!(
            error.to_string().contains("ApigatewayExecuteArtifactKey"),
            "{error}"
        );
        let error = pick_in(&[], Some(&now), &Target::Previous).unwrap_err();
        assert!(
            error.to_string().contains("no recorded releases"),
            "{error}"
        );
    }
}
