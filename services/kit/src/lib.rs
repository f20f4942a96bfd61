//! The service kit: what every biometrix HTTP API shares, and nothing else.
//!
//! A service builds its routes, hands them to [`app`], and serves the result with [`run`], on
//! Lambda or locally. Handlers fail with [`ApiError`], which renders the contract's error body and
//! `Status` header; they take [`Json`] and [`Path`] for inputs and [`Principal`] for the caller.

mod app;
mod auth;
mod config;
#[cfg(feature = "postgres")]
pub mod db;
mod error;
mod extract;
mod lazy;
mod secrets;
mod serve;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod types;

pub use app::{BODY_LIMIT, REQUEST_ID_HEADER, Routes, app};
pub use auth::{
    AuthConfig, IssuerConfig, IssuerKind, LONGEST_FAILURE_BACKOFF, Principal, ServiceSecret,
    Verifier,
};
pub use config::{ConfigError, Env};
pub use error::{ApiError, STATUS_HEADER};
pub use extract::{Body, Json, Path, Query, parse_json};
pub use lazy::Lazy;
pub use secrets::{SECRET_TTL, Secret, SecretArn, SecretStore, Versions};
pub use serve::{BoxError, Mode, aws_config, exit, init_tracing, lambda_handler, run};
/// An S3 client; path-style addressing when a custom endpoint (the local emulator) is set, since
/// that has no per-bucket host names.
#[cfg(feature = "s3")]
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

pub use types::{Datetime, InvalidDatetime, InvalidLabel, InvalidMacAddress, Label, MacAddress};
