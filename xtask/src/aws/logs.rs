//! CloudWatch Logs, as `logs` reads a function's group: `FilterLogEvents`, every page.

use anyhow::Context;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata};

/// Now, in milliseconds since the epoch, as log events are timed.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One log event: when (milliseconds since the epoch), its id and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub timestamp: i64,
    pub id: String,
    pub message: String,
}

/// The events of `group` from `start` (milliseconds) on that match `pattern`, oldest first;
/// `None` when the group does not exist (the function has never run).
pub async fn filter(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    start: i64,
    pattern: Option<&str>,
) -> anyhow::Result<Option<Vec<Event>>> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = logs
            .filter_log_events()
            .log_group_name(group)
            .start_time(start)
            .set_filter_pattern(pattern.map(str::to_owned))
            .set_next_token(token.take())
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(error) if error.code() == Some("ResourceNotFoundException") => return Ok(None),
            Err(error) => {
                return Err(anyhow::anyhow!("{}", DisplayErrorContext(&error)))
                    .with_context(|| format!("reading log group {group}"));
            }
        };
        events.extend(page.events().iter().map(|event| Event {
            timestamp: event.timestamp().unwrap_or_default(),
            id: event.event_id().unwrap_or_default().to_owned(),
            message: event.message().unwrap_or_default().to_owned(),
        }));
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    events.sort_by_key(|e| e.timestamp);
    Ok(Some(events))
}
