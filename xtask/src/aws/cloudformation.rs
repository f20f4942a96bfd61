//! The CloudFormation queries the release tool makes: a stack as it is now (or every stack), its
//! resources, its
//! events, a change set's changes and the template a stack runs. Lists go through the SDK's
//! paginators, so every page is read; a stack that does not exist is `None`, recognised one way.

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::primitives::DateTimeFormat;
use aws_sdk_cloudformation::types::{Change, StackEvent, TemplateStage};
use serde::Serialize;

/// What the release tool knows about an existing stack.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: String,
    pub status: aws_sdk_cloudformation::types::StackStatus,
    /// When the stack was last updated (or created), RFC 3339.
    pub updated: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// One resource of a stack.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    pub logical_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub physical_id: String,
}

/// The type of a nested stack's resource in its parent.
pub const NESTED_STACK: &str = "AWS::CloudFormation::Stack";

/// True when CloudFormation answered that the stack (or change set) named does not exist: the one
/// way the release tool tells "absent" from a failure.
pub fn is_missing(error: &impl ProvideErrorMetadata) -> bool {
    error
        .message()
        .is_some_and(|message| message.contains("does not exist"))
}

/// CloudFormation's two ways of saying a change set would change nothing.
pub fn is_empty_change(message: Option<&str>) -> bool {
    message.is_some_and(|m| {
        m.contains("didn't contain changes") || m.contains("No updates are to be performed")
    })
}

/// The stack named `stack` (a name or an id), or `None` when there is none.
pub async fn describe(cloudformation: &Client, stack: &str) -> anyhow::Result<Option<Current>> {
    let output = match cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
    {
        Ok(output) => output,
        Err(error) if is_missing(&error) => return Ok(None),
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("looking up stack {stack}"));
        }
    };
    Ok(output.stacks().first().map(|found| current(found, stack)))
}

/// Every stack in the region that exists (CloudFormation lists deleted ones only by name), with its
/// name and whether it is nested in another, from every page.
pub async fn all(cloudformation: &Client) -> anyhow::Result<Vec<(String, bool, Current)>> {
    let mut pages = cloudformation.describe_stacks().into_paginator().send();
    let mut stacks = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.context("listing the region's stacks")?;
        for found in page.stacks() {
            let name = found.stack_name().unwrap_or_default().to_owned();
            let nested = found.parent_id().is_some();
            stacks.push((name.clone(), nested, current(found, &name)));
        }
    }
    Ok(stacks)
}

fn current(found: &aws_sdk_cloudformation::types::Stack, stack: &str) -> Current {
    let pairs = |items: Vec<(Option<&str>, Option<&str>)>| -> BTreeMap<String, String> {
        items
            .into_iter()
            .filter_map(|(k, v)| Some((k?.to_owned(), v.unwrap_or_default().to_owned())))
            .collect()
    };
    Current {
        id: found.stack_id().unwrap_or(stack).to_owned(),
        updated: found
            .last_updated_time()
            .or(found.creation_time())
            .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok()),
        status: found
            .stack_status()
            .cloned()
            .unwrap_or_else(|| "UNKNOWN".into()),
        parameters: pairs(
            found
                .parameters()
                .iter()
                .map(|p| (p.parameter_key(), p.parameter_value()))
                .collect(),
        ),
        outputs: pairs(
            found
                .outputs()
                .iter()
                .map(|o| (o.output_key(), o.output_value()))
                .collect(),
        ),
        tags: pairs(found.tags().iter().map(|t| (t.key(), t.value())).collect()),
    }
}

/// Every resource of the stack, from every page.
pub async fn resources(cloudformation: &Client, stack: &str) -> anyhow::Result<Vec<Resource>> {
    let summaries: Vec<_> = cloudformation
        .list_stack_resources()
        .stack_name(stack)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .with_context(|| format!("listing the resources of stack {stack}"))?;
    Ok(summaries
        .iter()
        .filter_map(|r| {
            Some(Resource {
                logical_id: r
                    .logical_resource_id()
                    .filter(|id| !id.is_empty())?
                    .to_owned(),
                kind: r.resource_type().unwrap_or_default().to_owned(),
                physical_id: r.physical_resource_id().unwrap_or_default().to_owned(),
            })
        })
        .collect())
}

