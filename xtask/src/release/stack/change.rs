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
use aws_sdk_cloudformation::types::{ChangeSetStatus, ChangeSetType, Parameter};
use serde::Serialize;

use super::decide::{self, Next, Value};
use super::template::Template;
use super::watch::{Failure, Watch, settle};
use crate::aws::cloudformation::{self, Current, is_empty_change};
use crate::progress::{Progress, table};
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
}

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
        let status = current.as_ref().map(|c| c.status.as_str());
        match decide::next(status, stack, self.region, self.recreate) {
            Next::Refuse(message) => bail!(message),
            Next::Wait if self.no_wait => bail!(busy(stack, status.unwrap_or("?"), self.region)),
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
    ) -> anyhow::Result<(Outcome, Option<String>)> {
        let (cloudformation, stack) = (self.cloudformation, change.stack);
        let current = loop {
            let current = cloudformation::describe(cloudformation, stack).await?;
            let status = current.as_ref().map(|c| c.status.as_str());
            match decide::next(status, stack, self.region, self.recreate) {
                Next::Create => break None,
                Next::Update => break current,
                Next::Refuse(message) => bail!(message),
                Next::Wait if self.no_wait => {
                    bail!(busy(stack, status.unwrap_or("?"), self.region))
                }
                Next::Wait => {
                    let step = self.progress.step(&format!(
                        "waiting: stack {stack} is {}, changed by someone else",
                        status.unwrap_or("?")
                    ));
                    let settled = settle(cloudformation, stack, &step, deadline).await?;
                    step.done(&format!(
                        "stack {stack} is {}",
                        settled.as_deref().unwrap_or("gone")
                    ));
                }
                Next::Recreate | Next::Discard => {
                    let current = current.expect("a stack with a status exists");
                    self.delete(stack, &current, deadline).await?;
                }
            }
        };

        let mut set = change.set.clone();
        if change
            .template
            .parameters()
            .contains_key(decide::RELEASE_DIGEST)
        {
            let digest = decide::release_digest(
                change.template,
                change.nested,
                &set,
                current.as_ref().map(|c| &c.parameters),
            );
            set.insert(decide::RELEASE_DIGEST.to_owned(), digest);
        }
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
                    "stack {stack} already runs this template with these parameters: nothing to deploy"
                ));
                return Ok((Outcome::Unchanged, None));
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
            return Ok((Outcome::Unchanged, None));
        };
        if self.no_execute {
            self.progress.note(&format!(
                "change set left for review; execute it with `aws cloudformation execute-change-set \
                 --change-set-name {change_set} --region {region}`, or delete it with \
                 `aws cloudformation delete-change-set --change-set-name {change_set} --region {region}`",
                region = self.region
            ));
            return Ok((Outcome::Review, Some(change_set)));
        }

        let mut watch = Watch::start(cloudformation, &stack_id, stack).await?;
        *phase.borrow_mut() = Phase::Executing {
            change_set: change_set.clone(),
        };
        pause_point("execute").await;
        if let Some(lock) = change.fence
            && let Err(lost) = lock.confirm().await
        {
            let _ = cloudformation::delete_change_set(cloudformation, &change_set).await;
            bail!(
                "{lost:#}. Nothing was executed: change set {change_set} was deleted, and stack \
                 {stack} is as it was; deploy again once that deploy is done"
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
                .map_or_else(|| format!("{error}"), str::to_owned);
            let status = cloudformation::describe(cloudformation, stack)
                .await
                .ok()
                .flatten()
                .map_or_else(|| "missing".to_owned(), |c| c.status);
            // An unexecuted change set left AVAILABLE would only confuse the next person.
            let _ = cloudformation::delete_change_set(cloudformation, &change_set).await;
            bail!(
                "CloudFormation did not execute change set {change_set}: {reason}\n\
                 stack {stack} is {status}; nothing was deployed, so the previous version keeps \
                 serving (the change set was deleted)"
            );
        }
        pause_point("executed").await;
        let ended = watch.follow(&step, deadline).await?;
        if decide::succeeded(&ended.status) {
            step.done(&format!("stack {stack} is {}", ended.status));
            let outcome = if kind == ChangeSetType::Create {
                Outcome::Created
            } else {
                Outcome::Updated
            };
            return Ok((outcome, Some(change_set)));
        }
        bail!(failed(stack, self.region, &ended.status, &ended.failures))
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
        let mut request = cloudformation
            .create_change_set()
            .stack_name(stack)
            .change_set_name(&name)
            .change_set_type(kind)
            .set_parameters(Some(parameters))
            .set_capabilities(Some(change.template.capabilities(change.nested)))
            .set_role_arn(change.role_arn.map(str::to_owned))
            .description(change.description);
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

    /// Deletes `stack` for good, after any operation in progress ends; `false` when there was no
    /// stack. A deletion that fails names each resource that could not be deleted, with its reason.
    pub async fn destroy(&self, stack: &str, deadline: Instant) -> anyhow::Result<bool> {
        let cloudformation = self.cloudformation;
        let current = loop {
            let Some(current) = cloudformation::describe(cloudformation, stack).await? else {
                return Ok(false);
            };
            if !current.status.ends_with("_IN_PROGRESS") || current.status == "REVIEW_IN_PROGRESS" {
                break current;
            }
            if self.no_wait {
                bail!(busy(stack, &current.status, self.region));
            }
            let step = self.progress.step(&format!(
                "waiting: stack {stack} is {}, changed by someone else",
                current.status
            ));
            let settled = settle(cloudformation, stack, &step, deadline).await?;
            step.done(&format!(
                "stack {stack} is {}",
                settled.as_deref().unwrap_or("gone")
            ));
        };
        self.delete(stack, &current, deadline)
            .await
            .map_err(|error| error.context(not_deleted(stack, self.region)))?;
        Ok(true)
    }

    async fn delete(
        &self,
        stack: &str,
        current: &Current,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        if current.status == "ROLLBACK_COMPLETE" || current.status == "REVIEW_IN_PROGRESS" {
            self.progress.note(&format!(
                "deleting stack {stack} ({}, so it has no resources to lose) to create it again",
                current.status
            ));
        }
        let mut watch = Watch::start(self.cloudformation, &current.id, stack).await?;
        let step = self.progress.step(&format!("deleting {stack}"));
        self.cloudformation
            .delete_stack()
            .stack_name(&current.id)
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

/// What to do about a stack whose deletion failed (`DELETE_FAILED`), after its failures.
pub fn not_deleted(stack: &str, region: &str) -> String {
    format!(
        "stack {stack} was not deleted. Fix what keeps each resource below (a bucket must be \
         empty, say), then destroy again; or keep those and delete the rest with `aws \
         cloudformation delete-stack --stack-name {stack} --region {region} --retain-resources \
         <their logical ids>`"
    )
}

/// Why a stack is refused with `--no-wait`, and what to do.
pub fn busy(stack: &str, status: &str, region: &str) -> String {
    format!(
        "stack {stack} is busy ({status}): another deploy, or someone in the console, is changing it; \
         run again without --no-wait to wait for it, or follow it with \
         `aws cloudformation describe-stack-events --stack-name {stack} --region {region}`"
    )
}

/// The change set as a table: action, logical id, type, replacement.
pub fn change_table(stack: &str, changes: &[aws_sdk_cloudformation::types::Change]) -> String {
    let rows: Vec<[String; 4]> = changes
        .iter()
        .filter_map(|change| change.resource_change())
        .map(|change| {
            [
                change.action().map_or("?", |a| a.as_str()).to_owned(),
                change.logical_resource_id().unwrap_or("?").to_owned(),
                change.resource_type().unwrap_or("?").to_owned(),
                change.replacement().map_or("-", |r| r.as_str()).to_owned(),
            ]
        })
        .collect();
    let mut text = table(
        &format!("change set for {stack}:"),
        ["ACTION", "LOGICAL ID", "TYPE", "REPLACEMENT"],
        &rows,
    );
    if rows.is_empty() {
        text.push_str("  (no resource changes listed)\n");
    }
    text
}

/// The error for a stack operation that ended badly: its final state and every failing resource.
pub fn failed(stack: &str, region: &str, status: &str, failures: &[Failure]) -> String {
    let mut message = format!("stack {stack} ended in {status}");
    message.push_str(match status {
        "UPDATE_ROLLBACK_COMPLETE" => {
            ": the update failed and was rolled back, so the previous version keeps serving"
        }
        "ROLLBACK_COMPLETE" => {
            ": its first deploy failed; fix the cause, then deploy again with --recreate"
        }
        _ => "",
    });
    if failures.is_empty() {
        message.push_str(&format!(
            "\nno resource reported a failure; see `aws cloudformation describe-stack-events \
             --stack-name {stack} --region {region}`"
        ));
    } else {
        message.push_str("\nfailed resources:");
        for failure in failures {
            message.push_str(&format!(
                "\n  {} ({}) {}: {}",
                failure.resource, failure.kind, failure.status, failure.reason
            ));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudformation::types::{ChangeAction, Replacement, ResourceChange};
    use expect_test::expect;

    use super::*;

    #[test]
    fn change_sets_print_as_aligned_tables() {
        let change = |action, id: &str, kind: &str, replacement| {
            aws_sdk_cloudformation::types::Change::builder()
                .resource_change(
                    ResourceChange::builder()
                        .action(action)
                        .logical_resource_id(id)
                        .resource_type(kind)
                        .set_replacement(replacement)
                        .build(),
                )
                .build()
        };
        let table = change_table(
            "hardware-dev",
            &[
                change(
                    ChangeAction::Modify,
                    "Function",
                    "AWS::Lambda::Function",
                    Some(Replacement::False),
                ),
                change(ChangeAction::Add, "Api", "AWS::CloudFormation::Stack", None),
            ],
        );
        expect![[r#"
            change set for hardware-dev:
              ACTION LOGICAL ID TYPE                       REPLACEMENT
              Modify Function   AWS::Lambda::Function      False
              Add    Api        AWS::CloudFormation::Stack -
        "#]]
        .assert_eq(&table);
        expect![[r#"
            change set for hardware-dev:
              ACTION LOGICAL ID TYPE REPLACEMENT
              (no resource changes listed)
        "#]]
        .assert_eq(&change_table("hardware-dev", &[]));
    }

    #[test]
    fn a_failed_deletion_names_the_way_out() {
        let error = anyhow::anyhow!(failed(
            "hardware-dev",
            "us-west-2",
            "DELETE_FAILED",
            &[Failure {
                resource: "FirmwareBucket".into(),
                kind: "AWS::S3::Bucket".into(),
                status: "DELETE_FAILED".into(),
                reason: "The bucket you tried to delete is not empty".into(),
            }],
        ))
        .context(not_deleted("hardware-dev", "us-west-2"));
        let said = format!("{error:#}");
        assert!(
            said.starts_with("stack hardware-dev was not deleted."),
            "{said}"
        );
        assert!(said.contains("--retain-resources"), "{said}");
        assert!(
            said.contains("The bucket you tried to delete is not empty"),
            "{said}"
        );
    }

    #[test]
    fn failures_name_every_resource_and_reason() {
        let message = failed(
            "hardware-dev",
            "us-west-2",
            "UPDATE_ROLLBACK_COMPLETE",
            &[Failure {
                resource: "Api/RestApi".into(),
                kind: "AWS::ApiGateway::RestApi".into(),
                status: "UPDATE_FAILED".into(),
                reason: "Invalid binary media type".into(),
            }],
        );
        assert_eq!(
            message,
            "stack hardware-dev ended in UPDATE_ROLLBACK_COMPLETE: the update failed and was rolled \
             back, so the previous version keeps serving\nfailed resources:\n  Api/RestApi \
             (AWS::ApiGateway::RestApi) UPDATE_FAILED: Invalid binary media type"
        );
    }
}
