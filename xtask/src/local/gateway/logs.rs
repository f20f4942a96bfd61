//! Lambda's logs, as a function's instances write them: each instance's lines, framed by `START`,
//! `END` and `REPORT` lines, go to the emulator's CloudWatch Logs group `/aws/lambda/<function>`,
//! a stream per instance (`YYYY/MM/DD/[$LATEST]<id>`). One thread sends them, in order, so a slow
//! or failing Logs API never holds up a request; a failure is said once on the terminal. A
//! short-lived command flushes them before it exits ([`Logs::flush`]).

use std::sync::mpsc::{Sender, channel};

/// Where an instance's lines go; cheap to clone.
#[derive(Debug, Clone)]
pub struct Logs {
    sender: Sender<Message>,
}

#[derive(Debug)]
enum Message {
    Batch(Batch),
    /// Answered once every batch queued before it was sent.
    Flush(Sender<()>),
}

#[derive(Debug)]
struct Batch {
    group: String,
    stream: String,
    lines: Vec<String>,
}

impl Logs {
    /// Starts the sending thread for the emulator behind `sdk`.
    pub fn start(sdk: &aws_config::SdkConfig) -> Logs {
        let client = aws_sdk_cloudwatchlogs::Client::new(sdk);
        let mut streams = std::collections::BTreeSet::new();
        let sender = super::sending_thread(move |runtime, message| {
            let batch = match message {
                Message::Batch(batch) => batch,
                Message::Flush(done) => {
                    let _ = done.send(());
                    return Ok(());
                }
            };
            runtime
                .block_on(send(&client, &mut streams, &batch))
                .map_err(|error| {
                    format!(
                        "[logs] could not write to {} in the emulator's CloudWatch Logs: {error:#}",
                        batch.group
                    )
                })
        });
        Logs { sender }
    }

    /// Queues `lines` for `function`'s stream `stream`.
    pub fn write(&self, function: &str, stream: &str, lines: Vec<String>) {
        let _ = self.sender.send(Message::Batch(Batch {
            group: format!("/aws/lambda/{function}"),
            stream: stream.to_owned(),
            lines,
        }));
    }

    /// Waits, up to `within`, until every line queued so far has been sent.
    pub fn flush(&self, within: std::time::Duration) {
        let (done, sent) = channel();
        if self.sender.send(Message::Flush(done)).is_ok() {
            let _ = sent.recv_timeout(within);
        }
    }
}

/// A new instance's stream name, as Lambda names them.
pub fn stream_name() -> String {
    let date = crate::progress::now_rfc3339();
    let id = crate::local::random_hex(16).unwrap_or_else(|_| "0".repeat(32));
    format!(
        "{}/{}/{}/[$LATEST]{id}",
        &date[0..4],
        &date[5..7],
        &date[8..10]
    )
}

async fn send(
    client: &aws_sdk_cloudwatchlogs::Client,
    streams: &mut std::collections::BTreeSet<(String, String)>,
    batch: &Batch,
) -> anyhow::Result<()> {
    use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    let key = (batch.group.clone(), batch.stream.clone());
    if !streams.contains(&key) {
        // The template's log group may not exist in the emulator; one that does is fine.
        if let Err(error) = client
            .create_log_group()
            .log_group_name(&batch.group)
            .send()
            .await
            && error.code() != Some("ResourceAlreadyExistsException")
        {
            return Err(error.into());
        }
        client
            .create_log_stream()
            .log_group_name(&batch.group)
            .log_stream_name(&batch.stream)
            .send()
            .await?;
        streams.insert(key);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let events: Vec<InputLogEvent> = batch
        .lines
        .iter()
        .filter(|line| !line.is_empty())
        .map(|line| {
            InputLogEvent::builder()
                .timestamp(now)
                .message(line)
                .build()
        })
        .collect::<Result<_, _>>()?;
    if events.is_empty() {
        return Ok(());
    }
    client
        .put_log_events()
        .log_group_name(&batch.group)
        .log_stream_name(&batch.stream)
        .set_log_events(Some(events))
        .send()
        .await?;
    Ok(())
}
