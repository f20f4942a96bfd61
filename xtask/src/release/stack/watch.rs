//! Following a stack operation as it happens: the stack's events and its nested stacks' events,
//! polled with backoff, until the stack reaches a terminal state; and waiting out someone else's.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::bail;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::primitives::DateTime;
use aws_sdk_cloudformation::types::StackEvent;
use serde::Serialize;

use super::decide::is_terminal;
use crate::aws::cloudformation::{self, NESTED_STACK};
use crate::progress::Step;
use crate::wait::{self, Backoff};

const FIRST_POLL: Duration = Duration::from_secs(1);
const LONGEST_POLL: Duration = Duration::from_secs(10);

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
    /// Events already shown, or older than the operation. Events come newest first, so the newest
    /// one seen marks where each listing can stop.
    seen: HashSet<String>,
    /// Nested stacks' ids, with their logical ids in the parent.
    nested: BTreeMap<String, String>,
    started: Instant,
    /// Nested stacks' events older than this (by CloudFormation's clock) predate the operation.
    since: DateTime,
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
            since: DateTime::from(std::time::SystemTime::now() - Duration::from_secs(5)),
            failures: Vec::new(),
        };
        watch.nested = watch.nested_stacks().await?;
        let stacks: Vec<String> = std::iter::once(stack_id.to_owned())
            .chain(watch.nested.keys().cloned())
            .collect();
        for id in stacks {
            // The newest event is enough: every later listing stops when it reaches it.
            let mut first = true;
            let newest =
                cloudformation::events(cloudformation, &id, |_| !std::mem::take(&mut first))
                    .await?
                    .unwrap_or_default();
            watch.seen.extend(
                newest
                    .iter()
                    .filter_map(|e| e.event_id().map(str::to_owned)),
            );
        }
        Ok(watch)
    }

    /// Prints events as they arrive until the stack itself reports a terminal state.
    pub async fn follow(&mut self, step: &Step, deadline: Instant) -> anyhow::Result<Ended> {
        let mut backoff = Backoff::new(FIRST_POLL, LONGEST_POLL);
        loop {
            let stack_id = self.stack_id.clone();
            let mut fresh = self.new_events(&stack_id, None).await?.unwrap_or_default();
            self.nested.extend(self.nested_stacks().await?);
            for (id, logical) in self.nested.clone() {
                match self.new_events(&id, Some(&logical)).await? {
                    Some(events) => fresh.extend(events),
                    // Replaced by the update (the emulator replaces nested stacks) and gone.
                    None => {
                        self.nested.remove(&id);
                    }
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
                if is_the_stack && is_terminal(&status.into()) {
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
            if !fresh.is_empty() {
                backoff.reset();
            }
            wait::pause(backoff.pause()).await;
        }
    }

    fn line(&self, prefix: Option<&str>, event: &StackEvent) -> String {
        let mut line = format!(
            "{:>6.1}s  {:<44} {} ({})",
            self.started.elapsed().as_secs_f64(),
            event.resource_status().map_or("?", |s| s.as_str()),
            resource_name(prefix, event),
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
        self.failures.push(Failure {
            resource: resource_name(prefix, event),
            kind: event.resource_type().unwrap_or("?").to_owned(),
            status: status.to_owned(),
            reason: event
                .resource_status_reason()
                .unwrap_or("no reason given")
                .to_owned(),
        });
    }

    /// Events of `stack_id` not seen before, oldest first, each with the nested stack's logical
    /// id (or `None` for the stack itself); `None` when that stack is gone.
    async fn new_events(
        &mut self,
        stack_id: &str,
        prefix: Option<&str>,
    ) -> anyhow::Result<Option<Vec<(Option<String>, StackEvent)>>> {
        let since = prefix.is_some().then_some(self.since);
        let seen = &self.seen;
        let Some(events) = cloudformation::events(self.cloudformation, stack_id, |event| {
            let old = since
                .is_some_and(|since| event.timestamp().is_some_and(|t| t.secs() < since.secs()));
            old || event.event_id().is_some_and(|id| seen.contains(id))
        })
        .await?
        else {
            return Ok(None);
        };
        let mut fresh = Vec::new();
        for event in events.into_iter().rev() {
            let Some(id) = event.event_id() else { continue };
            if self.seen.insert(id.to_owned()) {
                fresh.push((prefix.map(str::to_owned), event));
            }
        }
        Ok(Some(fresh))
    }

    async fn nested_stacks(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(
            cloudformation::resources(self.cloudformation, &self.stack_id)
                .await?
                .into_iter()
                .filter(|r| r.kind == NESTED_STACK && r.physical_id != self.stack_id)
                .filter(|r| !r.physical_id.is_empty())
                .map(|r| (r.physical_id, r.logical_id))
                .collect(),
        )
    }
}

/// `Api/RestApi` for a nested stack's resource, `Function` for the stack's own.
fn resource_name(prefix: Option<&str>, event: &StackEvent) -> String {
    let resource = event.logical_resource_id().unwrap_or("?");
    match prefix {
        Some(parent) => format!("{parent}/{resource}"),
        None => resource.to_owned(),
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
    let last = std::cell::RefCell::new(String::new());
    wait::poll(
        deadline,
        Backoff::new(Duration::from_secs(2), LONGEST_POLL),
        async || {
            let status = cloudformation::describe(cloudformation, stack)
                .await?
                .map(|current| current.status.as_str().to_owned());
            match status {
                Some(status) if !is_terminal(&status.as_str().into()) => {
                    step.set_message(&format!(
                        "waiting: stack {stack} is {status}, changed by someone else"
                    ));
                    *last.borrow_mut() = status;
                    Ok(None)
                }
                settled => Ok(Some(settled)),
            }
        },
        || {
            anyhow::anyhow!(
                "stack {stack} is still {} after waiting for as long as --timeout allows; try again later",
                last.borrow()
            )
        },
    )
    .await
}
