//! Random API Gateway events through a service's Lambda path: nothing may panic, and every
//! response must keep the contract (status, `Status` header, `{"message"}` body, CORS).
//!
//! Seeded and reproducible: a failure prints its seed and case; `FUZZ_SEED` replays it and
//! `FUZZ_CASES` runs more (or fewer) cases than a test asks for.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use base64::Engine;
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::{Value, json};

/// What a fuzz run saw.
#[derive(Debug, Default)]
pub struct FuzzReport {
    pub cases: usize,
    pub seed: u64,
    pub by_status: BTreeMap<u16, usize>,
}

/// The fuzz run's inputs: the service, the tokens to sometimes send, and words its routes use.
#[derive(Debug, Clone)]
pub struct Fuzz {
    pub service: &'static str,
    /// Valid tokens of several kinds; random requests carry one of them now and then.
    pub tokens: Vec<String>,
    /// Words worth trying as path segments besides the routes' own (`latest`, a version).
    pub words: Vec<&'static str>,
    /// The service's routes (its `routes().paths()`), `{name}` for each path parameter; half the
    /// cases follow one of them, and their literal segments are words too.
    pub routes: Vec<&'static str>,
    pub cases: usize,
}

static PANICS: AtomicUsize = AtomicUsize::new(0);
static PANIC_MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Fuzz {
    /// Runs the cases; panics, with the seed and the event, at the first broken response.
    /// Run it in a test binary of its own: it counts every panic in the process.
    pub async fn run(mut self, router: Router) -> FuzzReport {
        for segment in self.routes.iter().flat_map(|route| route.split('/')) {
            if !segment.is_empty() && !segment.starts_with('{') && !self.words.contains(&segment) {
                self.words.push(segment);
            }
        }
        let cases = std::env::var("FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(self.cases);
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            PANICS.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut messages) = PANIC_MESSAGES.lock() {
                messages.push(info.to_string());
            }
        }));
        let mut rng = Rng(seed | 1);
        let mut report = FuzzReport {
            cases,
            seed,
            ..FuzzReport::default()
        };
        let mut handler = crate::lambda_handler(router);
        for case in 0..cases {
            let event = self.event(&mut rng);
            let context = format!(
                "case {case} of seed {seed} (rerun with FUZZ_SEED={seed}):\n{}",
                serde_json::to_string_pretty(&event).unwrap_or_default()
            );
            let request: LambdaRequest =
                serde_json::from_value(event.clone()).unwrap_or_else(|e| {
                    panic!("the generator made an event Lambda would not send ({e}); {context}")
                });
            let before = PANICS.load(Ordering::SeqCst);
            let response = handler
                .call(LambdaEvent::new(request, Context::default()))
                .await
                .unwrap_or_else(|never| match never {});
            let response = serde_json::to_value(response).expect("responses serialise");
            if PANICS.load(Ordering::SeqCst) != before {
                let messages = PANIC_MESSAGES
                    .lock()
                    .map(|m| m.join("\n"))
                    .unwrap_or_default();
                let _ = std::panic::take_hook();
                panic!("the service panicked: {messages}\n{context}");
            }
            if let Err(problem) = check(&response, &event) {
                let _ = std::panic::take_hook();
                panic!("{problem}\nresponse: {response}\n{context}");
            }
            let status = response["statusCode"].as_u64().unwrap_or_default() as u16;
            *report.by_status.entry(status).or_default() += 1;
        }
        let _ = std::panic::take_hook();
        report
    }

    fn event(&self, rng: &mut Rng) -> Value {
        let method = *rng.pick(&[
            "GET", "GET", "POST", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD", "TRACE",
        ]);
        let prefix = match rng.below(10) {
            0..=3 => "/v1".to_owned(),
            4..=7 => format!("/{}", self.service),
            8 => String::new(),
            _ => format!("/{}", rng.token()),
        };
        let mut path = prefix;
        if !self.routes.is_empty() && rng.below(2) == 0 {
            for segment in rng.pick(&self.routes).split('/').filter(|s| !s.is_empty()) {
                path.push('/');
                let parameter = segment.starts_with('{');
                path.push_str(&match (parameter, rng.below(4)) {
                    (true, 0) => rng.token(),
                    (true, 1) => (*rng.pick(&self.words)).to_owned(),
                    (true, _) => rng.identifier(),
                    (false, _) => segment.to_owned(),
                });
            }
        }
        for _ in 0..rng.below(if path.matches('/').count() > 1 { 2 } else { 5 }) {
            path.push('/');
            path.push_str(&match rng.below(6) {
                0..=2 => (*rng.pick(&self.words)).to_owned(),
                3 => rng.identifier(),
                _ => rng.token(),
            });
        }
        if path.is_empty() || rng.below(8) == 0 {
            path.push('/');
        }
        // API Gateway decodes the path: what a client escaped arrives as itself.
        if rng.below(10) == 0 {
            path.push_str(rng.pick::<&str>(&["?", "#", "%", "?x=1", "#top", "%3F", "%%"]));
        }
        let mut headers = serde_json::Map::new();
        if rng.below(3) > 0 {
            headers.insert(
                "Content-Type".into(),
                json!(*rng.pick(&[
                    "application/json",
                    "application/json; charset=utf-8",
                    "application/octet-stream",
                    "text/plain",
                    "",
                    "multipart/form-data; boundary=x",
                ])),
            );
        }
        match rng.below(6) {
            0 | 1 if !self.tokens.is_empty() => {
                let token = rng.pick(&self.tokens).clone();
                let scheme = *rng.pick(&["Bearer ", "bearer ", "BEARER ", "bEaReR  ", ""]);
                let token = format!("{scheme}{token}");
                headers.insert("Authorization".into(), json!(token));
            }
            2 => {
                headers.insert("Authorization".into(), json!(rng.token()));
            }
            3 if !self.tokens.is_empty() => {
                // A real token, damaged.
                let mut token = rng.pick(&self.tokens).clone().into_bytes();
                let at = rng.below(token.len().max(1));
                if let Some(byte) = token.get_mut(at) {
                    *byte = if *byte == b'A' { b'B' } else { b'A' };
                }
                headers.insert(
                    "Authorization".into(),
                    json!(String::from_utf8_lossy(&token)),
                );
            }
            _ => {}
        }
        if rng.below(8) == 0 {
            // A Host that is no authority at all.
            headers.insert(
                "Host".into(),
                json!(*rng.pick(&[
                    "bad host",
                    "a@b",
                    "[::1",
                    "x:port",
                    "",
                    "ü.example",
                    // The public aws-lambda-rust-runtime sample event's, unfilled.
                    "1234567890.execute-api.{dns_suffix}",
                    "a{b}c",
                    "x|y",
                    "a^b",
                ])),
            );
        }
        if rng.below(4) == 0 {
            let name: String = (0..1 + rng.below(10))
                .map(|_| char::from(b'a' + rng.below(26) as u8))
                .collect();
            headers.insert(format!("x-{name}"), json!(rng.token()));
        }
        let mut query = serde_json::Map::new();
        if rng.below(3) == 0 {
            for _ in 0..=rng.below(4) {
                let name =
                    (*rng.pick(&["start_date", "end_date", "limit", "next", "x"])).to_owned();
                query.insert(name, json!(rng.value_text()));
            }
        }
        let (body, encoded) = self.body(rng);
        let multi = |map: &serde_json::Map<String, Value>| -> Value {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), json!([v]))).collect())
        };
        json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": multi(&headers),
            "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query.clone()) },
            "multiValueQueryStringParameters": if query.is_empty() { Value::Null } else { multi(&query) },
            "pathParameters": { "proxy": path.trim_start_matches('/') },
            "stageVariables": null,
            "requestContext": {
                "resourcePath": "/{proxy+}",
                "httpMethod": method,
                "path": format!("/v1{path}"),
                "stage": "v1",
                "requestId": format!("fuzz-{}", rng.next()),
                "accountId": "123456789012",
                "apiId": "fuzz",
                "protocol": "HTTP/1.1",
                "identity": { "sourceIp": "203.0.113.10" },
            },
            "body": body,
            "isBase64Encoded": encoded,
        })
    }

    fn body(&self, rng: &mut Rng) -> (Value, bool) {
        match rng.below(8) {
            0 | 1 => (Value::Null, false),
            2 | 3 => (json!(rng.json(3).to_string()), false),
            4 => {
                // An object with fields the services read, with values of any type.
                let mut object = serde_json::Map::new();
                for _ in 0..rng.below(5) {
                    let name = (*rng.pick(&[
                        "password",
                        "hardware_model",
                        "firmware_version",
                        "settings_key",
                        "alerts",
                        "sensors",
                        "event_date",
                        "session_status",
                        "start_date",
                        "end_date",
                        "accessory",
                        "gyro_offset",
                        "battery_level",
                        "owner_id",
                    ]))
                    .to_owned();
                    object.insert(name, rng.json(2));
                }
                (json!(Value::Object(object).to_string()), false)
            }
            5 => {
                let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                (
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    true,
                )
            }
            // API Gateway sets isBase64Encoded only on base64 it made itself.
            6 => (json!(rng.token()), false),
            // Deeply nested, and now and then larger than Lambda takes.
            _ => match rng.below(80) {
                0 => (json!(" ".repeat(crate::BODY_LIMIT + 1)), false),
                1..=10 => (json!("[".repeat(rng.below(20_000))), false),
                11..=20 => {
                    let depth = rng.below(5000);
                    (
                        json!(format!("{}1{}", "[".repeat(depth), "]".repeat(depth))),
                        false,
                    )
                }
                _ => (json!("{".repeat(rng.below(2000))), false),
            },
        }
    }
}

