//! The legacy PostgreSQL database (feature `postgres`): one connection per process, opened on the
//! first request that needs it and reopened after it drops, and the schema's migrations.
//!
//! A Lambda container serves one request at a time, so one connection, behind a mutex, is all a
//! function needs; it also lets a handler hold it for a transaction.

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls};

use crate::ApiError;

/// The database's migrations, in order; each runs once, in a transaction.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_legacy_schema",
    include_str!("../migrations/0001_legacy_schema.sql"),
)];

/// A lazily opened connection to the database at a URL (`postgres://user@host:port/db`).
pub struct Database {
    url: String,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL can carry a password.
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Cheap: nothing connects until [`Database::connection`] is called.
    pub fn new(url: String) -> Database {
        Database {
            url,
            client: Mutex::new(None),
        }
    }

    /// The connection, opened (or reopened) if needed; a failure is a logged 500.
    pub async fn connection(&self) -> Result<MappedMutexGuard<'_, Client>, ApiError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .map_err(ApiError::internal)?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "the PostgreSQL connection closed");
                }
            });
            *guard = Some(client);
        }
        Ok(MutexGuard::map(guard, |client| {
            client.as_mut().expect("connected just above")
        }))
    }
}

/// Applies the migrations `client`'s database has not had yet, under an advisory lock so that two
/// processes never apply one twice.
pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "SELECT pg_advisory_lock(7263849);
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let result = async {
        for (name, sql) in MIGRATIONS {
            let applied = client
                .query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[name])
                .await?
                .is_some();
            if applied {
                continue;
            }
            let transaction = client.transaction().await?;
            transaction.batch_execute(sql).await?;
            transaction
                .execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
                .await?;
            transaction.commit().await?;
        }
        Ok(())
    }
    .await;
    client
        .batch_execute("SELECT pg_advisory_unlock(7263849)")
        .await?;
    result
}
