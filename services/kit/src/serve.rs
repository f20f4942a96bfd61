//! Serving a router: on Lambda through `lambda_http`, or locally as a plain HTTP server.
//! Both run the very same `Router`; only the transport differs.

use std::net::SocketAddr;

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{LambdaEvent, Service};
use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, Env};

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

/// Logs: one JSON object per line in Lambda, readable lines locally; `RUST_LOG` filters.
pub fn init_tracing(mode: &Mode, env: &Env) {
    let filter = env
        .optional("RUST_LOG")
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match mode {
        Mode::Lambda => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .init(),
        Mode::Local { .. } => builder
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// The Lambda handler: API Gateway event in, API Gateway response out, through `router`.
///
/// `lambda_http::run`, which [`run`] calls, wraps the router in this same adapter, so tests that
/// feed recorded events through it exercise the production conversion.
pub fn lambda_handler(
    router: Router,
) -> impl Service<
    LambdaEvent<LambdaRequest>,
    Response = impl serde::Serialize + Send,
    Error = std::convert::Infallible,
> {
    lambda_http::Adapter::from(router)
}

/// Serves `router` until the process is stopped.
pub async fn run(router: Router, mode: Mode) -> Result<(), lambda_http::Error> {
    match mode {
        Mode::Lambda => lambda_http::run(router).await,
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
/// instance-metadata providers, and the web-identity one creates an STS client, which loads and
/// parses the system's root certificates: milliseconds of every cold start, for nothing.
/// Locally, the default chain applies (profiles, `aws sso login`, the emulator's variables).
pub async fn aws_config(mode: &Mode) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
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
