//! The deployer's guard around every change of a stack: its lock, renewed while the work runs and
//! released however it ends, and on Ctrl-C an account of exactly what is left, read back from
//! CloudFormation rather than guessed from where the work was.

use std::rc::Rc;
use std::time::Instant;

use super::Deployer;
use crate::aws::cloudformation;
use crate::release::lock::{Contention, Lock, RENEWED_LIFETIME, Scope};
use crate::release::stack::Phase;
use crate::release::stack::decide::is_terminal;

impl Deployer<'_> {
    /// Runs `work` holding `stack`'s lock (renewed while it runs), waiting for it as the options
    /// say. Ctrl-C drops the work wherever it is, and `interrupted` says what it left; the lock is
    /// released either way, and a lock that cannot be released is said, not fatal.
    pub(super) async fn locked<T>(
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
    /// unexecuted change set is deleted; an update under way goes on in AWS.
    pub(super) async fn interrupted(&self, stack: &str, phase: Phase) -> anyhow::Error {
        let cloudformation = &self.cloudformation;
        let region = &self.region;
        let follow = format!(
            "follow it with `aws cloudformation describe-stack-events --stack-name {stack} --region \
             {region}`, or run the same deploy again, which waits for it and records the release"
        );
        let change_set = match &phase {
            Phase::Preparing => {
                return anyhow::anyhow!(
                    "interrupted before anything was sent to stack {stack}; it is as it was"
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
        let executed = match state {
            Ok(None) => {
                return anyhow::anyhow!(
                    "interrupted before change set {change_set} was created; stack {stack} is as \
                     it was"
                );
            }
            Ok(Some((_, execution))) => execution != "AVAILABLE" && execution != "UNAVAILABLE",
            Err(error) => {
                return anyhow::anyhow!(
                    "interrupted, and what change set {change_set} of stack {stack} became cannot \
                     be read ({error:#}); see it with `aws cloudformation describe-change-set \
                     --stack-name {stack} --change-set-name {change_set} --region {region}`"
                );
            }
        };
        if !executed {
            let deleted =
                cloudformation::delete_change_set_of(cloudformation, Some(stack), &id).await;
            let status = cloudformation::describe(cloudformation, stack)
                .await
                .ok()
                .flatten()
                .map(|c| c.status);
            let empty = match status.as_deref() {
                Some("REVIEW_IN_PROGRESS") => {
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
                    "interrupted before change set {change_set} was executed, and deleting it \
                     failed ({error:#}); stack {stack} is as it was. Delete it with `aws \
                     cloudformation delete-change-set --stack-name {stack} --change-set-name \
                     {change_set} --region {region}`"
                ),
            };
        }
        let status = cloudformation::describe(cloudformation, stack)
            .await
            .ok()
            .flatten()
            .map_or_else(|| "unknown".to_owned(), |c| c.status);
        if !is_terminal(&status) {
            return anyhow::anyhow!(
                "interrupted after change set {change_set} was executed: the update of stack \
                 {stack} goes on in AWS ({status}); {follow}"
            );
        }
        anyhow::anyhow!(
            "interrupted after change set {change_set} was executed: stack {stack} is {status}. \
             The release is not in the stack's history yet: the next deploy of it records what \
             runs (as recovered)"
        )
    }
}
