//! Serving a router: on Lambda through `lambda_http`, or locally as a plain HTTP server.
//! Both run the very same `Router`; only the transport differs.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt as _;
use lambda_http::tower::util::MapRequest;
use lambda_http::{LambdaEvent, Service};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{ConfigError, Env};
use crate::error::ErrorChain;

/// Whatever stopped a service: a start-up error (a missing variable, say) or the runtime's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The end of a service's `main`: success exits 0; an error is printed to stderr as a sentence
/// with its causes (never as debug output) and exits 1. In Lambda (`env` names the Runtime API),
/// the error is first reported to `/runtime/init/error`, as Lambda asks of a runtime that cannot
/// start: the invocation waiting on it fails at once with the reason (`Runtime.ConfigError`),
/// instead of a bare `Runtime.ExitError`. The printed line is what CloudWatch shows.
pub fn exit(env: &Env, result: Result<(), BoxError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{}", ErrorChain(error.as_ref()));
            eprintln!("error: {message}");
            if let Some(api) = env.optional("AWS_LAMBDA_RUNTIME_API") {
                report_init_error(&api, &message);
            }
            ExitCode::FAILURE
        }
    }
}

/// Posts `message` to the Runtime API at `api` (`host:port`) as this instance's init error; a
/// failure to tell it is only printed, since the process exits either way.
fn report_init_error(api: &str, message: &str) {
    use std::io::{Read as _, Write as _};
    let body = serde_json::json!({ "errorMessage": message, "errorType": "Runtime.ConfigError" })
        .to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\n\
         Lambda-Runtime-Function-Error-Type: Runtime.ConfigError\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = std::net::TcpStream::connect(api).and_then(|mut stream| {
        stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        stream.write_all(request.as_bytes())?;
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer)
    });
    if let Err(error) = sent {
        eprintln!("error: the Runtime API at {api} was not told of it: {error}");
    }
}

/// How the process was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Inside Lambda: poll the Runtime API named by `AWS_LAMBDA_RUNTIME_API`.
    Lambda,
    /// On a developer's machine: listen on `addr` (`LISTEN_ADDR`, default 127.0.0.1:3000).
    Local { addr: SocketAddr },
}

impl Mode {
    pub fn from_env(env: &Env) -> Result<Mode, ConfigError> {
        if env.optional("AWS_LAMBDA_RUNTIME_API").is_some() {
            return Ok(Mode::Lambda);
        }
        let addr = env
            .optional_parsed("LISTEN_ADDR")?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
        Ok(Mode::Local { addr })
    }
}

/// Logs: one JSON object per line in Lambda, readable lines locally.
///
/// `RUST_LOG` filters by level and target (`info`, `warn,kit=debug`); span and field directives
/// are not supported. The filter is `Targets`, not `EnvFilter`, whose regular expressions cost
/// every zip the regex engine and its Unicode tables.
pub fn init_tracing(mode: &Mode, env: &Env) {
    let filter = env
        .optional("RUST_LOG")
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let builder = tracing_subscriber::fmt();
    match mode {
        Mode::Lambda => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .finish()
            .with(filter)
            .init(),
        Mode::Local { .. } => builder
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(filter)
            .init(),
    }
}

/// The Lambda handler: API Gateway event in, API Gateway response out, through `router`.
///
/// [`run`] serves exactly this, so tests that feed recorded events through it exercise the
/// production conversion. Before `lambda_http` turns the event into a request, [`as_sent`] makes
/// the event's path and `Host` safe to build a URI from.
pub fn lambda_handler(
    router: Router,
) -> impl Service<
    LambdaEvent<LambdaRequest>,
    Response = impl serde::Serialize + Send,
    Error = std::convert::Infallible,
> {
    handler(router)
}

/// What Lambda runs: the router behind `lambda_http`'s adapter, each event made [`as_sent`] first.
type Handler = MapRequest<
    lambda_http::Adapter<'static, axum::response::Response, Router>,
    fn(LambdaEvent<LambdaRequest>) -> LambdaEvent<LambdaRequest>,
>;

fn handler(router: Router) -> Handler {
    fn prepare(mut event: LambdaEvent<LambdaRequest>) -> LambdaEvent<LambdaRequest> {
        as_sent(&mut event.payload);
        event
    }
    lambda_http::Adapter::from(router).map_request(prepare as fn(_) -> _)
}

