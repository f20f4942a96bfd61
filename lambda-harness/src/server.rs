//! The Runtime API endpoints, served on 127.0.0.1 on a port of the system's choosing: one thread
//! accepts, one thread per connection answers. Every request is reported, with the instant it
//! arrived, to the [`crate::Running`] that owns the server.

use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::http::{Limits, Request, read_request, write_response};

const PREFIX: &str = "/2018-06-01/runtime";

/// An event waiting for the bootstrap's next poll.
#[derive(Debug)]
pub struct Job {
    pub request_id: String,
    pub event: Vec<u8>,
    pub deadline_ms: u128,
    pub function_arn: String,
}

/// What the bootstrap did, and when.
#[derive(Debug)]
pub enum Report {
    Polled {
        at: Instant,
    },
    Delivered {
        request_id: String,
        at: Instant,
    },
    Responded {
        request_id: String,
        body: Vec<u8>,
        at: Instant,
    },
    Errored {
        request_id: String,
        error_type: Option<String>,
        body: Vec<u8>,
    },
    InitError {
        body: String,
    },
}

#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub jobs: Sender<Job>,
    pub reports: Receiver<Report>,
    stopping: Arc<AtomicBool>,
}

impl Server {
    pub fn start() -> std::io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let (report, reports) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (queue, report) = (Arc::clone(&queue), report.clone());
                std::thread::spawn(move || serve(stream, &queue, &report));
            }
        });
        Ok(Server {
            addr,
            jobs,
            reports,
            stopping,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Wake the accepting thread so that it sees the flag and ends.
        self.stopping.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers one connection's requests until the peer closes it or the server stops.
fn serve(stream: TcpStream, queue: &Mutex<Receiver<Job>>, report: &Sender<Report>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Ok(Some(request)) = read_request(&mut reader, Limits::RUNTIME_API) {
        let at = Instant::now();
        let answered = match route(&request) {
            Route::Next => {
                if report.send(Report::Polled { at }).is_err() {
                    return;
                }
                // One connection at a time waits for the next event; the others wait for it.
                let job = match queue.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let deadline = job.deadline_ms.to_string();
                let headers = [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", job.request_id.as_str()),
                    ("Lambda-Runtime-Deadline-Ms", deadline.as_str()),
                    ("Lambda-Runtime-Invoked-Function-Arn", &job.function_arn),
                    (
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-00000000-000000000000000000000000;Sampled=0",
                    ),
                ];
                let at = Instant::now();
                let written = write_response(&mut writer, "200 OK", &headers, &job.event);
                let _ = report.send(Report::Delivered {
                    request_id: job.request_id,
                    at,
                });
                written
            }
            Route::Response(request_id) => {
                let _ = report.send(Report::Responded {
                    request_id,
                    body: request.body,
                    at,
                });
                accepted(&mut writer)
            }
            Route::Error(request_id) => {
                let _ = report.send(Report::Errored {
                    request_id,
                    error_type: request
                        .header("lambda-runtime-function-error-type")
                        .map(str::to_owned),
                    body: request.body,
                });
                accepted(&mut writer)
            }
            Route::InitError => {
                let _ = report.send(Report::InitError {
                    body: String::from_utf8_lossy(&request.body).into_owned(),
                });
                accepted(&mut writer)
            }
            Route::Unknown => write_response(
                &mut writer,
                "404 Not Found",
                &[("Content-Type", "application/json")],
                br#"{"errorMessage":"not a Runtime API endpoint","errorType":"InvalidRequest"}"#,
            ),
        };
        if answered.is_err() {
            return;
        }
    }
}

fn accepted(writer: &mut TcpStream) -> std::io::Result<()> {
    write_response(
        writer,
        "202 Accepted",
        &[("Content-Type", "application/json")],
        br#"{"status":"OK"}"#,
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Next,
    Response(String),
    Error(String),
    InitError,
    Unknown,
}

fn route(request: &Request) -> Route {
    let Some(path) = request.path.strip_prefix(PREFIX) else {
        return Route::Unknown;
    };
    match (request.method.as_str(), path) {
        ("GET", "/invocation/next") => Route::Next,
        ("POST", "/init/error") => Route::InitError,
        ("POST", path) => {
            let Some(rest) = path.strip_prefix("/invocation/") else {
                return Route::Unknown;
            };
            match rest.split_once('/') {
                Some((id, "response")) if !id.is_empty() => Route::Response(id.to_owned()),
                Some((id, "error")) if !id.is_empty() => Route::Error(id.to_owned()),
                _ => Route::Unknown,
            }
        }
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn routes_the_runtime_api_endpoints() {
        let cases = [
            ("GET", "/2018-06-01/runtime/invocation/next", Route::Next),
            (
                "POST",
                "/2018-06-01/runtime/invocation/abc/response",
                Route::Response("abc".into()),
            ),
            (
                "POST",
                "/2018-06-01/runtime/invocation/abc/error",
                Route::Error("abc".into()),
            ),
            ("POST", "/2018-06-01/runtime/init/error", Route::InitError),
            (
                "POST",
                "/2018-06-01/runtime/invocation/next",
                Route::Unknown,
            ),
            (
                "POST",
                "/2018-06-01/runtime/invocation//response",
                Route::Unknown,
            ),
            (
                "GET",
                "/2018-06-01/runtime/invocation/abc/response",
                Route::Unknown,
            ),
            ("GET", "/2020-01-01/extension/event/next", Route::Unknown),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(&request(method, path)), expected, "{method} {path}");
        }
    }
}
