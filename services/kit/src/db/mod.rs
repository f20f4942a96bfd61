//! The legacy PostgreSQL database (feature `postgres`): one connection per process, opened on the
//! first request that needs it and reopened after it drops, and the schema's migrations.
//!
//! A Lambda container serves one request at a time, so one connection, behind a mutex, is all a
//! function needs; it also lets a handler hold it for a transaction.
//!
//! The URL is a secret's value ([`crate::secrets`]), read when a connection opens: after a rotation,
//! the next connection uses the new password, and a connection that fails has the secret read
//! again. The value is a URL (`postgres://user:password@host:5432/db`), or the JSON object that
//! RDS and its rotation functions keep (`username`, `password`, `host`, `port`, `dbname`), which
//! may carry `sslmode` and `sslrootcert` as the URL's parameters.
//!
//! TLS follows libpq's URL parameters: `sslmode=verify-full` with `sslrootcert=<PEM file>` verifies
//! the server's certificate against that CA and its name against the URL's host (rustls). The modes
//! that encrypt without verifying (`require`, `prefer`, `allow`) are refused: they protect against
//! nobody who can intercept the traffic. TLS fails closed: a URL (or RDS secret, which usually has
//! no `sslmode`) for any host but this machine's loopback or a Unix socket is refused unless it
//! says how: `verify-full`, or `sslmode=disable` written out to accept plaintext. Without
//! `sslmode`, only the local database (the tests', `serve`'s) is reached in plaintext.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use crate::ApiError;
use crate::secrets::{Secret, SecretArn, SecretStore};

mod tls;

/// A database URL, checked: what tokio-postgres connects to, and the CA the server must prove
/// itself against (when the URL asks for TLS). Never printed, since it may carry a password.
#[derive(Clone)]
pub struct DatabaseUrl {
    /// The connection without libpq's TLS parameters, which tokio-postgres does not take.
    config: tokio_postgres::Config,
    /// `Some` for `sslmode=verify-full` (or `verify-ca`, verified as fully): the CA bundle.
    root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("tls", &self.root_cert.is_some())
            .finish_non_exhaustive()
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<DatabaseUrl, String> {
        if text.trim_start().starts_with('{') {
            return DatabaseUrl::from_rds_json(text);
        }
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let (mut mode, mut root_cert, mut rest) = (None, None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("sslmode", value) => mode = Some(value.to_owned()),
                ("sslrootcert", value) => root_cert = Some(PathBuf::from(value)),
                _ => rest.push(pair),
            }
        }
        let root_cert = root_cert_for(mode.as_deref(), root_cert)?;
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        // Checked now, so a malformed URL is refused at once; the message never repeats the URL.
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|error| format!("not a PostgreSQL URL ({error})"))?;
        refuse_silent_plaintext(mode.as_deref(), &config)?;
        if root_cert.is_some() {
            config.ssl_mode(SslMode::Require);
        }
        Ok(DatabaseUrl { config, root_cert })
    }
}

/// The CA bundle that `sslmode` asks to verify with, if any; the unverified modes are refused.
fn root_cert_for(
    mode: Option<&str>,
    root_cert: Option<PathBuf>,
) -> Result<Option<PathBuf>, String> {
    Ok(match mode {
        None | Some("disable") => None,
        Some("verify-full" | "verify-ca") => Some(root_cert.ok_or(
            "sslmode=verify-full needs sslrootcert=<the CA's PEM file> to verify the server with",
        )?),
        Some(other @ ("require" | "prefer" | "allow")) => {
            return Err(format!(
                "sslmode={other} encrypts without verifying the server; use sslmode=verify-full \
                     with sslrootcert=<the CA's PEM file>"
            ));
        }
        Some(other) => return Err(format!("sslmode={other} is not a TLS mode libpq knows")),
    })
}

/// Refuses a URL that would reach a host other than this machine in plaintext only because it
/// names no `sslmode`: plaintext to another host must be asked for (`sslmode=disable`).
fn refuse_silent_plaintext(
    mode: Option<&str>,
    config: &tokio_postgres::Config,
) -> Result<(), String> {
    use tokio_postgres::config::Host;
    let local = |host: &Host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    };
    if mode.is_none() && !config.get_hosts().iter().all(local) {
        return Err(
            "the database is on another host and the URL names no sslmode, so it would \
                    be reached in plaintext: add sslmode=verify-full&sslrootcert=<the CA's PEM \
                    file> (or, for RDS's JSON, the keys sslmode and sslrootcert), or \
                    sslmode=disable to accept plaintext explicitly"
                .to_owned(),
        );
    }
    Ok(())
}

/// The secret RDS keeps for a database, with libpq's TLS parameters as optional extra keys.
#[derive(serde::Deserialize)]
struct RdsSecret {
    username: String,
    password: String,
    host: String,
    port: Option<u16>,
    dbname: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<PathBuf>,
}

impl DatabaseUrl {
    fn from_rds_json(text: &str) -> Result<DatabaseUrl, String> {
        // serde_json's message names the field or position, never the value.
        let secret: RdsSecret = serde_json::from_str(text)
            .map_err(|error| format!("not a database secret of RDS's shape ({error})"))?;
        let root_cert = root_cert_for(secret.sslmode.as_deref(), secret.sslrootcert)?;
        let mut config = tokio_postgres::Config::new();
        config
            .user(&secret.username)
            .password(secret.password)
            .host(&secret.host)
            .port(secret.port.unwrap_or(5432))
            .dbname(secret.dbname.as_deref().unwrap_or("postgres"));
        refuse_silent_plaintext(secret.sslmode.as_deref(), &config)?;
        if root_cert.is_some() {
            config.ssl_mode(SslMode::Require);
        }
        Ok(DatabaseUrl { config, root_cert })
    }

