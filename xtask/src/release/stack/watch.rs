//! Following a stack operation as it happens: the stack's events and its nested stacks' events,
//! polled with backoff, until the stack reaches a terminal state; and waiting out someone else's.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::StackEvent;
use serde::Serialize;

use crate::progress::Step;
use crate::stack::is_terminal;

const FIRST_POLL: Duration = Duration::from_secs(1);
const LONGEST_POLL: Duration = Duration::from_secs(10);
const NESTED_STACK: &str = "AWS::CloudFormation::Stack";

/// A resource that failed, and CloudFormation's reason.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub resource: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub status: String,
    pub failures: Vec<Failure>,
}

/// Follows one stack (by id, so a deleted stack can still be followed to DELETE_COMPLETE).
pub struct Watch<'a> {
    cloudformation: &'a Client,
    stack_id: String,
    stack_name: String,
    seen: HashSet<String>,
    /// Nested stacks' ids, with their logical ids in the parent.
    nested: BTreeMap<String, String>,
    started: Instant,
    /// Events older than this (by CloudFormation's clock) predate the operation.
    since: aws_sdk_cloudformation::primitives::DateTime,
    failures: Vec<Failure>,
}

impl<'a> Watch<'a> {
    /// Starts following: events that exist already are history, not shown.
    pub async fn start(
        cloudformation: &'a Client,
        stack_id: &str,
        stack_name: &str,
    ) -> anyhow::Result<Watch<'a>> {
        let mut watch = Watch {
            cloudformation,
            stack_id: stack_id.to_owned(),
            stack_name: stack_name.to_owned(),
            seen: HashSet::new(),
            nested: BTreeMap::new(),
            started: Instant::now(),
            since: aws_sdk_cloudformation::primitives::DateTime::from(
                std::time::SystemTime::now() - Duration::from_secs(5),
            ),
            failures: Vec::new(),
        };
        let history = watch.events_of(stack_id, None).await?;
        watch.seen.extend(
            history
                .iter()
                .filter_map(|e| e.event_id().map(str::to_owned)),
        );
        let nested = watch.nested_stacks().await?;
        for id in nested.keys() {
            let history = watch.events_of(id, None).await?;
            watch.seen.extend(
                history
                    .iter()
                    .filter_map(|e| e.event_id().map(str::to_owned)),
            );
        }
        watch.nested = nested;
        Ok(watch)
    }

    /// Prints events as they arrive until the stack itself reports a terminal state.
    pub async fn follow(&mut self, step: &Step, deadline: Instant) -> anyhow::Result<Ended> {
        let mut interval = FIRST_POLL;
        loop {
            let mut fresh = self.new_events(&self.stack_id.clone(), None).await?;
            self.nested.extend(self.nested_stacks().await?);
            for (id, logical) in self.nested.clone() {
                match self.new_events(&id, Some(&logical)).await {
                    Ok(events) => fresh.extend(events),
                    // Replaced by the update (the emulator replaces nested stacks) and gone.
                    Err(error) if format!("{error:#}").contains("does not exist") => {
                        self.nested.remove(&id);
                    }
                    Err(error) => return Err(error),
                }
            }
            fresh.sort_by_key(|(_, event)| event.timestamp().map(|t| (t.secs(), t.subsec_nanos())));
            let mut ended = None;
            for (prefix, event) in &fresh {
                step.line(&self.line(prefix.as_deref(), event));
                let status = event.resource_status().map_or("", |s| s.as_str());
                self.record_failure(prefix.as_deref(), event, status);
                let is_the_stack = prefix.is_none()
                    && event.resource_type() == Some(NESTED_STACK)
                    && event.logical_resource_id() == Some(self.stack_name.as_str());
                if is_the_stack && is_terminal(status) {
                    ended = Some(status.to_owned());
                }
            }
            if let Some(status) = ended {
                return Ok(Ended {
                    status,
                    failures: self.failures.clone(),
                });
            }
            if Instant::now() > deadline {
                bail!(
                    "stack {} is still changing after the --timeout; CloudFormation carries on without us",
                    self.stack_name
                );
            }
            step.set_message(&format!("deploying {}", self.stack_name));
            interval = if fresh.is_empty() {
                (interval * 3 / 2).min(LONGEST_POLL)
            } else {
                FIRST_POLL
            };
            tokio::time::sleep(interval).await;
        }
    }

    fn line(&self, prefix: Option<&str>, event: &StackEvent) -> String {
        let resource = event.logical_resource_id().unwrap_or("?");
        let resource = match prefix {
            Some(parent) => format!("{parent}/{resource}"),
            None => resource.to_owned(),
        };
        let mut line = format!(
            "{:>6.1}s  {:<44} {resource} ({})",
            self.started.elapsed().as_secs_f64(),
            event.resource_status().map_or("?", |s| s.as_str()),
            event.resource_type().unwrap_or("?"),
        );
        if let Some(reason) = event.resource_status_reason().filter(|r| !r.is_empty()) {
            line.push_str(": ");
            line.push_str(reason);
        }
        line
    }

    fn record_failure(&mut self, prefix: Option<&str>, event: &StackEvent, status: &str) {
        if !status.ends_with("_FAILED") {
            return;
        }
        let resource = event.logical_resource_id().unwrap_or("?");
        self.failures.push(Failure {
            resource: match prefix {
                Some(parent) => format!("{parent}/{resource}"),
                None => resource.to_owned(),
            },
            kind: event.resource_type().unwrap_or("?").to_owned(),
            status: status.to_owned(),
            reason: event
                .resource_status_reason()
                .unwrap_or("no reason given")
                .to_owned(),
        });
    }

    /// Events of `stack_id` not seen before, oldest first, each with the nested stack's logical
    /// id (or `None` for the stack itself).
    async fn new_events(
        &mut self,
        stack_id: &str,
        prefix: Option<&str>,
    ) -> anyhow::Result<Vec<(Option<String>, StackEvent)>> {
        let since = prefix.is_some().then_some(self.since);
        let events = self.events_of(stack_id, since).await?;
        let mut fresh = Vec::new();
        for event in events {
            let Some(id) = event.event_id() else { continue };
            if self.seen.insert(id.to_owned()) {
                fresh.push((prefix.map(str::to_owned), event));
            }
        }
        fresh.reverse();
        Ok(fresh)
    }

    /// Newest first, stopping at the first page that reaches what was seen (or predates `since`).
    async fn events_of(
        &self,
        stack_id: &str,
        since: Option<aws_sdk_cloudformation::primitives::DateTime>,
    ) -> anyhow::Result<Vec<StackEvent>> {
        let mut events = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .cloudformation
                .describe_stack_events()
                .stack_name(stack_id)
                .set_next_token(token)
                .send()
                .await
                .with_context(|| format!("reading the events of {stack_id}"))?;
            let mut reached_history = false;
            for event in page.stack_events() {
                let old = since.is_some_and(|since| {
                    event.timestamp().is_some_and(|t| t.secs() < since.secs())
                });
                let seen = event.event_id().is_some_and(|id| self.seen.contains(id));
                if old || seen {
                    reached_history = true;
                    break;
                }
                events.push(event.clone());
            }
            token = page.next_token().map(str::to_owned);
            if reached_history || token.is_none() || self.seen.is_empty() && since.is_none() {
                // With nothing seen yet (the first look), the newest page is history enough.
                return Ok(events);
            }
        }
    }

    async fn nested_stacks(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let resources = self
            .cloudformation
            .list_stack_resources()
            .stack_name(&self.stack_id)
            .send()
            .await
            .with_context(|| format!("listing the resources of {}", self.stack_name))?;
        Ok(resources
            .stack_resource_summaries()
            .iter()
            .filter(|r| r.resource_type() == Some(NESTED_STACK))
            .filter_map(|r| {
                Some((
                    r.physical_resource_id()?.to_owned(),
                    r.logical_resource_id()?.to_owned(),
                ))
            })
            .filter(|(id, _)| *id != self.stack_id)
            .collect())
    }
}

/// Waits while something else changes the stack, until it settles; returns its new status (or
/// `None` once it is gone).
pub async fn settle(
    cloudformation: &Client,
    stack: &str,
    step: &Step,
    deadline: Instant,
) -> anyhow::Result<Option<String>> {
    let mut interval = Duration::from_secs(2);
    loop {
        let status = crate::deploy::describe(cloudformation, stack)
            .await?
            .map(|current| current.status);
        match &status {
            Some(status) if !is_terminal(status) => step.set_message(&format!(
                "waiting: stack {stack} is {status}, changed by someone else"
            )),
            _ => return Ok(status),
        }
        if Instant::now() > deadline {
            bail!(
                "stack {stack} is still {} after waiting for as long as --timeout allows; try again later",
                status.unwrap_or_default()
            );
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 3 / 2).min(LONGEST_POLL);
    }
}
