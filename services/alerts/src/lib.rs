//! The alerts API: the processing pipeline stores alerts about users; the apps read them.
//!
//! [`router`] is the whole API; `main.rs` only reads the configuration, builds the client once and
//! serves the router on Lambda or locally.

mod handlers;
mod store;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use kit::{AuthConfig, ConfigError, Env, Verifier};

pub use store::{AlertStore, retry_unprocessed};

#[derive(Debug, Clone)]
pub struct Config {
    /// DynamoDB table of alerts: partition key `user_id`, sort key `event_key`
    /// (`<event_date>#<alert_id>`).
    pub alerts_table: String,
    pub auth: AuthConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        Ok(Config {
            alerts_table: env.required("ALERTS_TABLE", "the DynamoDB table of alerts")?,
            auth: AuthConfig::from_env(env, "alerts")?,
        })
    }
}

/// Everything a request handler needs, built once per cold start.
#[derive(Debug, Clone)]
pub struct Alerts {
    store: Arc<AlertStore>,
    verifier: Arc<Verifier>,
}

impl Alerts {
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Alerts {
        Alerts {
            store: Arc::new(AlertStore::new(sdk, config.alerts_table)),
            verifier: Arc::new(Verifier::new(config.auth, &kit::SecretStore::new(sdk))),
        }
    }
}

/// Every route of the API, relative to `/v1` and `/alerts`.
pub fn routes() -> kit::Routes<Alerts> {
    kit::Routes::new()
        .route("/alerts", post(handlers::store))
        .route("/alerts/{user_id}", get(handlers::list))
}

/// The complete API, under both `/v1` and `/alerts`.
pub fn router(alerts: Alerts) -> Router {
    let verifier = Arc::clone(&alerts.verifier);
    kit::app("alerts", routes().with_state(alerts), verifier)
}
