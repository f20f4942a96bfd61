//! A local Lambda Runtime API. It starts a `bootstrap` with the environment Lambda gives one, serves
//! the endpoints the bootstrap polls on 127.0.0.1, hands it events, and times what Lambda would
//! bill: how long the process takes to reach its first `next` poll (cold init), and how long each
//! invocation takes from handing over the event to receiving the response.
//!
//! It knows nothing about HTTP APIs or services: events and responses are bytes. The benchmark
//! (`cargo xtask bench lambda`) and the services' tests build the API Gateway events.

pub mod http;
mod output;
mod server;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::output::Output;
use crate::server::{Job, Report, Server};

/// How often start and invoke look at the process while waiting; the times they report are taken
/// by the server when requests arrive, not at this granularity.
const TICK: Duration = Duration::from_millis(5);

/// A bootstrap to start: the program, and what Lambda's environment holds for it.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    program: PathBuf,
    args: Vec<OsString>,
    /// Where the function's code is (`LAMBDA_TASK_ROOT`, and the working directory); the
    /// program's directory unless an interpreter runs it.
    task_root: Option<PathBuf>,
    env: BTreeMap<String, String>,
    function_name: String,
    memory_mb: u32,
    timeout: Duration,
}

/// A bootstrap that has polled for its first event: warm, waiting for work.
#[derive(Debug)]
pub struct Running {
    /// From just before the process was spawned until its first `next` poll arrived.
    pub cold_init: Duration,
    child: Child,
    server: Server,
    output: Output,
    function_arn: String,
    timeout: Duration,
    invocations: u64,
}

/// One invocation's result, as the bootstrap posted it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub response: Vec<u8>,
    /// From handing the event to the bootstrap until its whole response had arrived.
    pub latency: Duration,
}

