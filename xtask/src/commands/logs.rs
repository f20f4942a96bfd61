//! `cargo xtask logs <service> <env>`: the function's CloudWatch Logs, read with
//! `FilterLogEvents`: the services' JSON lines as time, level, request id, message and fields,
//! Lambda's `REPORT` lines as a short summary (duration, memory, init), `START`/`END` dropped.
//! `--follow` keeps polling, with backoff; `--local` reads what the local runtime wrote to the
//! emulator (`up`, `invoke --local` and deploy's checks write there).

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;
use serde_json::Value;

use crate::aws::logs::{Event, filter};
use crate::cli::{Account, Output, Stack};
use crate::environments::StackName;
use crate::progress::Progress;
use crate::workspace::Workspace;

/// Read a function's logs, rendered; follow them as they come.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask logs hardware dev --local --since 10m\n  \
    cargo xtask logs users production --follow --filter ERROR\n  \
    cargo xtask logs alerts qa --request c6af9ac6-7b61-11e6-9a41-93e8deadbeef\n\n\
    --since takes 30s, 15m, 2h, 1d or an RFC 3339 time (default 1h). A function that has never run\n\
    has no log group yet: that is said, and exits 0. --follow polls every second while lines come,\n\
    backing off to ten seconds while none do; Ctrl-C stops it.")]
pub struct Logs {
    #[command(flatten)]
    stack: Stack,
    /// Keep reading as new lines arrive.
    #[arg(long)]
    follow: bool,
    /// How far back to start: 30s, 15m, 2h, 1d, or an RFC 3339 time.
    #[arg(long, default_value = "1h", value_parser = since)]
    since: Since,
    /// Only lines that contain this text.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// Only one request's lines (its request id).
    #[arg(long, value_name = "ID")]
    request: Option<String>,
    #[command(flatten)]
    account: Account,
    #[command(flatten)]
    output: Output,
}

/// Where reading starts, in milliseconds since the epoch (or back from now).
#[derive(Debug, Clone, Copy)]
enum Since {
    Ago(u64),
    At(i64),
}

fn since(text: &str) -> Result<Since, String> {
    if let Some(ago) = crate::names::duration(text) {
        return Ok(Since::Ago(
            u64::try_from(ago.as_millis()).unwrap_or(u64::MAX),
        ));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| Since::At(at.timestamp_millis()))
        .map_err(|_| {
            format!("{text:?} is neither a duration (30s, 15m, 2h, 1d) nor an RFC 3339 time")
        })
}

/// One rendered line, and what `--json` prints for it.
#[derive(Debug, Serialize, PartialEq)]
struct Line {
    timestamp: i64,
    request_id: Option<String>,
    /// The line as people read it, without colour.
    text: String,
    /// The service's JSON line, or Lambda's own line, as it was written.
    raw: String,
}

impl Logs {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (service, environment) = self.stack.resolve(workspace)?;
        let session = self.account.read(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        let Some(function) = service.functions.first() else {
            bail!("{} declares no function", service.name);
        };
        let name = StackName::new(&service.name, environment).function(&function.name);
        let group = format!("/aws/lambda/{name}");
        let client = aws_sdk_cloudwatchlogs::Client::new(&aws.sdk);
        let mut start = match self.since {
            Since::Ago(ms) => crate::aws::logs::now_ms() - ms as i64,
            Since::At(at) => at,
        };
        let pattern = self
            .request
            .as_ref()
            .or(self.filter.as_ref())
            .map(|text| format!("\"{}\"", text.replace('"', "")));
        let colour = !self.output.json
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none();
        let mut seen = std::collections::BTreeSet::new();
        let mut pause = Duration::from_secs(1);
        loop {
            let read = aws
                .runtime
                .block_on(filter(&client, &group, start, pattern.as_deref()))?;
            let Some(events) = read else {
                println!("{name} has not run yet: its log group {group} does not exist");
                return Ok(());
            };
            let mut new = 0;
            for event in events {
                if !seen.insert(event.id.clone()) {
                    continue;
                }
                start = start.max(event.timestamp);
                let Some(line) = render(&event) else { continue };
                if let Some(wanted) = &self.request
                    && line.request_id.as_deref() != Some(wanted.as_str())
                {
                    continue;
                }
                if let Some(text) = &self.filter
                    && !line.raw.contains(text.as_str())
                {
                    continue;
                }
                new += 1;
                if self.output.json {
                    println!("{}", serde_json::to_string(&line)?);
                } else {
                    println!("{}", paint(&line, colour));
                }
            }
            if !self.follow {
                return Ok(());
            }
            pause = if new > 0 {
                Duration::from_secs(1)
            } else {
                (pause * 2).min(Duration::from_secs(10))
            };
            crate::wait::pause_blocking(pause);
        }
    }
}