/// The stack's events, newest first, page after page until `stop` says an event is one the caller
/// has (that event and older ones are left out). `None` when the stack does not exist (any more).
pub async fn events(
    cloudformation: &Client,
    stack: &str,
    mut stop: impl FnMut(&StackEvent) -> bool,
) -> anyhow::Result<Option<Vec<StackEvent>>> {
    let mut pages = cloudformation
        .describe_stack_events()
        .stack_name(stack)
        .into_paginator()
        .send();
    let mut events = Vec::new();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(error) if is_missing(&error) => return Ok(None),
            Err(error) => {
                return Err(anyhow::Error::new(error))
                    .with_context(|| format!("reading the events of {stack}"));
            }
        };
        for event in page.stack_events() {
            if stop(event) {
                return Ok(Some(events));
            }
            events.push(event.clone());
        }
    }
    Ok(Some(events))
}

/// Every change a change set holds, from every page.
pub async fn changes(cloudformation: &Client, change_set: &str) -> anyhow::Result<Vec<Change>> {
    let mut pages = cloudformation
        .describe_change_set()
        .change_set_name(change_set)
        .into_paginator()
        .send();
    let mut changes = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.with_context(|| format!("reading change set {change_set}"))?;
        changes.extend(page.changes().iter().cloned());
    }
    Ok(changes)
}

/// The template text the stack runs now, as it was sent.
pub async fn template_body(cloudformation: &Client, stack: &str) -> anyhow::Result<String> {
    let deployed = cloudformation
        .get_template()
        .stack_name(stack)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .with_context(|| format!("reading the template stack {stack} runs"))?;
    Ok(deployed.template_body().unwrap_or_default().to_owned())
}

/// Deletes a change set that was never executed.
pub async fn delete_change_set(cloudformation: &Client, change_set: &str) -> anyhow::Result<()> {
    delete_change_set_of(cloudformation, None, change_set).await
}

/// Deletes change set `name` (a name, with its stack, or an id).
pub async fn delete_change_set_of(
    cloudformation: &Client,
    stack: Option<&str>,
    name: &str,
) -> anyhow::Result<()> {
    cloudformation
        .delete_change_set()
        .set_stack_name(stack.map(str::to_owned))
        .change_set_name(name)
        .send()
        .await
        .with_context(|| format!("deleting change set {name}"))?;
    Ok(())
}

/// A stack's name from its id (an ARN, `…:stack/<name>/<uuid>`) or its name.
pub fn stack_name_of(id: &str) -> &str {
    id.split_once(":stack/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or(id)
}

/// A change set's name as people saw it when it was made, from its id (an ARN, which is what is
/// looked up) or its name.
pub fn change_set_name(id: &str) -> &str {
    id.split_once(":changeSet/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or(id)
}

/// A change set's execution status (`AVAILABLE` until it is executed), or `None` when there is no
/// such change set (or stack).
pub async fn change_set_state(
    cloudformation: &Client,
    stack: &str,
    name: &str,
) -> anyhow::Result<Option<aws_sdk_cloudformation::types::ExecutionStatus>> {
    // A change set named by its ARN takes no stack name; one named by its name does.
    let of = (!name.starts_with("arn:")).then(|| stack.to_owned());
    let described = cloudformation
        .describe_change_set()
        .set_stack_name(of)
        .change_set_name(name)
        .send()
        .await;
    match described {
        Ok(described) => {
            Ok(Some(described.execution_status().cloned().unwrap_or(
                aws_sdk_cloudformation::types::ExecutionStatus::Unavailable,
            )))
        }
        Err(error) if is_missing(&error) || error.code() == Some("ChangeSetNotFound") => Ok(None),
        Err(error) => Err(anyhow::Error::new(error))
            .with_context(|| format!("reading change set {name} of stack {stack}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_wordings_of_an_empty_change_set_are_recognised() {
        assert!(is_empty_change(Some(
            "The submitted information didn't contain changes. Submit different information."
        )));
        assert!(is_empty_change(Some("No updates are to be performed.")));
        assert!(!is_empty_change(Some("Template format error")));
        assert!(!is_empty_change(None));
    }
}