/// Why a bootstrap could not be started or invoked. Each carries the end of what the process
/// wrote, which usually says why.
#[derive(Debug)]
pub enum Error {
    /// The harness itself failed (no port, the program does not exist, ...).
    Io {
        doing: String,
        error: std::io::Error,
    },
    /// The process ran, but did not poll for an event within the time allowed.
    NeverPolled { waited: Duration, output: String },
    /// The process exited (before its first poll, or while an invocation was pending).
    Exited { status: ExitStatus, output: String },
    /// The bootstrap reported an initialisation error to `/runtime/init/error`.
    Init { body: String, output: String },
    /// The function reported an error for an invocation to `/runtime/invocation/<id>/error`.
    Function {
        request_id: String,
        error_type: Option<String>,
        body: String,
    },
    /// No response within the time allowed.
    TimedOut {
        request_id: String,
        waited: Duration,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { doing, error } => write!(f, "{doing}: {error}"),
            Error::NeverPolled { waited, output } => write!(
                f,
                "the bootstrap never polled the Runtime API for an event within {waited:?}; \
                 a Lambda bootstrap must GET /2018-06-01/runtime/invocation/next{}",
                tail(output)
            ),
            Error::Exited { status, output } => {
                write!(f, "the bootstrap exited ({status}){}", tail(output))
            }
            Error::Init { body, output } => write!(
                f,
                "the bootstrap reported an initialisation error: {body}{}",
                tail(output)
            ),
            Error::Function {
                request_id,
                error_type,
                body,
            } => write!(
                f,
                "invocation {request_id} failed ({}): {body}",
                error_type.as_deref().unwrap_or("no error type")
            ),
            Error::TimedOut { request_id, waited } => {
                write!(
                    f,
                    "invocation {request_id} had no response within {waited:?}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// What the process wrote before it failed to start, for an error of starting one.
    pub fn output(&self) -> Option<&str> {
        match self {
            Error::NeverPolled { output, .. }
            | Error::Exited { output, .. }
            | Error::Init { output, .. } => Some(output),
            _ => None,
        }
    }

    /// Lambda's name for a failed start, as its `INIT_REPORT` line gives it: the type the
    /// bootstrap reported, `Runtime.ExitError` for one that exited, `Runtime.Unknown` otherwise.
    pub fn init_error_type(&self) -> String {
        match self {
            Error::Init { body, .. } => error_type_of(body).unwrap_or("Runtime.Unknown".into()),
            Error::Exited { .. } => "Runtime.ExitError".into(),
            _ => "Runtime.Unknown".into(),
        }
    }
}

/// The `errorType` of a Runtime API error body (`{"errorType": …, "errorMessage": …}`), read
/// without a JSON parser: the value of the first `"errorType"` string.
fn error_type_of(body: &str) -> Option<String> {
    let after = body.split_once("\"errorType\"")?.1.trim_start();
    let after = after.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let value: String = after.chars().take_while(|c| *c != '"').collect();
    (!value.is_empty() && !value.contains('\\')).then_some(value)
}

fn tail(output: &str) -> String {
    if output.trim().is_empty() {
        "; it wrote nothing".to_owned()
    } else {
        format!("; the end of its output:\n{}", output.trim_end())
    }
}

fn stopped(doing: &str) -> Error {
    Error::Io {
        doing: doing.to_owned(),
        error: std::io::Error::other("the server stopped"),
    }
}

fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let doing = doing.into();
    move |error| Error::Io { doing, error }
}

impl Bootstrap {
    /// `program`, run the way Lambda runs a `provided` runtime's `bootstrap`: no arguments, an
    /// environment of Lambda's variables only, in the directory that holds it.
    pub fn new(program: impl Into<PathBuf>) -> Bootstrap {
        let program = program.into();
        let function_name = program
            .file_name()
            .map_or_else(|| "function".into(), |n| n.to_string_lossy().into_owned());
        Bootstrap {
            program,
            args: Vec::new(),
            task_root: None,
            env: BTreeMap::new(),
            function_name,
            memory_mb: 128,
            timeout: Duration::from_secs(30),
        }
    }

    /// An argument; a real bootstrap takes none, a test's interpreter does.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Bootstrap {
        self.args.push(arg.into());
        self
    }

    /// The directory of the function's code, when the program is an interpreter (an emulator)
    /// that runs it.
    pub fn task_root(mut self, dir: impl Into<PathBuf>) -> Bootstrap {
        self.task_root = Some(dir.into());
        self
    }

    /// The directory of the function's code.
    fn code_dir(&self) -> &Path {
        self.task_root
            .as_deref()
            .unwrap_or_else(|| self.program.parent().unwrap_or(Path::new(".")))
    }

    /// A variable of the function's configuration; it overrides Lambda's own of the same name.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Bootstrap {
        self.env.insert(name.into(), value.into());
        self
    }

    pub fn function_name(mut self, name: impl Into<String>) -> Bootstrap {
        self.function_name = name.into();
        self
    }

    pub fn memory_mb(mut self, memory_mb: u32) -> Bootstrap {
        self.memory_mb = memory_mb;
        self
    }

    /// The function's timeout: it sets each event's deadline header.
    pub fn timeout(mut self, timeout: Duration) -> Bootstrap {
        self.timeout = timeout;
        self
    }

