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
    /// The legacy database, `postgres://…`.
    pub database_url: kit::db::DatabaseUrl,
    pub auth: AuthConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        Ok(Config {
            database_url: env.required_parsed("DATABASE_URL", "the legacy PostgreSQL database")?,
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
    pub fn new(config: Config) -> Users {
        Users {
            database: Arc::new(Database::new(config.database_url)),
            verifier: Arc::new(Verifier::new(config.auth)),
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
