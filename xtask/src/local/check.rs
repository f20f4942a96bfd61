//! A release checked on this machine: the function as the emulator's Lambda now describes it, run
//! behind a local API Gateway of its own (as `up` runs it), and each of the service's probes that
//! reads no store sent to it (a store probe's answer depends on data: `bench lambda` seeds it, a
//! fresh environment has none). A freshly started instance gets a few seconds: each probe is
//! retried with backoff until it passes or the check's deadline passes. The instance's lines go to
//! the emulator's log group, not to the terminal, where only the verdict is said.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::aws::Connection;
use crate::local::deployed::Deployed;
use crate::local::gateway::logs::Logs;
use crate::local::gateway::terminal::Echo;
use crate::local::gateway::{self, Instances};
use crate::local::runtime::{self, Here, Local, binary_media_types, launch};
use crate::names::Environment;
use crate::progress::Progress;
use crate::workspace::{Probe, Service, Workspace};

/// How long all of a release's probes may take, retries included.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A probe that did not get its answer: which, and what came back instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub probe: String,
    pub answer: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "probe {} got {}", self.probe, self.answer)
    }
}

/// Sends `service`'s probes to what `environment` runs on the emulator; the first that fails.
/// An error is a check that could not run at all (nothing deployed, no code object).
pub fn probe(
    aws: &Connection,
    workspace: &Workspace,
    service: &Service,
    environment: Environment,
    endpoint: &str,
    progress: Progress,
) -> anyhow::Result<Result<(), Failed>> {
    let probes: Vec<&Probe> = service.probes.iter().filter(|p| !p.store).collect();
    let step = progress.step(&format!(
        "probing {}-{environment} ({} probes)",
        service.name,
        probes.len()
    ));
    let functions = aws
        .runtime
        .block_on(Deployed::read(aws, service, environment))?;
    let deployed = functions
        .first()
        .context("the deployed stack has no function")?;
    let listener = TcpListener::bind("127.0.0.1:0").context("a local port for the check")?;
    let port = listener.local_addr()?.port();
    let here = Here {
        workspace,
        urls: BTreeMap::from([(service.name.clone(), format!("http://127.0.0.1:{port}/v1"))]),
        endpoint: endpoint.to_owned(),
        install: false,
        progress,
    };
    let local = Local::prepare(aws, &here, service, deployed)?;
    let scratch = workspace.target_dir.join("local/up");
    let launch = launch(aws, deployed, &local, &scratch, endpoint, false)?;
    let stage = runtime::stage(deployed, binary_media_types(workspace)?);
    let instances = Arc::new(Instances::new(
        &service.name,
        launch,
        1,
        Logs::start(&aws.sdk),
        Echo::Off,
    ));
    let serving = Arc::clone(&instances);
    std::thread::spawn(move || gateway::serve(listener, stage, serving));

    let deadline = Instant::now() + DEADLINE;
    let mut result = Ok(());
    for probe in probes {
        if let Err(failed) = until_answered(port, probe, deadline) {
            result = Err(failed);
            break;
        }
    }
    instances.stop();
    match &result {
        Ok(()) => step.done(&format!("{} passed its probes", deployed.name)),
        Err(failed) => step.done(&format!("{} failed: {failed}", deployed.name)),
    }
    Ok(result)
}

/// Sends `probe` until it gets its answer, backing off from 100 ms, until `deadline`; the last
/// answer when it never does.
fn until_answered(port: u16, probe: &Probe, deadline: Instant) -> Result<(), Failed> {
    let mut pause = Duration::from_millis(100);
    loop {
        let answer = match send(port, probe) {
            Ok((status, body)) => match verdict(probe, status, &body) {
                None => return Ok(()),
                Some(answer) => answer,
            },
            Err(error) => format!("no answer ({error})"),
        };
        if Instant::now() + pause > deadline {
            return Err(Failed {
                probe: probe.label(),
                answer,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// What is wrong with an answer, or nothing when it is the one `probe` expects.
fn verdict(probe: &Probe, status: u16, body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let shown: String = text.chars().take(300).collect();
    if status != probe.status {
        return Some(format!("{status} {shown}"));
    }
    if probe.keys.is_empty() {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    probe
        .keys
        .iter()
        .find(|key| json.get(key.as_str()).is_none())
        .map(|key| format!("{status} without `{key}`: {shown}"))
}

/// One HTTP/1.1 request for `probe` to the gateway on `port`; its status and body.
fn send(port: u16, probe: &Probe) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(35)))?;
    let body = probe
        .body
        .as_ref()
        .map(|b| b.to_string())
        .unwrap_or_default();
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        probe.method,
        probe.path,
        body.len()
    );
    if probe.body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in &probe.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes())?;
    let response = lambda_harness::http::read_response(&mut BufReader::new(stream))?;
    Ok((response.status, response.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(status: u16, keys: &[&str]) -> Probe {
        Probe {
            method: "GET".into(),
            path: "/v1/misc/time".into(),
            status,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            store: false,
            headers: BTreeMap::new(),
            body: None,
        }
    }

    #[test]
    fn an_answer_passes_with_its_status_and_keys() {
        let body = br#"{"current_date":"2026-12-01T10:00:00Z"}"#;
        assert_eq!(verdict(&probe(200, &["current_date"]), 200, body), None);
        assert_eq!(
            verdict(
                &probe(200, &["current_date"]),
                502,
                b"{\"message\":\"Internal server error\"}"
            ),
            Some("502 {\"message\":\"Internal server error\"}".into())
        );
        assert_eq!(
            verdict(&probe(200, &["uuid"]), 200, body),
            Some(format!(
                "200 without `uuid`: {}",
                String::from_utf8_lossy(body)
            ))
        );
        assert_eq!(verdict(&probe(401, &[]), 401, b"{}"), None);
    }
}