/// The contract every response keeps, whatever the request.
fn check(response: &Value, event: &Value) -> Result<(), String> {
    let status = response["statusCode"].as_u64().ok_or("no statusCode")?;
    let header = |name: &str| -> Option<String> {
        response["multiValueHeaders"]
            .as_object()?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.get(0)?.as_str().map(str::to_owned))
    };
    if header("access-control-allow-origin").as_deref() != Some("*") {
        return Err("no CORS header".into());
    }
    let expected = match status {
        200 | 201 => None,
        400 => Some(&["InvalidSchema"][..]),
        401 => Some(&["Unauthorized"][..]),
        403 => Some(&["Forbidden"][..]),
        404 => Some(&["NoSuchEntity", "UnknownEndpoint"][..]),
        405 => Some(&["UnsupportedMethod"][..]),
        409 => Some(&["DuplicateEntity"][..]),
        413 => Some(&["PayloadTooLarge"][..]),
        415 => Some(&["UnsupportedContentType"][..]),
        500 => Some(&["ServerError"][..]),
        other => return Err(format!("{other} is not a status of the contract")),
    };
    let body = response["body"].as_str().unwrap_or_default();
    let Some(names) = expected else {
        // HEAD has no body; a preflight (OPTIONS) answers with headers only; binaries are binary.
        if event["httpMethod"] == "HEAD"
            || event["httpMethod"] == "OPTIONS"
            || header("content-type").as_deref() == Some("application/octet-stream")
        {
            return Ok(());
        }
        serde_json::from_str::<Value>(body)
            .map_err(|e| format!("a success whose body is not JSON ({e})"))?;
        return Ok(());
    };
    let name = header("status").ok_or("an error without a Status header")?;
    if !names.contains(&name.as_str()) {
        return Err(format!("{status} with Status: {name}"));
    }
    if event["httpMethod"] == "HEAD" {
        return Ok(());
    }
    let body: Value =
        serde_json::from_str(body).map_err(|e| format!("an error body that is not JSON ({e})"))?;
    let object = body
        .as_object()
        .ok_or("an error body that is not an object")?;
    let message = object
        .get("message")
        .and_then(Value::as_str)
        .ok_or("an error without a message")?;
    if object.len() != 1 {
        return Err("an error body with more than a message".into());
    }
    const LEAKS: [&str; 8] = [
        "dispatch failure",
        "service error",
        "SqlState",
        "db error",
        "ResourceNotFound",
        "error trying to connect",
        "panicked",
        "Validation",
    ];
    if let Some(leak) = LEAKS.iter().find(|leak| message.contains(*leak)) {
        return Err(format!("an error message leaks internal text ({leak})"));
    }
    Ok(())
}

