//! A request to the deployed API and the answer it must get. Each service declares its probes in
//! `[[package.metadata.lambda.probes]]`; `deploy` sends them after every change, the pre-traffic
//! gate sends them to a new version before it gets traffic, `serve` shows the first and `bench
//! lambda` times them all.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lambda_harness::http::Request;
use serde::{Deserialize, Serialize};

/// How long all of a release's probes may take, retries included: a freshly updated function
/// gets this long to become active and answer.
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    #[serde(default = "get")]
    pub method: String,
    /// The path on the service's own domain, `/v1/...`.
    pub path: String,
    pub status: u16,
    /// Keys the JSON body must have.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Whether answering it reads a store (a table, a bucket, a pool, the database). Releases are
    /// checked with the store-free probes only: a store probe's answer depends on data, which a
    /// fresh environment does not have.
    #[serde(default)]
    pub store: bool,
    /// Request headers, by name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body, sent with `Content-Type: application/json`.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

fn get() -> String {
    "GET".to_owned()
}

impl Probe {
    /// `GET /v1/misc/time (200)`: how figures and messages name it.
    pub fn label(&self) -> String {
        format!("{} {} ({})", self.method, self.path, self.status)
    }

    /// What is wrong with the probe itself, if anything.
    pub fn malformed(&self) -> Option<String> {
        let ok = is_method(&self.method)
            && self.path.starts_with("/v1/")
            && (100..600).contains(&self.status);
        (!ok).then(|| {
            format!(
                "the probe `{}` is malformed: it needs an upper-case method, a path under /v1/ \
                 and a status from 100 to 599",
                self.label()
            )
        })
    }

    /// The request it sends, with `host` as the `Host` header.
    pub fn request(&self, host: &str) -> Request {
        let mut headers = vec![("host".to_owned(), host.to_owned())];
        if self.body.is_some() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        headers.extend(
            self.headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.clone())),
        );
        Request {
            method: self.method.clone(),
            path: self.path.clone(),
            headers,
            body: self
                .body
                .as_ref()
                .map(|b| b.to_string().into_bytes())
                .unwrap_or_default(),
        }
    }

    /// What is wrong with an answer, or nothing when it is the one this probe expects.
    pub fn verdict(&self, status: u16, body: &[u8]) -> Option<String> {
        let shown = shown(body);
        if status != self.status {
            return Some(format!("{status} {shown}"));
        }
        if self.keys.is_empty() {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        self.keys
            .iter()
            .find(|key| json.get(key.as_str()).is_none())
            .map(|key| format!("{status} without `{key}`: {shown}"))
    }
}

/// Whether `text` is an HTTP method as requests spell it: upper-case letters (`GET`, `PATCH`).
pub fn is_method(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_uppercase())
}

/// The first 300 characters of a body, as messages quote it.
pub fn shown(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// The probes a release is checked with: those that read no store, in their order.
pub fn release_checks(probes: &[Probe]) -> Vec<&Probe> {
    probes.iter().filter(|p| !p.store).collect()
}

/// A probe that did not get its answer: which, and what came back instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    pub probe: String,
    pub answer: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "probe {} got {}", self.probe, self.answer)
    }
}

/// Tries a probe until `attempt` says it got its answer (`None`) or the deadline passes; then
/// the failure is named `label`, with the last answer `attempt` gave. The pauses are [`Backoff`]'s.
pub async fn retry(
    label: String,
    deadline: Instant,
    mut attempt: impl AsyncFnMut() -> Option<String>,
) -> Result<(), Failed> {
    let mut backoff = Backoff::until(deadline);
    loop {
        let Some(answer) = attempt().await else {
            return Ok(());
        };
        match backoff.next_pause() {
            Some(pause) => tokio::time::sleep(pause).await,
            None => {
                return Err(Failed {
                    probe: label,
                    answer,
                });
            }
        }
    }
}

/// The pauses between a probe's tries: from 100 ms, doubling to 2 s, while the next try would
/// still start before the deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    pause: Duration,
    deadline: Instant,
}

impl Backoff {
    pub fn until(deadline: Instant) -> Backoff {
        Backoff {
            pause: Duration::from_millis(100),
            deadline,
        }
    }

    /// How long to wait before the next try, or `None` when it is time to give up.
    pub fn next_pause(&mut self) -> Option<Duration> {
        let pause = self.pause;
        if Instant::now() + pause > self.deadline {
            return None;
        }
        self.pause = (pause * 2).min(Duration::from_secs(2));
        Some(pause)
    }
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
        assert_eq!(probe(200, &["current_date"]).verdict(200, body), None);
        assert_eq!(
            probe(200, &["current_date"]).verdict(502, b"{\"message\":\"Internal server error\"}"),
            Some("502 {\"message\":\"Internal server error\"}".into())
        );
        assert_eq!(
            probe(200, &["uuid"]).verdict(200, body),
            Some(format!(
                "200 without `uuid`: {}",
                String::from_utf8_lossy(body)
            ))
        );
        assert_eq!(probe(401, &[]).verdict(401, b"{}"), None);
    }

    #[test]
    fn malformed_probes_are_named() {
        assert_eq!(probe(200, &[]).malformed(), None);
        let mut bad = probe(200, &[]);
        bad.path = "/misc/time".into();
        assert!(bad.malformed().unwrap().contains("`GET /misc/time (200)`"));
        let mut bad = probe(99, &[]);
        bad.method = "get".into();
        assert!(bad.malformed().is_some());
    }

    #[test]
    fn requests_carry_the_body_as_json_and_headers_in_lower_case() {
        let mut with_body = probe(401, &[]);
        with_body.method = "POST".into();
        with_body.body = Some(serde_json::json!({"a": 1}));
        with_body
            .headers
            .insert("Authorization".into(), "Bearer x".into());
        let request = with_body.request("hardware.dev.example");
        assert_eq!(request.header("host"), Some("hardware.dev.example"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Bearer x"));
        assert_eq!(request.body, br#"{"a":1}"#);
    }

    #[tokio::test]
    async fn retry_tries_until_an_answer_passes_or_the_deadline_passes() {
        let mut tries = 0;
        let passed = retry(
            "p".into(),
            Instant::now() + Duration::from_secs(5),
            async || {
                tries += 1;
                (tries < 3).then(|| format!("try {tries}"))
            },
        )
        .await;
        assert_eq!((passed, tries), (Ok(()), 3));
        let failed = retry("GET /v1/x (200)".into(), Instant::now(), async || {
            Some("502".to_owned())
        })
        .await;
        assert_eq!(
            failed,
            Err(Failed {
                probe: "GET /v1/x (200)".into(),
                answer: "502".into()
            })
        );
    }

    #[test]
    fn backoff_doubles_to_two_seconds_and_stops_at_the_deadline() {
        let mut backoff = Backoff::until(Instant::now() + Duration::from_secs(60));
        let pauses: Vec<u128> = (0..7)
            .map(|_| backoff.next_pause().unwrap().as_millis())
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 2000, 2000]);
        let mut late = Backoff::until(Instant::now() + Duration::from_millis(50));
        assert_eq!(late.next_pause(), None);
    }
}
