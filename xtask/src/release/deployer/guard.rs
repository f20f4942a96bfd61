//! The deployer's guard around every change of a stack: its lock, renewed while the work runs and
//! released however it ends, and on Ctrl-C an account of exactly what is left, read back from
//! CloudFormation rather than guessed from where the work was.

use std::rc::Rc;
use std::time::Instant;

use super::Deployer;
use crate::aws::cloudformation;
use crate::release::lock::{Contention, Lock, RENEWED_LIFETIME, Scope};
use crate::release::stack::Phase;
use crate::release::stack::decide::{is_terminal, succeeded};
use aws_sdk_cloudformation::types::ExecutionStatus;

impl Deployer<'_> {
    /// Runs `work` holding `stack`'s lock (renewed while it runs), waiting for it as the options
    /// say. Ctrl-C drops the work wherever it is, and `interrupted` says what it left; the lock is
    /// released either way, and a lock that cannot be released is said, not fatal.
    pub(in crate::release) async fn locked<T>(
        &self,
        stack: &str,
        deadline: Instant,
        work: impl AsyncFnOnce(&Lock) -> anyhow::Result<T>,
        interrupted: impl AsyncFnOnce() -> anyhow::Error,
    ) -> anyhow::Result<T> {
        let contention = if self.options.no_wait {
            Contention::Refuse
        } else {
            Contention::Wait { until: deadline }
        };
        // The lock is kept outside the work, to be released whatever becomes of it.
        let held = std::cell::RefCell::new(None::<Rc<Lock>>);
        let guarded = async {
            let lock = Rc::new(
                Lock::acquire(
                    &self.s3,
                    &self.bucket,
                    Scope::Stack(stack),
                    RENEWED_LIFETIME,
                    contention,
                    self.progress,
                )
                .await?,
            );
            *held.borrow_mut() = Some(Rc::clone(&lock));
            tokio::select! {
                result = work(&lock) => result,
                () = lock.keep(self.progress) => unreachable!("keep never returns"),
            }
        };
        let finished = tokio::select! {
            result = guarded => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        };
        let result = match finished {
            Some(result) => result,
            None => Err(interrupted().await),
        };
        let lock = held.borrow_mut().take();
        if let Some(lock) = lock
            && let Err(error) = lock.release().await
        {
            self.progress.note(&format!("warning: {error:#}"));
        }
        result
    }

    /// What Ctrl-C leaves behind, read back from CloudFormation, and what to do about it: an
    /// unexecuted change set is deleted; an update under way goes on in AWS. `service` and
    /// `flags` make the advice a command that works where this one ran.
    pub(in crate::release) async fn interrupted(
        &self,
        stack: &str,
        service: &str,
        phase: Phase,
        flags: &str,
    ) -> anyhow::Error {
        let cloudformation = &self.cloudformation;
        let region = &self.region;
        let environment = self.environment;
        let status_of = async || {
            cloudformation::describe(cloudformation, stack)
                .await
                .ok()
                .flatten()
                .map_or_else(|| "unknown".to_owned(), |c| c.status.as_str().to_owned())
        };
        let change_set = match &phase {
            Phase::Preparing => {
                return anyhow::anyhow!(
                    "interrupted before anything was sent to stack {stack}; it is as it was"
                );
            }
            Phase::Deleting => {
                let status = status_of().await;
                let left = match status.as_str() {
                    "DELETE_IN_PROGRESS" => "its deletion goes on in AWS".to_owned(),
                    "unknown" | "DELETE_COMPLETE" => "it was deleted".to_owned(),
                    status => format!("it is {status}: the deletion had not started"),
                };
                return anyhow::anyhow!(
                    "interrupted while stack {stack} was being deleted to be created again: \
                     {left}. Deploy again, which waits for it and creates the stack"
                );
            }
            Phase::Checking { release } => {
                return anyhow::anyhow!(
                    "interrupted while probing {stack}: it runs the release just deployed \
                     ({release}), recorded as unchecked; it was neither checked nor rolled back. \
                     The next `cargo xtask deploy {service} {environment}{flags}` checks it (and \
                     rolls it back if it fails); undo it now with `cargo xtask rollback {service} \
                     {environment}{flags}`"
                );
            }
            Phase::Creating { name } => name.clone(),
            Phase::Reviewing { change_set } | Phase::Executing { change_set } => change_set.clone(),
        };
        let state = cloudformation::change_set_state(cloudformation, stack, &change_set).await;
        let id = change_set;
        let change_set = cloudformation::change_set_name(&id).to_owned();
        let execution = match state {
            Ok(None) => {
                return anyhow::anyhow!(
                    "interrupted before change set {change_set} was created; stack {stack} is as \
                     it was"
                );
            }
            Ok(Some(execution)) => execution,
            Err(error) => {
                return anyhow::anyhow!(
                    "interrupted, and what change set {change_set} of stack {stack} became cannot \
                     be read ({error:#}); see it with `aws cloudformation describe-change-set \
                     --stack-name {stack} --change-set-name {change_set} --region {region}`"
                );
            }
        };
        let status = status_of().await;
        match Left::by(&execution) {
            Left::Obsolete => anyhow::anyhow!(
                "interrupted before change set {change_set} was executed; it is OBSOLETE (another \
                 change reached stack {stack} after it was made), so it can no longer be \
                 executed, and stack {stack} is {status}"
            ),
            Left::Unexecuted => {
                let deleted =
                    cloudformation::delete_change_set_of(cloudformation, Some(stack), &id).await;
                let empty = match status.as_str() {
                    "REVIEW_IN_PROGRESS" => {
                        " (CloudFormation keeps the empty stack it made for it, in \
                         REVIEW_IN_PROGRESS, until the next deploy replaces it)"
                    }
                    _ => "",
                };
                match deleted {
                    Ok(()) => anyhow::anyhow!(
                        "interrupted before change set {change_set} was executed; it was deleted, \
                         and stack {stack} is as it was{empty}"
                    ),
                    Err(error) => anyhow::anyhow!(
                        "interrupted before change set {change_set} was executed; stack {stack} is \
                         as it was, but deleting the change set could not be sent ({error:#}), so \
                         it may remain: {change_set}. Delete it with `aws cloudformation \
                         delete-change-set --stack-name {stack} --change-set-name {change_set} \
                         --region {region}`"
                    ),
                }
            }
            Left::Executed => anyhow::anyhow!(
                "{}",
                after_execution(
                    stack,
                    &change_set,
                    &status,
                    service,
                    environment,
                    flags,
                    region
                )
            ),
        }
    }
}

