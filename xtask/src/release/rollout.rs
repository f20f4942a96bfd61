//! The release loop that deploy, promote and rollback share: for each stack, under its lock from
//! the first change to the verdict, bring it to the release, record the release as unchecked the
//! moment the stack runs it, probe it, and record the verdict; on a failure, go back to the
//! release that ran before it (never to one known to fail) under the same lock, and judge that
//! too. A rerun of a release that runs but failed, or was never checked, is checked again, never
//! "nothing to deploy".
//!
//! Where the probes go is a [`Prober`]: the API's URLs in AWS (`release::probe::Urls`), or a
//! gateway on this machine in front of the function as the emulator describes it
//! (`local::check::Gateway`). The loop does not know which.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use anyhow::bail;

use super::deployer::{Deployer, Release};
use super::history::{self, Cause, Entry, Kind, Outcome, Target};
use super::lease::Lease;
use super::lock::Lock;
use super::report::{Probes, StackReport};
use super::stack::{Outcome as Changed, Phase};
use super::traffic::TurnedAway;
use crate::workspace::{Probe, Service};
use gate::probe::Failed;

/// A probe's answer: passed, a failure to report, or an error (the check could not run at all).
pub type Probed<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Result<(), Failed>>> + 'a>>;

/// Where a release's probes go.
pub trait Prober {
    /// Sends the store-free ones of `probes` (the release's) to what `stack` runs now.
    fn probe<'a>(
        &'a self,
        service: &'a Service,
        probes: &'a [Probe],
        stack: &'a StackReport,
    ) -> Probed<'a>;
}

/// One environment's releases, brought to their stacks and judged.
pub struct Rollout<'a> {
    pub deployer: &'a Deployer<'a>,
    /// The command's lease on the bucket's artifacts, renewed as each stack's work begins and
    /// before a rollback, each of which may wait for up to the timeout.
    pub lease: &'a Lease<'a>,
    pub prober: &'a dyn Prober,
    /// Leave a release that fails its probes running (and recorded as failed).
    pub no_rollback: bool,
}

/// What one stack's release came to: its report, and the failure to exit non-zero with.
type Judged = (StackReport, Option<String>);