/// The line for `event`, or `None` for Lambda's `START` and `END` lines, which say nothing the
/// `REPORT` line does not.
fn render(event: &Event) -> Option<Line> {
    let message = event.message.trim_end();
    let time = chrono::DateTime::from_timestamp_millis(event.timestamp)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    let line = |request_id: Option<String>, text: String| Line {
        timestamp: event.timestamp,
        request_id,
        text,
        raw: message.to_owned(),
    };
    if message.starts_with("START RequestId:") || message.starts_with("END RequestId:") {
        return None;
    }
    if let Some(report) = message.strip_prefix("REPORT RequestId: ") {
        let mut fields = report.split('\t').map(str::trim);
        let id = fields.next().unwrap_or_default().to_owned();
        let field = |name: &str| {
            report
                .split('\t')
                .find_map(|f| f.trim().strip_prefix(name).map(str::trim))
                .map(str::to_owned)
        };
        let mut summary = format!(
            "{time} REPORT  {} {}",
            short(&id),
            field("Duration:").unwrap_or_default()
        );
        if let (Some(used), Some(size)) = (field("Max Memory Used:"), field("Memory Size:")) {
            summary.push_str(&format!(", memory {used} of {size}"));
        }
        if let Some(init) = field("Init Duration:") {
            summary.push_str(&format!(", init {init}"));
        }
        return Some(line(Some(id), summary));
    }
    let Ok(json) = serde_json::from_str::<Value>(message) else {
        let id = message.split_once("RequestId: ").map(|(_, rest)| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        });
        return Some(line(id, format!("{time} {message}")));
    };
    let level = json["level"].as_str().unwrap_or("?");
    let request_id = ["span", "fields"]
        .iter()
        .find_map(|key| json[key]["request_id"].as_str())
        .map(str::to_owned);
    // The request a line belongs to, as its span names it: `GET /v1/x`.
    let request = match (
        json["span"]["method"].as_str(),
        json["span"]["path"].as_str(),
    ) {
        (Some(method), Some(path)) => format!("{method} {path} "),
        _ => String::new(),
    };
    let mut text = format!(
        "{time} {level:<5} {} {request}{}",
        request_id.as_deref().map_or("-".to_owned(), short),
        json["fields"]["message"].as_str().unwrap_or_default()
    );
    if let Some(fields) = json["fields"].as_object() {
        for (key, value) in fields.iter().filter(|(k, _)| *k != "message") {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            text.push_str(&format!(" {key}={value}"));
        }
    }
    Some(line(request_id, text))
}

/// A request id's first eight characters: enough to tell requests apart on a screen.
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// The line in colour, by level, for a terminal.
fn paint(line: &Line, colour: bool) -> String {
    if !colour {
        return line.text.clone();
    }
    let style = if line.text.contains(" ERROR ") {
        "\x1b[31m"
    } else if line.text.contains(" WARN ") {
        "\x1b[33m"
    } else if line.text.contains(" REPORT ") {
        "\x1b[2m"
    } else {
        ""
    };
    if style.is_empty() {
        line.text.clone()
    } else {
        format!("{style}{}\x1b[0m", line.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message: &str) -> Event {
        Event {
            timestamp: 1_796_000_000_123,
            id: "1".into(),
            message: message.into(),
        }
    }

    #[test]
    fn lines_are_rendered_as_people_read_them() {
        let json = r#"{"timestamp":"2026-12-01T10:00:00Z","level":"ERROR","fields":{"message":"the store failed","table":"firmware","attempt":2},"target":"kit","span":{"request_id":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef","name":"request"}}"#;
        let line = render(&event(json)).unwrap();
        assert_eq!(
            line.request_id.as_deref(),
            Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
        );
        assert!(
            line.text
                .ends_with("ERROR c6af9ac6 the store failed attempt=2 table=firmware"),
            "{}",
            line.text
        );
        let responded = r#"{"timestamp":"2026-12-01T10:00:00Z","level":"INFO","fields":{"message":"responded","status":404,"elapsed_ms":1.5},"target":"kit","span":{"request_id":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef","method":"GET","path":"/v1/nope","name":"request"}}"#;
        let line = render(&event(responded)).unwrap();
        assert!(
            line.text
                .ends_with("INFO  c6af9ac6 GET /v1/nope responded elapsed_ms=1.5 status=404"),
            "{}",
            line.text
        );
        let report = "REPORT RequestId: c6af9ac6-7b61-11e6-9a41-93e8deadbeef\tDuration: 1.84 ms\tBilled Duration: 2 ms\tMemory Size: 256 MB\tMax Memory Used: 31 MB\tInit Duration: 152.30 ms\t";
        let line = render(&event(report)).unwrap();
        assert!(
            line.text
                .ends_with("REPORT  c6af9ac6 1.84 ms, memory 31 MB of 256 MB, init 152.30 ms"),
            "{}",
            line.text
        );
        assert_eq!(render(&event("START RequestId: x Version: $LATEST")), None);
        assert_eq!(render(&event("END RequestId: x")), None);
        let plain = render(&event("init failed: the broken-init release never starts")).unwrap();
        assert!(
            plain
                .text
                .ends_with(" init failed: the broken-init release never starts")
        );
        assert!(paint(&render(&event(json)).unwrap(), true).starts_with("\x1b[31m"));
    }

    #[test]
    fn since_takes_durations_and_times_and_names_what_it_does_not() {
        assert!(matches!(since("15m"), Ok(Since::Ago(900_000))));
        assert!(matches!(since("1d"), Ok(Since::Ago(86_400_000))));
        assert!(matches!(
            since("2026-12-01T10:00:00Z"),
            Ok(Since::At(1_796_119_200_000))
        ));
        assert_eq!(
            since("yesterday").unwrap_err(),
            "\"yesterday\" is neither a duration (30s, 15m, 2h, 1d) nor an RFC 3339 time"
        );
    }
}