    /// The environment Lambda gives a function, then the function's own variables.
    fn environment(&self, runtime_api: &str) -> BTreeMap<String, String> {
        let task_root = self.code_dir().to_string_lossy().into_owned();
        let name = &self.function_name;
        let mut env: BTreeMap<String, String> = [
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "local/[$LATEST]harness".to_owned(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
            ("AWS_REGION", "us-west-2".to_owned()),
            ("AWS_DEFAULT_REGION", "us-west-2".to_owned()),
            ("LAMBDA_TASK_ROOT", task_root.clone()),
            ("LAMBDA_RUNTIME_DIR", task_root),
            ("_HANDLER", "bootstrap".to_owned()),
            ("TZ", ":UTC".to_owned()),
            ("LANG", "en_US.UTF-8".to_owned()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.env.clone());
        env
    }

    /// Starts the process and waits, up to `within`, for its first `next` poll. A process that
    /// exits, reports an init error or never polls is killed and refused.
    pub fn start(&self, within: Duration) -> Result<Running, Error> {
        let server = Server::start().map_err(io("starting the Runtime API on 127.0.0.1"))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(self.environment(&server.addr.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let dir = self.code_dir();
        if dir.is_dir() {
            command.current_dir(dir);
        }
        let exec = Instant::now();
        let mut child = command
            .spawn()
            .map_err(io(format!("starting {}", self.program.display())))?;
        let output = Output::capture(&mut child);
        let mut running = Running {
            cold_init: Duration::ZERO,
            child,
            server,
            output,
            function_arn: format!(
                "arn:aws:lambda:us-west-2:000000000000:function:{}",
                self.function_name
            ),
            timeout: self.timeout,
            invocations: 0,
        };
        loop {
            match running.next_report()? {
                Some(Report::Polled { at }) => {
                    running.cold_init = at.duration_since(exec);
                    return Ok(running);
                }
                Some(Report::InitError { body }) => {
                    running.stop();
                    return Err(Error::Init {
                        body,
                        output: running.output.text(),
                    });
                }
                Some(_) | None => {}
            }
            if exec.elapsed() > within {
                running.stop();
                return Err(Error::NeverPolled {
                    waited: within,
                    output: running.output.text(),
                });
            }
        }
    }
}

/// A request id as Lambda's look (a UUID), unique across instances and runs: the instance's
/// process id, the time of day's nanoseconds, and the invocation's number.
fn request_id(process: u32, invocation: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{process:08x}-{:04x}-4{:03x}-8000-{invocation:012x}",
        nanos >> 16,
        nanos & 0xfff
    )
}

impl Running {
    /// Hands `event` to the bootstrap and waits, up to `within`, for its response.
    pub fn invoke(&mut self, event: &[u8], within: Duration) -> Result<Invocation, Error> {
        self.invocations += 1;
        let request_id = request_id(self.child.id(), self.invocations);
        let deadline = std::time::SystemTime::now() + self.timeout;
        let job = Job {
            request_id: request_id.clone(),
            event: event.to_vec(),
            deadline_ms: deadline
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            function_arn: self.function_arn.clone(),
        };
        if self.server.jobs.send(job).is_err() {
            return Err(stopped("handing over an event"));
        }
        let asked = Instant::now();
        let mut delivered = None;
        loop {
            match self.next_report()? {
                Some(Report::Delivered { request_id: id, at }) if id == request_id => {
                    delivered = Some(at);
                }
                Some(Report::Responded {
                    request_id: id,
                    body,
                    at,
                }) if id == request_id => {
                    let sent = delivered.unwrap_or(asked);
                    return Ok(Invocation {
                        request_id,
                        response: body,
                        latency: at.saturating_duration_since(sent),
                    });
                }
                Some(Report::Errored {
                    request_id: id,
                    error_type,
                    body,
                }) if id == request_id => {
                    return Err(Error::Function {
                        request_id,
                        error_type,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
                Some(_) | None => {}
            }
            if asked.elapsed() > within {
                return Err(Error::TimedOut {
                    request_id,
                    waited: within,
                });
            }
        }
    }

    /// The server's next report, waiting at most one tick; with none, an error when the process
    /// has exited or the server has stopped. A report is always handed over first.
    fn next_report(&mut self) -> Result<Option<Report>, Error> {
        match self.server.reports.recv_timeout(TICK) {
            Ok(report) => Ok(Some(report)),
            Err(RecvTimeoutError::Disconnected) => Err(stopped("serving the Runtime API")),
            Err(RecvTimeoutError::Timeout) => match self.exited() {
                Some(status) => Err(Error::Exited {
                    status,
                    output: self.output.text(),
                }),
                None => Ok(None),
            },
        }
    }

    /// The process's peak resident set size so far, in bytes (Linux's `VmHWM`).
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of what the process has written to stdout and stderr, for an error message (it
    /// waits a moment for the last lines of a process that just exited).
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Every line the process has written since the last call (the oldest dropped past 10 000),
    /// without waiting: a line written just before a response may come with the next call.
    pub fn take_output(&self) -> Vec<String> {
        self.output.take()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// True while the process runs: an instance that died while idle is not handed a request.
    pub fn is_alive(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Stops the process now (dropping it does too).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