impl Rollout<'_> {
    /// Brings each service's stack to its release in turn; stops at the first that fails.
    pub async fn each(
        &self,
        releases: Vec<(&Service, Release)>,
    ) -> anyhow::Result<(Vec<StackReport>, Option<String>)> {
        let mut stacks = Vec::new();
        for (service, release) in releases {
            let (stack, failure) = self.one(service, release).await?;
            stacks.push(stack);
            if failure.is_some() {
                return Ok((stacks, failure));
            }
        }
        Ok((stacks, None))
    }

    /// Brings `service`'s stack back to the earlier release `target` names, and judges it.
    pub async fn restore(&self, service: &Service, target: &Target) -> anyhow::Result<Judged> {
        self.locked(service, async |lock, phase, deadline, started| {
            let d = self.deployer;
            let stack = d.stack_name(&service.name);
            let Some((_, running)) = d.running(service, &stack).await? else {
                bail!(
                    "stack {stack} does not exist in {}: there is nothing to roll back; deploy it \
                     with `cargo xtask deploy {} {}{}`",
                    d.region,
                    service.name,
                    d.environment,
                    self.flags()
                );
            };
            let (entry, kept) = match d.history(&stack).await {
                Ok(history) => {
                    let status = d.status_command(&service.name);
                    let picked = history::pick(&history, Some(&running), target, &stack, &status)?;
                    if let Some(note) = &picked.note {
                        d.progress.note(&format!("warning: {note}"));
                    }
                    (picked.entry, History::Kept)
                }
                // A damaged history: a key can still be rolled back to, from what the stack runs.
                Err(error) => {
                    let Target::Key(key) = target else {
                        return Err(error);
                    };
                    d.progress.note(&format!(
                        "warning: {error:#}; rolling back from what the stack runs, with {key}"
                    ));
                    let Some(mut entry) = d.running_entry(service, &stack).await? else {
                        bail!("stack {stack} is changing or runs no whole release; try again");
                    };
                    history::swap_key(&mut entry, key, &stack)?;
                    (entry, History::Damaged)
                }
            };
            if let Target::Key(key) = target {
                let owner = key.split('/').nth(1).unwrap_or_default();
                if owner != service.name {
                    bail!(
                        "{key} is an artifact of service {owner}, not of {}: rollback --to takes \
                         only the keys of {}'s own functions (`cargo xtask status {} {}{}` lists \
                         its releases)",
                        service.name,
                        service.name,
                        service.name,
                        d.environment,
                        self.flags()
                    );
                }
            }
            d.progress.note(&format!(
                "rolling {stack} back to the release from commit {} (deployed {} by {})",
                crate::names::short(&entry.commit),
                entry.deployed_at,
                entry.kind.as_str()
            ));
            let advice = format!(
                "Pick another with --to ({} lists the releases)",
                d.status_command(&service.name)
            );
            let release = d
                .recorded(service, entry, Kind::Rollback, None, &advice)
                .await?;
            let (mut report, failed, restored_entry) = self
                .change_and_check(lock, service, &release, kept, phase, deadline, started)
                .await?;
            let Some(failed) = failed else {
                return Ok((report, None));
            };
            let outcome = Outcome::Failed {
                cause: Cause::Probe,
                reason: failed.clone(),
            };
            if kept == History::Kept {
                self.record_outcome(lock, &stack, &restored_entry, outcome)
                    .await?;
            }
            let failure = format!(
                "{stack} is rolled back, but the release it restored fails its probes too \
                 ({failed}): pick another with --to ({} lists the releases)",
                d.status_command(&service.name)
            );
            report.probes = Some(Probes::Failed { failed });
            Ok((report, Some(failure)))
        })
        .await
    }

    /// Brings `service`'s stack to `release` and judges it: rolls a failure back to the release
    /// before it, unless there is none or `--no-rollback` says not to.
    async fn one(&self, service: &Service, release: Release) -> anyhow::Result<Judged> {
        self.locked(service, async |lock, phase, deadline, started| {
            let d = self.deployer;
            let stack = d.stack_name(&service.name);
            let history = d.history(&stack).await?;
            d.recover(service, &stack, &history).await?;
            let (mut report, failed, entry) = self
                .change_and_check(
                    lock,
                    service,
                    &release,
                    History::Kept,
                    phase,
                    deadline,
                    started,
                )
                .await?;
            let Some(failed) = failed else {
                return Ok((report, None));
            };
            let flags = self.flags();
            let (name, environment) = (&service.name, d.environment);
            let stays = async |why: String| {
                let outcome = Outcome::Failed {
                    cause: Cause::Probe,
                    reason: failed.clone(),
                };
                self.record_outcome(lock, &stack, &entry, outcome).await?;
                anyhow::Ok(why)
            };
            if self.no_rollback {
                let why = stays(format!(
                    "{stack}: {failed}. The release stays, as --no-rollback asks, recorded as \
                     failed; undo it with `cargo xtask rollback {name} {environment}{flags}`"
                ))
                .await?;
                report.probes = Some(Probes::Failed { failed });
                return Ok((report, Some(why)));
            }
            let history = d.history(&stack).await?;
            let at = history.iter().rposition(|e| e.same_release(&entry));
            let Some(before) = history::previous_good(&history, at).cloned() else {
                let why = if report.outcome == Changed::Created {
                    format!(
                        "{stack}: {failed}. It was the stack's first deploy, so there is nothing \
                         to roll back to: it stays as it is, recorded as failed; fix the service \
                         and deploy again"
                    )
                } else {
                    format!(
                        "{stack}: {failed}. It runs, and no release before it passed its checks \
                         without failing since, so there is nothing safe to roll back to: it \
                         stays, recorded as failed. Fix the service and deploy again, or name a \
                         release with `cargo xtask rollback {name} {environment}{flags} --to …`"
                    )
                };
                let why = stays(why).await?;
                report.probes = Some(Probes::Failed { failed });
                return Ok((report, Some(why)));
            };
            d.progress.note(&format!("{stack}: {failed}; rolling back"));
            let advice = format!(
                "Roll back with --to another release ({} lists them)",
                d.status_command(&service.name)
            );
            let undo = async {
                self.lease.renew().await?;
                let earlier = d
                    .recorded(service, before, Kind::Rollback, None, &advice)
                    .await?;
                let rolled_back = Outcome::RolledBack {
                    cause: Cause::Probe,
                    reason: failed.clone(),
                };
                self.record_outcome(lock, &stack, &entry, rolled_back)
                    .await?;
                // The rollback gets a deadline of its own: it starts when the failure is known.
                let deadline = Instant::now() + d.options.timeout;
                self.change_and_check(
                    lock,
                    service,
                    &earlier,
                    History::Kept,
                    phase,
                    deadline,
                    started,
                )
                .await
            };
            let (restored, again, restored_entry) = undo.await.map_err(|error| {
                anyhow::anyhow!(
                    "{stack}: {failed}, and rolling it back failed: {error:#}. The failed release \
                     may still run: see `cargo xtask status {name} {environment}{flags}`, and roll \
                     back with `cargo xtask rollback {name} {environment}{flags}`"
                )
            })?;
            let now = restored
                .artifact_keys
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let again = match again {
                Some(also) => {
                    let outcome = Outcome::Failed {
                        cause: Cause::Probe,
                        reason: also.clone(),
                    };
                    self.record_outcome(lock, &stack, &restored_entry, outcome)
                        .await?;
                    format!("but it fails its probes too ({also})")
                }
                None => "and it passes its probes".to_owned(),
            };
            let why = format!(
                "{stack}: {failed}. Rolled back by itself to the release before: {now} runs again, \
                 {again}"
            );
            report.probes = Some(Probes::RolledBack {
                failed,
                restored: restored.artifact_keys,
            });
            Ok((report, Some(why)))
        })
        .await
    }

    /// Runs `work` holding the stack's lock, from before its first change to its verdict; on
    /// Ctrl-C, says what is left where the work was.
    async fn locked(
        &self,
        service: &Service,
        work: impl AsyncFnOnce(&Lock, &RefCell<Phase>, Instant, Instant) -> anyhow::Result<Judged>,
    ) -> anyhow::Result<Judged> {
        let d = self.deployer;
        let stack = d.stack_name(&service.name);
        let started = Instant::now();
        let deadline = started + d.options.timeout;
        let phase = RefCell::new(Phase::Preparing);
        let flags = self.flags();
        self.lease.renew().await?;
        d.locked(
            &stack,
            deadline,
            async |lock| work(lock, &phase, deadline, started).await,
            async || {
                let phase = phase.borrow().clone();
                d.interrupted(&stack, &service.name, phase, &flags).await
            },
        )
        .await
    }

    /// Brings the stack to `release` and, when it changed or runs a release not known to be good,
    /// records it as unchecked and probes it; a pass is recorded (and put in the report). The
    /// report, what failed (`None` when it passed or nothing needed checking), and the history
    /// entry that is this release. With a damaged history nothing is recorded, and
    /// what runs is probed whatever it is.
    #[allow(clippy::too_many_arguments)]
    async fn change_and_check(
        &self,
        lock: &Lock,
        service: &Service,
        release: &Release,
        history: History,
        phase: &RefCell<Phase>,
        deadline: Instant,
        started: Instant,
    ) -> anyhow::Result<(StackReport, Option<String>, Entry)> {
        let d = self.deployer;
        let stack = d.stack_name(&service.name);
        let (applied, shift) = match d.apply(lock, &service.name, release, phase, deadline).await {
            Ok(applied) => applied,
            Err(error) => {
                return Err(self
                    .turned_away(lock, &stack, release, history, error)
                    .await);
            }
        };
        let report = d
            .report(&service.name, release, &applied, shift, started)
            .await?;
        let entry = d.entry(release, &applied.digest, Outcome::Unchecked);
        match (applied.outcome, history) {
            (Changed::Review, _) => return Ok((report, None, entry)),
            (_, History::Damaged) => d.progress.note(&format!(
                "warning: the history of {stack} is damaged, so this release is not recorded; \
                 `cargo xtask reset-history {} {}{}` starts a new one from what runs",
                service.name,
                d.environment,
                self.flags()
            )),
            (Changed::Created | Changed::Updated, History::Kept) => {
                lock.confirm().await?;
                history::append(&d.s3, &d.bucket, &stack, entry.clone()).await?;
            }
            (Changed::Unchanged, History::Kept) => {
                let history = d.history(&stack).await?;
                let known = history.iter().rev().find(|e| e.same_release(&entry));
                match known.map(|e| &e.outcome) {
                    Some(outcome) if outcome.is_good() => {
                        d.progress.note(&format!(
                            "{stack} runs this release, which passed its checks: nothing to deploy"
                        ));
                        return Ok((report, None, entry));
                    }
                    Some(outcome) => d.progress.note(&format!(
                        "{stack} runs this release, but it is recorded as {}: checking it again",
                        outcome.describe()
                    )),
                    None => {
                        d.progress.note(&format!(
                            "{stack} runs this release, which its history does not record: \
                             recording it (as recovered) and checking it"
                        ));
                        let mut recovered = entry.clone();
                        recovered.kind = Kind::Recovered;
                        lock.confirm().await?;
                        history::append(&d.s3, &d.bucket, &stack, recovered).await?;
                    }
                }
            }
        }
        d.check_running(&service.name, release, &report).await?;
        *phase.borrow_mut() = Phase::Checking {
            release: release
                .artifact_keys
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        };
        crate::wait::pause_point("probe").await;
        let probed = self.prober.probe(service, &release.probes, &report).await?;
        *phase.borrow_mut() = Phase::Preparing;
        let mut report = report;
        let failed = match probed {
            Ok(()) => {
                if history == History::Kept {
                    self.record_outcome(lock, &stack, &entry, Outcome::Live)
                        .await?;
                }
                report.probes = Some(Probes::Passed);
                None
            }
            Err(failed) => Some(failed.to_string()),
        };
        Ok((report, failed, entry))
    }

    /// A release CodeDeploy turned away (its stack rolled back, the release before it running
    /// again) is remembered as rolled back by the gate or an alarm, so that no rollback restores
    /// it and a rerun is checked again; any other error is passed on as it is.
    async fn turned_away(
        &self,
        lock: &Lock,
        stack: &str,
        release: &Release,
        history: History,
        error: anyhow::Error,
    ) -> anyhow::Error {
        let d = self.deployer;
        let Some(turned) = error.downcast_ref::<TurnedAway>() else {
            return error;
        };
        let (cause, reason) = turned
            .shift
            .turned_away()
            .expect("only those are turned away");
        let recorded = match history {
            History::Kept => {
                let outcome = Outcome::RolledBack {
                    cause,
                    reason: reason.to_owned(),
                };
                let entry = d.entry(release, &turned.digest, outcome);
                async {
                    lock.confirm().await?;
                    history::append(&d.s3, &d.bucket, stack, entry).await
                }
                .await
            }
            History::Damaged => Ok(()),
        };
        let remembered = match recorded {
            Ok(()) => format!(
                "it is recorded as rolled back ({}), so no rollback goes to it",
                cause.as_str()
            ),
            Err(error) => format!("recording it as rolled back failed: {error:#}"),
        };
        let traffic = match cause {
            Cause::Gate => "It never got any traffic",
            _ => "Its share of the traffic went back to the version before",
        };
        anyhow::anyhow!(
            "{stack}: CodeDeploy {}. {traffic}, CloudFormation rolled the stack back, and the \
             release before it runs again; {remembered}.\n{}",
            turned.shift.sentence(),
            turned.stack
        )
    }

    /// Records `outcome` for the release `entry` is, once the lock is confirmed still ours.
    async fn record_outcome(
        &self,
        lock: &Lock,
        stack: &str,
        entry: &Entry,
        outcome: Outcome,
    ) -> anyhow::Result<()> {
        let d = self.deployer;
        lock.confirm().await?;
        history::set_outcome(&d.s3, &d.bucket, stack, entry, outcome).await
    }

    /// The flags that aim a command where this rollout is aimed.
    fn flags(&self) -> String {
        self.deployer.flags().to_owned()
    }
}

/// Whether the stack's history can be read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum History {
    Kept,
    /// It does not parse: a rollback to a key goes ahead from what the stack runs, unrecorded.
    Damaged,
}
