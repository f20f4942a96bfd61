//! The preprocessing API: an accessory records a session, uploads its raw sensor data, and the
//! pipeline moves the session forward until it is processed; users see their sessions by status.
//!
//! [`router`] is the whole API; `main.rs` only reads the configuration, builds the clients once
//! and serves the router on Lambda or locally.

mod owner;
mod session;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use kit::{AuthConfig, ConfigError, Env, SecretArn, SecretStore, Verifier};

pub use owner::Owners;
pub use session::{SessionStatus, Sessions, USER_INDEX};

#[derive(Debug, Clone)]
pub struct Config {
    /// DynamoDB table of sessions: key `id`; index `user_id-event_date`.
    pub sessions_table: String,
    /// S3 bucket of uploaded raw data, one object `<session id>_<epoch ms>` per upload.
    pub ingest_bucket: String,
    /// The hardware API, with its version prefix (`https://hardware.dev.example.com/v1`).
    pub hardware_url: String,
    pub auth: AuthConfig,
    /// The secret whose value signs the tokens this service calls the hardware API with: the
    /// service-token secret.
    pub signer: SecretArn,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let auth = AuthConfig::from_env(env, "preprocessing")?;
        let signer = auth
            .service_secret
            .clone()
            .ok_or_else(|| ConfigError::Missing {
                name: "SERVICE_TOKEN_SECRET_ARN".into(),
                hint:
                    "preprocessing signs service tokens to look accessories up in the hardware API"
                        .into(),
            })?;
        Ok(Config {
            sessions_table: env.required("SESSIONS_TABLE", "the DynamoDB table of sessions")?,
            ingest_bucket: env
                .required("INGEST_BUCKET", "the S3 bucket of uploaded sensor data")?,
            hardware_url: env.required(
                "HARDWARE_API_URL",
                "the hardware API's base URL, with its /v1 prefix",
            )?,
            auth,
            signer,
        })
    }
}

/// Everything a request handler needs, built once per cold start (nothing connects until used).
#[derive(Debug, Clone)]
pub struct Preprocessing {
    sessions: Arc<Sessions>,
    owners: Arc<Owners>,
    verifier: Arc<Verifier>,
}

impl Preprocessing {
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Preprocessing {
        let secrets = SecretStore::new(sdk);
        let issuer = config.auth.service_issuer.clone();
        Preprocessing {
            sessions: Arc::new(Sessions::new(
                sdk,
                config.sessions_table,
                config.ingest_bucket,
            )),
            owners: Arc::new(Owners::new(
                config.hardware_url,
                secrets.secret(config.signer),
                issuer,
            )),
            verifier: Arc::new(Verifier::new(config.auth, &secrets)),
        }
    }
}

/// Every route of the API, relative to `/v1` and `/preprocessing`.
pub fn routes() -> kit::Routes<Preprocessing> {
    kit::Routes::new()
        .route("/session", post(session::create))
        .route("/session/{id}", get(session::get).patch(session::patch))
        .route("/session/{id}/upload", post(session::upload))
        .route("/status", post(status::list))
}

/// The complete API, under both `/v1` and `/preprocessing`.
pub fn router(preprocessing: Preprocessing) -> Router {
    let verifier = Arc::clone(&preprocessing.verifier);
    kit::app(
        "preprocessing",
        routes().with_state(preprocessing),
        verifier,
    )
}
