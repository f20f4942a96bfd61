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
                .map_or_else(|| "unknown".to_owned(), |c| c.status)
        };
        let change_set = match &phase {
            Phase::Preparing => {
                return anyhow::anyhow!(
                    "interrupted before anything was sent to stack {stack}; it is as it was"
                );
            }
            Phase::Deleting => {
                let status = status_of().await;
                return anyhow::anyhow!(
                    "interrupted while stack {stack} was being deleted to be created again: it is \
                     {status}, and a deletion that was sent goes on in AWS. Deploy again, which \
                     waits for it and creates the stack"
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
        // Its name, as people saw it when it was created; its id (an ARN) is what is looked up.
        let change_set = id
            .split_once(":changeSet/")
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or(&id)
            .to_owned();
        let execution = match state {
            Ok(None) => {
                return anyhow::anyhow!(
                    "interrupted before change set {change_set} was created; stack {stack} is as \
                     it was"
                );
            }
            Ok(Some((_, execution))) => execution,
            Err(error) => {
                return anyhow::anyhow!(
                    "interrupted, and what change set {change_set} of stack {stack} became cannot \
                     be read ({error:#}); see it with `aws cloudformation describe-change-set \
                     --stack-name {stack} --change-set-name {change_set} --region {region}`"
                );
            }
        };
        if execution == "OBSOLETE" {
            return anyhow::anyhow!(
                "interrupted before change set {change_set} was executed; it is OBSOLETE (another \
                 change reached stack {stack} after it was made), so it can no longer be executed, \
                 and stack {stack} is {}",
                status_of().await
            );
        }
        let executed = matches!(
            execution.as_str(),
            "EXECUTE_IN_PROGRESS" | "EXECUTE_COMPLETE" | "EXECUTE_FAILED"
        );
        if !executed {
            let deleted =
                cloudformation::delete_change_set_of(cloudformation, Some(stack), &id).await;
            let status = status_of().await;
            let empty = match status.as_str() {
                "REVIEW_IN_PROGRESS" => {
                    " (CloudFormation keeps the empty stack it made for it, in \
                     REVIEW_IN_PROGRESS, until the next deploy replaces it)"
                }
                _ => "",
            };
            return match deleted {
                Ok(()) => anyhow::anyhow!(
                    "interrupted before change set {change_set} was executed; it was deleted, and \
                     stack {stack} is as it was{empty}"
                ),
                Err(error) => anyhow::anyhow!(
                    "interrupted before change set {change_set} was executed; stack {stack} is as \
                     it was, but deleting the change set could not be sent ({error:#}), so it may \
                     remain: {change_set}. Delete it with `aws cloudformation delete-change-set \
                     --stack-name {stack} --change-set-name {change_set} --region {region}`"
                ),
            };
        }
        let status = status_of().await;
        if !is_terminal(&status) {
            return anyhow::anyhow!(
                "interrupted after change set {change_set} was executed: the update of stack \
                 {stack} goes on in AWS ({status}); follow it with `aws cloudformation \
                 describe-stack-events --stack-name {stack} --region {region}`, or run the same \
                 deploy again, which waits for it, records what runs (as recovered) and checks it"
            );
        }
        if succeeded(&status) {
            return anyhow::anyhow!(
                "interrupted after change set {change_set} was executed: stack {stack} is \
                 {status}, so it runs the new release, which was neither recorded nor checked. \
                 The next `cargo xtask deploy {service} {environment}{flags}` records it (as \
                 recovered) and checks it"
            );
        }
        anyhow::anyhow!(
            "interrupted after change set {change_set} was executed: stack {stack} is {status}, so \
             CloudFormation did not keep the new release, and the stack runs what it ran before"
        )
    }
}
