//! Secrets read at run time from Secrets Manager, never from the environment.
//!
//! A function is configured with a secret's ARN (`DATABASE_SECRET_ARN`, `SERVICE_TOKEN_SECRET_ARN`),
//! which `GetFunctionConfiguration` may show; the value is read on first use and kept for
//! [`SECRET_TTL`], so a rotation reaches every running function within minutes and without a
//! deploy. Reading the value again is cheap for the caller:
//! - while a value is fresh, every request uses it without a call;
//! - when it goes stale, one request reads it again while the others keep using the old one;
//! - when Secrets Manager fails, the last value stays in use, and no other read is tried for a
//!   backoff (5 s, doubling to a minute), so an outage is not multiplied by every request; with no
//!   value at all, requests answer 500 at once.
//!
//! A secret can also keep its previous version (`AWSPREVIOUS`): during a rotation, tokens signed by
//! a function that still holds the old value keep verifying until it reads the new one.

use std::fmt::{self, Display};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use tokio::sync::{Mutex, RwLock};

use crate::error::ApiError;
use crate::lazy::Lazy;

/// How long a value is used before it is read again.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

const FIRST_FAILURE_BACKOFF: Duration = Duration::from_secs(5);
const LONGEST_FAILURE_BACKOFF: Duration = Duration::from_secs(60);

/// The ARN of a Secrets Manager secret: `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`.
/// It names a secret without holding its value, so it may be printed and logged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretArn(String);

impl FromStr for SecretArn {
    type Err = String;

    fn from_str(text: &str) -> Result<SecretArn, String> {
        let parts: Vec<&str> = text.splitn(7, ':').collect();
        match parts.as_slice() {
            [
                "arn",
                partition,
                "secretsmanager",
                region,
                account,
                "secret",
                name,
            ] if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty() =>
            {
                Ok(SecretArn(text.to_owned()))
            }
            _ => Err(format!(
                "{text:?} is not a secret's ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
            )),
        }
    }
}

impl Display for SecretArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SecretArn {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a process reads its secrets: one Secrets Manager client, built on first use, for all of
/// them.
#[derive(Debug, Clone)]
pub struct SecretStore {
    client: Arc<Lazy<aws_sdk_secretsmanager::Client>>,
    ttl: Duration,
}

impl SecretStore {
    /// Cheap: nothing connects until a secret is first read.
    pub fn new(sdk: &aws_config::SdkConfig) -> SecretStore {
        SecretStore {
            client: Arc::new(Lazy::new(sdk, aws_sdk_secretsmanager::Client::new)),
            ttl: SECRET_TTL,
        }
    }

    /// The same store, whose secrets are read again after `ttl` instead of [`SECRET_TTL`].
    pub fn with_ttl(self, ttl: Duration) -> SecretStore {
        SecretStore { ttl, ..self }
    }

    /// The secret at `arn`, its current version only.
    pub fn secret<T>(&self, arn: SecretArn) -> Secret<T> {
        Secret {
            arn,
            client: Arc::clone(&self.client),
            with_previous: false,
            ttl: self.ttl,
            state: RwLock::new(State::default()),
            refresh: Mutex::new(()),
        }
    }

    /// The secret at `arn` with its previous version too, for values that verify what others
    /// signed (service tokens).
    pub fn secret_with_previous<T>(&self, arn: SecretArn) -> Secret<T> {
        Secret {
            with_previous: true,
            ..self.secret(arn)
        }
    }
}

/// A secret's value in both stages that matter during a rotation.
#[derive(Debug)]
pub struct Versions<T> {
    /// `AWSCURRENT`: what to sign and connect with.
    pub current: T,
    /// `AWSPREVIOUS`, when asked for and there is one: still accepted for verifying.
    pub previous: Option<T>,
}

/// One secret, parsed into `T` and cached (see the module's documentation).
pub struct Secret<T> {
    arn: SecretArn,
    client: Arc<Lazy<aws_sdk_secretsmanager::Client>>,
    with_previous: bool,
    ttl: Duration,
    state: RwLock<State<T>>,
    refresh: Mutex<()>,
}

struct State<T> {
    value: Option<Arc<Versions<T>>>,
    read_at: Option<Instant>,
    /// The last read failed: when, and how long to leave Secrets Manager alone.
    failed: Option<(Instant, Duration)>,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        State {
            value: None,
            read_at: None,
            failed: None,
        }
    }
}

impl<T> State<T> {
    fn fresh(&self, ttl: Duration) -> Option<Arc<Versions<T>>> {
        self.read_at
            .filter(|at| at.elapsed() < ttl)
            .and(self.value.clone())
    }

    fn backing_off(&self) -> bool {
        self.failed
            .is_some_and(|(at, backoff)| at.elapsed() < backoff)
    }