/// xorshift64*: small, seeded, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Identifier-like text: what a real id or a random word looks like.
    fn identifier(&mut self) -> String {
        match self.below(5) {
            0 => uuid::Uuid::from_u64_pair(self.next(), self.next()).to_string(),
            1 => {
                let groups: Vec<String> = (0..6)
                    .map(|_| format!("{:02X}", self.next() as u8))
                    .collect();
                groups.join(":")
            }
            2 => format!("{}.{}", self.below(20), self.below(20)),
            3 => self.below(1_000_000).to_string(),
            _ => (0..1 + self.below(12))
                .map(|_| char::from(b'a' + self.below(26) as u8))
                .collect(),
        }
    }

    /// Text meant to break things: percent escapes, unicode, dots, very long runs.
    fn token(&mut self) -> String {
        let pieces = [
            "%2F",
            "%00",
            "%25",
            "..",
            ".",
            "ü",
            "☃",
            " ",
            "+",
            "latest",
            "null",
            "-1",
            "1e309",
            "0a:1b:2c:3d:4e:5g",
            "00000000-0000-0000-0000-00000000000g",
            "%",
            "'",
            "\"",
            "\\",
            ";",
        ];
        let mut text = String::new();
        for _ in 0..1 + self.below(4) {
            let piece = self.pick::<&str>(&pieces);
            text.push_str(piece);
        }
        if self.below(20) == 0 {
            text.push_str(&"x".repeat(self.below(5000)));
        }
        text
    }

    fn value_text(&mut self) -> String {
        match self.below(4) {
            0 => "2026-03-01T00:00:00Z".into(),
            1 => self.below(200).to_string(),
            2 => self.identifier(),
            _ => self.token(),
        }
    }

    fn json(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!((self.next() as i64) >> self.below(60)),
            3 => json!(self.below(1000) as f64 / 997.0),
            4 => json!(self.value_text()),
            5 => Value::Array((0..self.below(4)).map(|_| self.json(depth - 1)).collect()),
            _ => Value::Object(
                (0..self.below(4))
                    .map(|_| (self.identifier(), self.json(depth - 1)))
                    .collect(),
            ),
        }
    }
}
