//! The change-set engine: brings one stack to a template and parameters. Decide from the stack's
//! status, plan the parameters, skip when nothing would change, create the change set and wait
//! for it, show it, execute it (or leave it for review) and follow the events to the end. Service
//! deploys, rollbacks and `bootstrap` all go through here.
//!
//! CloudFormation's own waiters poll change sets and stacks at 30 s to 120 s, fixed by the service
//! model: a deploy that takes a second would wait half a minute. So change sets are polled here with
//! a short backoff, and stack operations followed through their events.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{ChangeSetStatus, ChangeSetType, Parameter, StackStatus};
use serde::Serialize;

use super::decide::{self, Next, Value};
pub use super::explain::{busy, change_table, failed, not_deleted};
use super::template::Template;
use super::watch::{Watch, settle};
use crate::aws::cloudformation::{self, Current, is_empty_change};
use crate::progress::Progress;
use crate::release::lock::Lock;
use crate::wait::{self, Backoff, pause_point};

/// How a stack's change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// `--no-execute`: the change set waits for review.
    Review,
}

/// Where the change of one stack is, so that an interrupt can say what it leaves behind.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Nothing that changes anything has been sent.
    Preparing,
    /// `CreateChangeSet` for change set `name` may have been sent.
    Creating { name: String },
    /// The change set exists and was not executed.
    Reviewing { change_set: String },
    /// `ExecuteChangeSet` may have been sent.
    Executing { change_set: String },
    /// `DeleteStack` may have been sent: a stack deleted to be created again (`--recreate`, or
    /// one left in REVIEW_IN_PROGRESS).
    Deleting,
    /// The stack runs the release, recorded as unchecked; its probes are being sent.
    Checking { release: String },
}

/// What one change of a stack did: how it ended, the change set it executed (or left for review),
/// and the release's digest (its templates and every parameter's final value), which is the
/// release's identity in the history whether or not the template declares `ReleaseDigest`.
#[derive(Debug, Clone)]
pub struct Applied {
    pub outcome: Outcome,
    pub change_set: Option<String>,
    pub digest: String,
}

/// An executed change set that CloudFormation failed (and rolled back): why, and the digest of
/// the release it was, for its history to remember.
#[derive(Debug)]
pub struct ExecutionFailed {
    pub digest: String,
    pub message: String,
}

impl std::fmt::Display for ExecutionFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExecutionFailed {}

/// Where CloudFormation reads the template from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The published copy in the artifact bucket, which nested stacks need.
    Url(String),
    /// The text itself: for the stack that creates the artifact bucket.
    Body,
}

/// One stack's change: the template (with the nested templates its change set covers), where
/// CloudFormation reads it, and the parameter values the caller sets.
#[derive(Debug)]
pub struct Change<'a> {
    pub stack: &'a str,
    pub template: &'a Template,
    pub nested: &'a [Template],
    pub source: Source,
    pub set: BTreeMap<String, String>,
    /// Recorded on the change set, for whoever looks at it in the console.
    pub description: &'a str,
    /// The stack's lock, confirmed still held just before the change set is executed.
    pub fence: Option<&'a Lock>,
    /// The role CloudFormation runs the change set as (`RoleARN`), instead of the caller's own.
    pub role_arn: Option<&'a str>,
    /// The tags of a stack this change creates (who made it, when it expires); an update keeps
    /// the tags the stack has.
    pub tags: &'a [(String, String)],
}

/// Runs changes against one region.
#[derive(Debug, Clone, Copy)]
pub struct Engine<'a> {
    pub cloudformation: &'a Client,
    pub region: &'a str,
    pub progress: Progress,
    /// Leave the change set for review instead of executing it.
    pub no_execute: bool,
    /// Refuse, instead of waiting, when someone else is changing the stack.
    pub no_wait: bool,
    /// Delete and create again a stack whose first deploy failed.
    pub recreate: bool,
}