    /// What to answer without reading: the last value, or the failure that left none.
    fn last(&self, arn: &SecretArn) -> Result<Arc<Versions<T>>, ApiError> {
        self.value.clone().ok_or_else(|| {
            ApiError::internal(format!(
                "the secret {arn} could not be read a moment ago; see the error logged then"
            ))
        })
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("arn", &self.arn)
            .field("with_previous", &self.with_previous)
            .finish_non_exhaustive()
    }
}

impl<T> Secret<T>
where
    T: FromStr,
    T::Err: Display,
{
    pub fn arn(&self) -> &SecretArn {
        &self.arn
    }

    /// The value: cached, or read now (see the module's documentation).
    pub async fn get(&self) -> Result<Arc<Versions<T>>, ApiError> {
        {
            let state = self.state.read().await;
            if let Some(value) = state.fresh(self.ttl) {
                return Ok(value);
            }
            if state.backing_off() {
                return state.last(&self.arn);
            }
        }
        // One read at a time; while it runs, whoever has a stale value goes on with it.
        let _refresh = match self.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                if let Some(value) = self.state.read().await.value.clone() {
                    return Ok(value);
                }
                self.refresh.lock().await
            }
        };
        let failed = {
            let state = self.state.read().await;
            if let Some(value) = state.fresh(self.ttl) {
                return Ok(value);
            }
            if state.backing_off() {
                return state.last(&self.arn);
            }
            state.failed
        };
        let read = self.read().await;
        let mut state = self.state.write().await;
        match read {
            Ok(versions) => {
                let versions = Arc::new(versions);
                *state = State {
                    value: Some(Arc::clone(&versions)),
                    read_at: Some(Instant::now()),
                    failed: None,
                };
                Ok(versions)
            }
            Err(error) => {
                let backoff = failed.map_or(FIRST_FAILURE_BACKOFF, |(_, last)| {
                    (last * 2).min(LONGEST_FAILURE_BACKOFF)
                });
                state.failed = Some((Instant::now(), backoff));
                match state.value.clone() {
                    Some(stale) => {
                        tracing::warn!(
                            arn = %self.arn,
                            error = %crate::error::ErrorChain(&error),
                            "reading the secret failed; the last value stays in use"
                        );
                        Ok(stale)
                    }
                    None => Err(ApiError::Internal(Box::new(error))),
                }
            }
        }
    }

    /// The value was refused where it is used (a password that no longer works, say): read it
    /// again on next use, since it may have been rotated.
    pub async fn expire(&self) {
        self.state.write().await.read_at = None;
    }

    async fn read(&self) -> Result<Versions<T>, ReadError> {
        tracing::info!(arn = %self.arn, "reading the secret");
        let current = self
            .read_stage("AWSCURRENT")
            .await?
            .ok_or(ReadError::NoCurrentVersion)?;
        let previous = if self.with_previous {
            self.read_stage("AWSPREVIOUS").await?
        } else {
            None
        };
        Ok(Versions { current, previous })
    }

    /// One stage's value; `None` when the secret has no version in that stage.
    async fn read_stage(&self, stage: &str) -> Result<Option<T>, ReadError> {
        let answer = self
            .client
            .get_secret_value()
            .secret_id(self.arn.as_str())
            .version_stage(stage)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(error)
                if stage != "AWSCURRENT" && error.code() == Some("ResourceNotFoundException") =>
            {
                return Ok(None);
            }
            Err(error) => {
                return Err(ReadError::Call(DisplayErrorContext(error).to_string()));
            }
        };
        let text = output.secret_string().ok_or(ReadError::NotText)?;
        text.parse()
            .map(Some)
            .map_err(|error: T::Err| ReadError::Malformed {
                stage: stage.to_owned(),
                problem: error.to_string(),
            })
    }
}

/// Why a secret could not be read; never holds its value.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("GetSecretValue failed: {0}")]
    Call(String),
    #[error("the secret has no current version")]
    NoCurrentVersion,
    #[error("the secret holds binary data, not text")]
    NotText,
    #[error("the secret's {stage} value is malformed: {problem}")]
    Malformed { stage: String, problem: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_checked() {
        let arn: SecretArn =
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:biometrix/dev/database-AbCdEf"
                .parse()
                .unwrap();
        assert_eq!(arn.to_string(), arn.as_str());
        for bad in [
            "biometrix/dev/database",
            "arn:aws:s3:::bucket",
            "arn:aws:secretsmanager:eu-west-1:1234:secret:x",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
        ] {
            let error = bad.parse::<SecretArn>().unwrap_err();
            assert!(error.contains("is not a secret's ARN"), "{error}");
        }
    }
}
