//! The users API: who a user is, for the apps and for other services.
//!
//! [`router`] is the whole API; `main.rs` only reads the configuration and serves it.

mod user;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use kit::db::Database;
use kit::{AuthConfig, ConfigError, Env, Verifier};

#[derive(Debug, Clone)]
pub struct Config {
    /// The secret holding the legacy database's URL, `postgres://…`.
    pub database: kit::SecretArn,
    pub auth: AuthConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        Ok(Config {
            database: env.required_parsed(
                "DATABASE_SECRET_ARN",
                "the secret holding the URL of the legacy PostgreSQL database",
            )?,
            auth: AuthConfig::from_env(env, "users")?,
        })
    }
}

/// Everything a request handler needs, built once per cold start (nothing connects until used).
#[derive(Debug, Clone)]
pub struct Users {
    database: Arc<Database>,
    verifier: Arc<Verifier>,
}

impl Users {
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Users {
        let secrets = kit::SecretStore::new(sdk);
        Users {
            database: Arc::new(Database::new(&secrets, config.database)),
            verifier: Arc::new(Verifier::new(config.auth, &secrets)),
        }
    }
}

/// Every route of the API, relative to `/v1` and `/users`.
pub fn routes() -> kit::Routes<Users> {
    kit::Routes::new().route("/user/{user_id}", get(user::get))
}

/// The complete API, under both `/v1` and `/users`.
pub fn router(users: Users) -> Router {
    let verifier = Arc::clone(&users.verifier);
    kit::app("users", routes().with_state(users), verifier)
}