/// The request as the client sent it, whatever the event holds:
/// - the path API Gateway hands over is decoded, so a `?`, `#` or `%` in it is part of the path, not
///   the start of a query, a fragment or an escape; they are escaped again, and such a path is
///   routed as the literal text it is (usually to a 404), as the local server routes it;
/// - `lambda_http` builds the request's URI from `X-Forwarded-Proto`, `Host` (or the domain name)
///   and the path, and fails (an invocation error, which API Gateway turns into a bare 502) when
///   they make no URL. Nothing routes on them, so whichever would break it is dropped.
pub fn as_sent(request: &mut LambdaRequest) {
    let LambdaRequest::ApiGatewayV1(event) = request else {
        return;
    };
    let path = event.path.as_deref().unwrap_or_default();
    let path = escape_path(path);
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let proto = http::HeaderName::from_static("x-forwarded-proto");
    let scheme = event
        .headers
        .get(&proto)
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    if scheme
        .as_deref()
        .is_some_and(|scheme| !matches!(scheme, "http" | "https"))
    {
        event.headers.remove(&proto);
        event.multi_value_headers.remove(&proto);
    }
    // Built as `lambda_http` builds it: a URL first, then that URL's text as an `http::Uri`, which
    // refuses more than the URL parser does (`{`, `}`, `|` or `^` in a host).
    let builds = |host: &str| {
        url::Url::parse(&format!("https://{host}{path}"))
            .is_ok_and(|url| url.as_str().parse::<http::Uri>().is_ok())
    };
    let host_builds = event
        .headers
        .get(http::header::HOST)
        .is_none_or(|host| host.to_str().is_ok_and(builds));
    if !host_builds {
        event.headers.remove(http::header::HOST);
        event.multi_value_headers.remove(http::header::HOST);
    }
    if event
        .request_context
        .domain_name
        .as_deref()
        .is_some_and(|name| !builds(name))
    {
        event.request_context.domain_name = None;
    }
    event.path = Some(path);
}

/// `%`, `?` and `#` percent-encoded: the characters a decoded path may hold that a URI path may not.
fn escape_path(path: &str) -> String {
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3F"),
            '#' => escaped.push_str("%23"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Serves `router` until the process is stopped.
pub async fn run(router: Router, mode: Mode) -> Result<(), lambda_http::Error> {
    match mode {
        Mode::Lambda => lambda_http::lambda_runtime::run(handler(router)).await,
        Mode::Local { addr } => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!("listening on http://{}", listener.local_addr()?);
            axum::serve(listener, router).await?;
            Ok(())
        }
    }
}

/// The AWS configuration a service's clients share.
///
/// In Lambda, credentials and region always come from the variables Lambda sets, so only those
/// providers are used. The default chain would also build its profile, SSO, web-identity and
/// instance-metadata providers, and the web-identity one creates an STS client: work at every cold
/// start, for nothing.
/// Locally, the default chain applies (profiles, `aws sso login`, the emulator's variables).
pub async fn aws_config(mode: &Mode) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(crate::tls::sdk_http_client());
    match mode {
        Mode::Lambda => {
            loader
                .credentials_provider(
                    aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
                )
                .region(aws_config::environment::EnvironmentVariableRegionProvider::new())
                .load()
                .await
        }
        Mode::Local { .. } => loader.load().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_characters_a_decoded_path_may_hold_are_escaped_again() {
        assert_eq!(escape_path("/v1/misc/time?x#y"), "/v1/misc/time%3Fx%23y");
        assert_eq!(escape_path("/v1/a/50%"), "/v1/a/50%25");
        assert_eq!(escape_path("/v1/accessory/0a:1b"), "/v1/accessory/0a:1b");
    }
}

#[cfg(test)]
mod init_error_tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};

    use super::*;

    #[test]
    fn a_start_up_error_in_lambda_is_reported_to_the_runtime_api_before_the_exit() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = listener.local_addr().unwrap().to_string();
        let runtime = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            (&stream)
                .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            (head, String::from_utf8(body).unwrap())
        });
        let env = Env::from_iter([("AWS_LAMBDA_RUNTIME_API", api.as_str())]);
        let missing: BoxError = "missing environment variable FIRMWARE_TABLE: the table".into();
        assert_eq!(exit(&env, Err(missing)), ExitCode::FAILURE);
        let (head, body) = runtime.join().unwrap();
        assert!(
            head.starts_with("POST /2018-06-01/runtime/init/error HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.contains("Lambda-Runtime-Function-Error-Type: Runtime.ConfigError"),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body["errorMessage"],
            "missing environment variable FIRMWARE_TABLE: the table"
        );
        assert_eq!(body["errorType"], "Runtime.ConfigError");
    }
}