/// What an interrupted change set left, by its execution status as CloudFormation reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Never executed (`AVAILABLE`, `UNAVAILABLE`): it can be deleted, and the stack is as it was.
    Unexecuted,
    /// Another change reached the stack after it was made: it can never be executed.
    Obsolete,
    /// `ExecuteChangeSet` was accepted: the stack's own status says what became of it.
    Executed,
}

impl Left {
    fn by(execution: &ExecutionStatus) -> Left {
        match execution {
            ExecutionStatus::Obsolete => Left::Obsolete,
            ExecutionStatus::ExecuteInProgress
            | ExecutionStatus::ExecuteComplete
            | ExecutionStatus::ExecuteFailed => Left::Executed,
            // Available, Unavailable, and whatever a newer API adds: nothing ran it.
            _ => Left::Unexecuted,
        }
    }
}

/// What an interrupt after `ExecuteChangeSet` leaves, by the stack's status: an update going on in
/// AWS, the new release running unrecorded, or CloudFormation's rollback (the old one runs).
fn after_execution(
    stack: &str,
    change_set: &str,
    status: &str,
    service: &str,
    environment: crate::environments::Environment,
    flags: &str,
    region: &str,
) -> String {
    if !is_terminal(&status.into()) {
        return format!(
            "interrupted after change set {change_set} was executed: the update of stack {stack} \
             goes on in AWS ({status}); follow it with `aws cloudformation describe-stack-events \
             --stack-name {stack} --region {region}`, or run the same deploy again, which waits \
             for it, records what runs (as recovered) and checks it"
        );
    }
    if succeeded(&status.into()) {
        return format!(
            "interrupted after change set {change_set} was executed: stack {stack} is {status}, \
             so it runs the new release, which was neither recorded nor checked. The next `cargo \
             xtask deploy {service} {environment}{flags}` records it (as recovered) and checks it"
        );
    }
    format!(
        "interrupted after change set {change_set} was executed: stack {stack} is {status}, so \
         CloudFormation did not keep the new release, and the stack runs what it ran before"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_execution_status_says_what_is_left() {
        let cases = [
            (ExecutionStatus::Available, Left::Unexecuted),
            (ExecutionStatus::Unavailable, Left::Unexecuted),
            (ExecutionStatus::Obsolete, Left::Obsolete),
            (ExecutionStatus::ExecuteInProgress, Left::Executed),
            (ExecutionStatus::ExecuteComplete, Left::Executed),
            (ExecutionStatus::ExecuteFailed, Left::Executed),
        ];
        for (execution, left) in cases {
            assert_eq!(Left::by(&execution), left, "{execution:?}");
        }
    }

    #[test]
    fn after_execution_the_stack_status_says_which_release_runs() {
        let said = |status| {
            after_execution(
                "s-dev",
                "cs",
                status,
                "s",
                "dev".parse().unwrap(),
                " --local",
                "r",
            )
        };
        assert!(said("UPDATE_IN_PROGRESS").contains("goes on in AWS (UPDATE_IN_PROGRESS)"));
        assert!(said("UPDATE_COMPLETE").contains(
            "so it runs the new release, which was neither recorded nor checked. The next \
             `cargo xtask deploy s dev --local` records it"
        ));
        for rolled_back in ["UPDATE_ROLLBACK_COMPLETE", "ROLLBACK_COMPLETE"] {
            let said = said(rolled_back);
            assert!(
                said.contains("did not keep the new release, and the stack runs what it ran"),
                "{said}"
            );
            assert!(!said.contains("runs the new release"), "{said}");
        }
    }
}