    /// Whether the connection is TLS, verified.
    pub fn is_verified(&self) -> bool {
        self.root_cert.is_some()
    }

    /// The rustls configuration that trusts exactly the CAs of the bundle.
    fn tls(&self, root_cert: &std::path::Path) -> Result<rustls::ClientConfig, ApiError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(root_cert)
            .map_err(|error| ApiError::internal(format!("reading the database's CA: {error}")))?;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|error| ApiError::internal(format!("the database's CA: {error}")))?;
            roots.add(certificate).map_err(ApiError::internal)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ApiError::internal)?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// The database's migrations, in order; each runs once, in a transaction.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_legacy_schema",
    include_str!("../../migrations/0001_legacy_schema.sql"),
)];

/// A lazily opened connection to the database whose URL a secret holds.
pub struct Database {
    url: Secret<DatabaseUrl>,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL can carry a password.
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Cheap: neither the secret nor the database is reached until [`Database::connection`].
    pub fn new(secrets: &SecretStore, url: SecretArn) -> Database {
        Database {
            url: secrets.secret(url),
            client: Mutex::new(None),
        }
    }

    /// The connection, opened (or reopened) if needed; a failure is a logged 500.
    pub async fn connection(&self) -> Result<MappedMutexGuard<'_, Client>, ApiError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let url = self.url.get().await?;
            let opened = open(&url.current).await;
            if opened.is_err() {
                // A password that no longer works may have been rotated: read it again next time.
                self.url.expire().await;
            }
            *guard = Some(opened?);
        }
        Ok(MutexGuard::map(guard, |client| {
            client.as_mut().expect("connected just above")
        }))
    }
}

async fn open(url: &DatabaseUrl) -> Result<Client, ApiError> {
    let client = match &url.root_cert {
        None => {
            let (client, connection) = url
                .config
                .connect(NoTls)
                .await
                .map_err(ApiError::internal)?;
            tokio::spawn(watch(connection));
            client
        }
        Some(root_cert) => {
            let tls = tls::MakeRustls::new(url.tls(root_cert)?);
            let (client, connection) = url.config.connect(tls).await.map_err(ApiError::internal)?;
            tokio::spawn(watch(connection));
            client
        }
    };
    Ok(client)
}

/// Drives a connection until it closes, and says so.
async fn watch(connection: impl Future<Output = Result<(), tokio_postgres::Error>>) {
    if let Err(error) = connection.await {
        tracing::warn!(%error, "the PostgreSQL connection closed");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_to_another_host_must_be_asked_for() {
        for local in [
            "postgres://u:secret@127.0.0.1:5432/legacy",
            "postgres://u:secret@localhost/legacy",
            "postgres://u:secret@[::1]:5432/legacy",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/legacy",
        ] {
            let url: DatabaseUrl = local.parse().unwrap_or_else(|e| panic!("{local}: {e}"));
            assert!(!url.is_verified(), "{local}");
        }
        for remote in [
            "postgres://u:secret@db:5432/legacy",
            "postgres://u:secret@10.0.0.5/legacy",
        ] {
            let error = remote.parse::<DatabaseUrl>().unwrap_err();
            assert!(error.contains("would be reached in plaintext"), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
        let asked: DatabaseUrl = "postgres://u:secret@db:5432/legacy?sslmode=disable"
            .parse()
            .unwrap();
        assert!(!asked.is_verified());
        // RDS's JSON usually has no sslmode: refused the same way, not silently plaintext.
        let error = r#"{"username": "u", "password": "hunter2", "host": "db.internal"}"#
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(error.contains("would be reached in plaintext"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn urls_take_libpq_tls_parameters_and_refuse_unverified_tls() {
        let plain: DatabaseUrl = "postgres://u:secret@db:5432/legacy?sslmode=disable"
            .parse()
            .unwrap();
        assert!(!plain.is_verified());
        let verified: DatabaseUrl =
            "postgres://u:secret@db/legacy?sslmode=verify-full&sslrootcert=/var/task/ca.pem&application_name=x"
                .parse()
                .unwrap();
        assert!(verified.is_verified());
        assert_eq!(verified.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(verified.config.get_application_name(), Some("x"));
        assert!(!format!("{verified:?}").contains("secret"), "{verified:?}");
        let error = "postgres://db/x?sslmode=require"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(error.contains("use sslmode=verify-full"), "{error}");
        let error = "postgres://db/x?sslmode=verify-full"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(error.contains("needs sslrootcert"), "{error}");
        let error = "mysql://u:secret@db".parse::<DatabaseUrl>().unwrap_err();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn rds_secrets_are_read_too() {
        let rds: DatabaseUrl =
            r#"{"engine": "postgres", "username": "legacy", "password": "p@ss:/word",
            "host": "db.internal", "port": 5433, "dbname": "biometrix",
            "sslmode": "verify-full", "sslrootcert": "/opt/rds/global-bundle.pem"}"#
                .parse()
                .unwrap();
        assert!(rds.is_verified());
        assert_eq!(rds.config.get_user(), Some("legacy"));
        assert_eq!(rds.config.get_password(), Some(&b"p@ss:/word"[..]));
        assert_eq!(rds.config.get_ports(), &[5433]);
        assert_eq!(rds.config.get_dbname(), Some("biometrix"));
        assert!(!format!("{rds:?}").contains("p@ss"));
        let error = r#"{"username": "legacy", "password": "hunter2"}"#
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(error.contains("missing field `host`"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error = r#"{"username": "u", "password": "hunter2", "host": "h", "sslmode": "prefer"}"#
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(error.contains("use sslmode=verify-full"), "{error}");
    }
}
