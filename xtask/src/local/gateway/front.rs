//! The gateway's HTTP side: each connection's requests read within API Gateway's limits, made REST
//! proxy events for the function's instances, and their answers (or the gateway's own errors, in
//! the contract's shape) written back.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lambda_harness::http::{Limits, read_request, too_large, write_response};

use super::Instances;
use gate::event::{self, Answer, Stage};

pub(super) fn bad_gateway() -> Answer {
    gateway_error(502, "Internal server error")
}

pub(super) fn gateway_timeout() -> Answer {
    gateway_error(504, "Endpoint request timed out")
}

/// An answer of the gateway's own, in the contract's shape: `{"message"}` with the CORS headers
/// every response carries (the API's gateway responses add them in AWS, `apigateway.yaml`).
fn gateway_error(status: u16, message: &str) -> Answer {
    Answer {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("access-control-allow-origin".into(), "*".into()),
            (
                "access-control-allow-methods".into(),
                "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT".into(),
            ),
            (
                "access-control-allow-headers".into(),
                "Content-Type,Authorization,X-Amz-Date,X-Api-Key,X-Amz-Security-Token".into(),
            ),
        ],
        body: serde_json::json!({ "message": message })
            .to_string()
            .into_bytes(),
    }
}

/// Serves `listener` until the process stops: each connection on a thread of its own, each
/// request an event for `instances`.
pub fn serve(listener: TcpListener, stage: Stage, instances: Arc<Instances>) {
    let stage = Arc::new(stage);
    for stream in listener.incoming().flatten() {
        let (stage, instances) = (Arc::clone(&stage), Arc::clone(&instances));
        std::thread::spawn(move || connection(stream, &stage, &instances));
    }
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

fn connection(stream: TcpStream, stage: &Stage, instances: &Instances) {
    let source_ip = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut writer = writer;
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader, Limits::API_GATEWAY) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            // Too large for API Gateway and Lambda: refused before the function sees it, and the
            // connection closed, since the rest of the request is not read.
            Err(error) => {
                if let Some(refused) = too_large(&error) {
                    let answer = gateway_error(refused.status, "Request too large");
                    let _ = send(&mut writer, &answer, &[("connection", "close")]);
                }
                return;
            }
        };
        let request_id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            REQUESTS.fetch_add(1, Ordering::Relaxed)
        );
        let answer = match event::event(&request, stage, &request_id, &source_ip) {
            Ok(event) => match serde_json::to_vec(&event) {
                Ok(bytes) => instances.invoke(&bytes),
                Err(_) => bad_gateway(),
            },
            Err(error) => gateway_error(400, &error),
        };
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let mut extra = vec![("x-amzn-requestid", request_id.as_str())];
        if close {
            extra.push(("connection", "close"));
        }
        if send(&mut writer, &answer, &extra).is_err() || close {
            return;
        }
    }
}

/// Writes `answer` with its own headers (but its length, which is written anew) and `extra`.
fn send(writer: &mut impl Write, answer: &Answer, extra: &[(&str, &str)]) -> std::io::Result<()> {
    let status = format!("{} {}", answer.status, reason(answer.status));
    let headers: Vec<(&str, &str)> = answer
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(extra.iter().copied())
        .collect();
    write_response(writer, &status, &headers, &answer.body)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "",
    }
}