impl Engine<'_> {
    /// Fails early on a stack in a state the change would be refused in.
    pub async fn precheck(&self, stack: &str) -> anyhow::Result<()> {
        let current = cloudformation::describe(self.cloudformation, stack).await?;
        let status = current.as_ref().map(|c| &c.status);
        match decide::next(status, stack, self.region, self.recreate) {
            Next::Refuse(message) => bail!(message),
            Next::Wait if self.no_wait => {
                bail!(busy(stack, status.map_or("?", |s| s.as_str()), self.region))
            }
            _ => Ok(()),
        }
    }

    /// Brings the stack to the change: decide, plan, change set, execute, follow. `phase` says, as
    /// it goes, what an interrupt would leave behind.
    pub async fn apply(
        &self,
        change: &Change<'_>,
        deadline: Instant,
        phase: &RefCell<Phase>,
    ) -> anyhow::Result<Applied> {
        let (cloudformation, stack) = (self.cloudformation, change.stack);
        let current = loop {
            let current = cloudformation::describe(cloudformation, stack).await?;
            let status = current.as_ref().map(|c| &c.status);
            match decide::next(status, stack, self.region, self.recreate) {
                Next::Create => break None,
                Next::Update => break current,
                Next::Refuse(message) => bail!(message),
                Next::Wait if self.no_wait => {
                    bail!(busy(stack, status.map_or("?", |s| s.as_str()), self.region))
                }
                Next::Wait => {
                    let step = self.progress.step(&format!(
                        "waiting: stack {stack} is {}, changed by someone else",
                        status.map_or("?", |s| s.as_str())
                    ));
                    let settled = settle(cloudformation, stack, &step, deadline).await?;
                    step.done(&format!(
                        "stack {stack} is {}",
                        settled.as_deref().unwrap_or("gone")
                    ));
                }
                Next::Recreate | Next::Discard => {
                    let current = current.expect("a stack with a status exists");
                    *phase.borrow_mut() = Phase::Deleting;
                    self.delete(stack, &current, change.role_arn, deadline)
                        .await?;
                    *phase.borrow_mut() = Phase::Preparing;
                }
            }
        };

        let mut set = change.set.clone();
        let digest = decide::release_digest(
            change.template,
            change.nested,
            &set,
            current.as_ref().map(|c| &c.parameters),
        );
        if change
            .template
            .parameters()
            .contains_key(decide::RELEASE_DIGEST)
        {
            set.insert(decide::RELEASE_DIGEST.to_owned(), digest.clone());
        }
        let applied = |outcome, change_set| Applied {
            outcome,
            change_set,
            digest: digest.clone(),
        };
        let values = decide::parameters(
            change.template,
            &set,
            current.as_ref().map(|c| &c.parameters),
            &format!("{stack} template"),
        )?;
        if let Some(current) = &current {
            let deployed = cloudformation::template_body(cloudformation, &current.id).await?;
            if decide::unchanged(change.template, &values, &deployed, &current.parameters) {
                self.progress.note(&format!(
                    "stack {stack} already runs this template with these parameters"
                ));
                return Ok(applied(Outcome::Unchanged, None));
            }
        }

        let kind = if current.is_some() {
            ChangeSetType::Update
        } else {
            ChangeSetType::Create
        };
        let created = self
            .change_set(change, kind.clone(), &values, phase)
            .await?;
        let Some((change_set, stack_id)) = created else {
            return Ok(applied(Outcome::Unchanged, None));
        };
        if self.no_execute {
            self.progress.note(&format!(
                "change set left for review; execute it with `aws cloudformation execute-change-set \
                 --change-set-name {change_set} --region {region}`, or delete it with \
                 `aws cloudformation delete-change-set --change-set-name {change_set} --region {region}`",
                region = self.region
            ));
            return Ok(applied(Outcome::Review, Some(change_set)));
        }

        let mut watch = Watch::start(cloudformation, &stack_id, stack).await?;
        *phase.borrow_mut() = Phase::Executing {
            change_set: change_set.clone(),
        };
        pause_point("execute").await;
        if let Some(lock) = change.fence
            && let Err(lost) = lock.confirm().await
        {
            let deleted = cloudformation::delete_change_set(cloudformation, &change_set).await;
            let name = cloudformation::change_set_name(&change_set);
            bail!(
                "{lost:#}. Nothing was executed, and stack {stack} is as it was; {}",
                match deleted {
                    Ok(()) => format!(
                        "change set {name} was deleted. Deploy again once whoever holds the lock \
                         is done"
                    ),
                    Err(_) => format!(
                        "deleting change set {name} could not be sent either, so it may remain: \
                         {name}. Deploy again once the lock and CloudFormation answer"
                    ),
                }
            );
        }
        let step = self.progress.step(&format!("deploying {stack}"));
        if let Err(error) = cloudformation
            .execute_change_set()
            .change_set_name(&change_set)
            .send()
            .await
        {
            let reason = error
                .as_service_error()
                .and_then(ProvideErrorMetadata::message)
                .map_or_else(
                    || {
                        format!(
                            "{}",
                            aws_sdk_cloudformation::error::DisplayErrorContext(&error)
                        )
                    },
                    str::to_owned,
                );
            let status = cloudformation::describe(cloudformation, stack)
                .await
                .ok()
                .flatten()
                .map_or_else(|| "missing".to_owned(), |c| c.status.as_str().to_owned());
            // An unexecuted change set left AVAILABLE would only confuse the next person.
            let deleted = cloudformation::delete_change_set(cloudformation, &change_set).await;
            let left = match deleted {
                Ok(()) => "the change set was deleted".to_owned(),
                Err(_) => format!("its deletion could not be sent, so it may remain: {change_set}"),
            };
            let runs = if kind == ChangeSetType::Create {
                "the stack was never created, so nothing of it runs (the next deploy discards \
                 what is left of it)"
            } else {
                "the stack runs what it ran before"
            };
            bail!(
                "CloudFormation did not execute change set {change_set}: {reason}\n\
                 stack {stack} is {status}; nothing was executed, so {runs} ({left})"
            );
        }
        pause_point("executed").await;
        let ended = watch.follow(&step, deadline).await?;
        if decide::succeeded(&ended.status.as_str().into()) {
            step.done(&format!("stack {stack} is {}", ended.status));
            let outcome = if kind == ChangeSetType::Create {
                Outcome::Created
            } else {
                Outcome::Updated
            };
            return Ok(applied(outcome, Some(change_set)));
        }
        Err(ExecutionFailed {
            digest: digest.clone(),
            message: failed(stack, self.region, &ended.status, &ended.failures),
        }
        .into())
    }

    /// Creates a change set and waits for it; `None` when it holds no changes (it is then
    /// deleted). Returns its id and its stack's id.
    async fn change_set(
        &self,
        change: &Change<'_>,
        kind: ChangeSetType,
        values: &BTreeMap<String, Value>,
        phase: &RefCell<Phase>,
    ) -> anyhow::Result<Option<(String, String)>> {
        let (cloudformation, stack) = (self.cloudformation, change.stack);
        let parameters = values
            .iter()
            .map(|(key, value)| match value {
                Value::Set(value) => Parameter::builder()
                    .parameter_key(key)
                    .parameter_value(value)
                    .build(),
                Value::Previous => Parameter::builder()
                    .parameter_key(key)
                    .use_previous_value(true)
                    .build(),
            })
            .collect();
        let name = format!(
            "xtask-deploy-{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            std::process::id()
        );
        let step = self
            .progress
            .step(&format!("creating change set {name} for {stack}"));
        let creating = kind == ChangeSetType::Create;
        let mut request = cloudformation
            .create_change_set()
            .stack_name(stack)
            .change_set_name(&name)
            .change_set_type(kind)
            .set_parameters(Some(parameters))
            .set_capabilities(Some(change.template.capabilities(change.nested)))
            .set_role_arn(change.role_arn.map(str::to_owned))
            .description(change.description);
        if creating {
            for (key, value) in change.tags {
                request = request.tags(
                    aws_sdk_cloudformation::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build(),
                );
            }
        }
        request = match &change.source {
            Source::Url(url) => request.template_url(url),
            Source::Body => request.template_body(&change.template.body),
        };
        *phase.borrow_mut() = Phase::Creating { name: name.clone() };
        pause_point("create-change-set").await;
        let created = match request.send().await {
            Ok(created) => created,
            Err(error) if is_empty_change(error.message()) => {
                step.done(&format!("no changes to {stack}"));
                return Ok(None);
            }
            Err(error) => {
                return Err(anyhow::Error::new(error))
                    .with_context(|| format!("creating a change set for stack {stack}"));
            }
        };
        let id = created.id().unwrap_or(&name).to_owned();
        let stack_id = created.stack_id().unwrap_or(stack).to_owned();
        pause_point("change-set-sent").await;
        *phase.borrow_mut() = Phase::Reviewing {
            change_set: id.clone(),
        };

        let ready = wait::poll(
            Instant::now() + Duration::from_secs(600),
            Backoff::new(Duration::from_millis(500), Duration::from_secs(5)),
            async || {
                let described = cloudformation
                    .describe_change_set()
                    .change_set_name(&id)
                    .send()
                    .await
                    .with_context(|| format!("reading change set {name}"))?;
                Ok(match described.status() {
                    Some(ChangeSetStatus::CreateComplete) => Some(None),
                    Some(ChangeSetStatus::Failed) => Some(Some(
                        described
                            .status_reason()
                            .unwrap_or("no reason given")
                            .to_owned(),
                    )),
                    _ => None,
                })
            },
            || {
                anyhow::anyhow!(
                    "change set {name} for stack {stack} was not ready within 10 minutes"
                )
            },
        )
        .await?;
        if let Some(reason) = ready {
            if is_empty_change(Some(&reason)) {
                cloudformation::delete_change_set(cloudformation, &id).await?;
                step.done(&format!("no changes to {stack}"));
                return Ok(None);
            }
            let _ = cloudformation::delete_change_set(cloudformation, &id).await;
            bail!(
                "CloudFormation could not create change set {name} for stack {stack}: {reason} \
                 (the failed change set was deleted)"
            );
        }
        step.done(&format!("change set {name} is ready"));
        let changes = cloudformation::changes(cloudformation, &id).await?;
        self.progress.text(&change_table(stack, &changes));
        Ok(Some((id, stack_id)))
    }

    /// Deletes `stack` for good (as `role_arn`, when given), after any operation in progress ends;
    /// `false` when there was no stack. A deletion that fails names each resource that could not
    /// be deleted, with its reason.
    pub async fn destroy(
        &self,
        stack: &str,
        role_arn: Option<&str>,
        deadline: Instant,
    ) -> anyhow::Result<bool> {
        let cloudformation = self.cloudformation;
        let current = loop {
            let Some(current) = cloudformation::describe(cloudformation, stack).await? else {
                return Ok(false);
            };
            let status = &current.status;
            if decide::is_terminal(status) || *status == StackStatus::ReviewInProgress {
                break current;
            }
            if self.no_wait {
                bail!(busy(stack, status.as_str(), self.region));
            }
            let step = self.progress.step(&format!(
                "waiting: stack {stack} is {}, changed by someone else",
                status.as_str()
            ));
            let settled = settle(cloudformation, stack, &step, deadline).await?;
            step.done(&format!(
                "stack {stack} is {}",
                settled.as_deref().unwrap_or("gone")
            ));
        };
        self.delete(stack, &current, role_arn, deadline)
            .await
            .map_err(|error| error.context(not_deleted(stack, self.region)))?;
        Ok(true)
    }

    async fn delete(
        &self,
        stack: &str,
        current: &Current,
        role_arn: Option<&str>,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        if matches!(
            current.status,
            StackStatus::RollbackComplete | StackStatus::ReviewInProgress
        ) {
            self.progress.note(&format!(
                "deleting stack {stack} ({}, so it has no resources to lose) to create it again",
                current.status.as_str()
            ));
        }
        let mut watch = Watch::start(self.cloudformation, &current.id, stack).await?;
        let step = self.progress.step(&format!("deleting {stack}"));
        pause_point("delete").await;
        self.cloudformation
            .delete_stack()
            .stack_name(&current.id)
            .set_role_arn(role_arn.map(str::to_owned))
            .send()
            .await
            .with_context(|| format!("deleting stack {stack}"))?;
        let ended = watch.follow(&step, deadline).await?;
        if ended.status != "DELETE_COMPLETE" {
            bail!(failed(stack, self.region, &ended.status, &ended.failures));
        }
        step.done(&format!("deleted {stack}"));
        Ok(())
    }
}
