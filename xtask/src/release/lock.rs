//! One deploy per stack at a time. CloudFormation refuses a second update only once the first is
//! executing; between looking at a stack and executing a change set, two deploys could still both
//! go ahead. So a deploy first creates `locks/<stack>.json` in the artifact bucket, with a write
//! that S3 performs only when the object does not exist yet (`If-None-Match: *`).
//!
//! A lock carries its holder and an expiry (the deploy's timeout plus a margin), so one left behind
//! by a killed process stops blocking once it expires.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::progress::Progress;

/// Added to a deploy's timeout to get its lock's lifetime.
const MARGIN: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(2);

/// Who holds a lock, as stored in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub holder: String,
    pub stack: String,
    /// Seconds since the Unix epoch.
    pub acquired: u64,
    pub expires: u64,
}

impl Holder {
    fn describe(&self, now: u64) -> String {
        format!(
            "{} (for {}s)",
            self.holder,
            now.saturating_sub(self.acquired)
        )
    }
}

/// A held lock; [`Lock::release`] it when done.
#[derive(Debug)]
pub struct Lock {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    etag: Option<String>,
}

/// How to behave when someone else holds the lock.
#[derive(Debug, Clone, Copy)]
pub enum Contention {
    Wait { until: Instant },
    Refuse,
}

/// What a lock guards.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One stack, `locks/<stack>.json`: held while a deploy, rollback, promote or destroy changes it.
    Stack(&'a str),
    /// The bucket's artifacts, `locks/gc.json`: held while `gc --delete` scans and deletes
    /// (`release::lease` says how publishers and gc keep out of each other's way).
    Artifacts,
}

impl Scope<'_> {
    pub fn key(self) -> String {
        match self {
            Scope::Stack(stack) => format!("locks/{stack}.json"),
            Scope::Artifacts => "locks/gc.json".to_owned(),
        }
    }

    fn name(self) -> String {
        match self {
            Scope::Stack(stack) => format!("stack {stack}"),
            Scope::Artifacts => "the bucket's artifacts".to_owned(),
        }
    }

    fn busy(self, holder: &str) -> String {
        match self {
            Scope::Stack(stack) => format!("stack {stack} is being deployed by {holder}"),
            Scope::Artifacts => format!("the artifact bucket is being cleaned (gc) by {holder}"),
        }
    }
}

impl Lock {
    pub async fn acquire(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        scope: Scope<'_>,
        timeout: Duration,
        contention: Contention,
        progress: Progress,
    ) -> anyhow::Result<Lock> {
        let key = scope.key();
        let location = format!("s3://{bucket}/{key}");
        let mut waiting = None;
        loop {
            let now = epoch_seconds();
            let mine = Holder {
                holder: whoami(),
                stack: scope.name(),
                acquired: now,
                expires: now + (timeout + MARGIN).as_secs(),
            };
            let put = s3
                .put_object()
                .bucket(bucket)
                .key(&key)
                .content_type("application/json")
                .if_none_match("*")
                .body(ByteStream::from(serde_json::to_vec_pretty(&mine)?))
                .send()
                .await;
            let error = match put {
                Ok(output) => {
                    if let Some(step) = waiting.take() {
                        crate::progress::Step::done(
                            step,
                            &format!("got the lock on {}", scope.name()),
                        );
                    }
                    return Ok(Lock {
                        s3: s3.clone(),
                        bucket: bucket.to_owned(),
                        key,
                        etag: output.e_tag().map(str::to_owned),
                    });
                }
                Err(error) => error,
            };
            // 412: it exists. 409: another conditional write raced ours; look again.
            let status = error.raw_response().map(|r| r.status().as_u16());
            if !matches!(status, Some(412 | 409)) {
                return Err(anyhow::Error::new(error))
                    .with_context(|| format!("creating the lock {location}"));
            }
            let Some((holder, etag)) = read(s3, bucket, &key).await? else {
                continue; // released in between
            };
            if holder.expires < now {
                progress.note(&format!(
                    "taking over the expired lock of {}",
                    holder.describe(now)
                ));
                let mut delete = s3.delete_object().bucket(bucket).key(&key);
                if let Some(etag) = etag {
                    delete = delete.if_match(etag);
                }
                match delete.send().await {
                    Ok(_) => {}
                    // Someone else took it over first; contend with them instead.
                    Err(error)
                        if error
                            .raw_response()
                            .is_some_and(|r| r.status().as_u16() == 412) => {}
                    Err(error) => {
                        return Err(anyhow::Error::new(error))
                            .with_context(|| format!("removing the expired lock {location}"));
                    }
                }
                continue;
            }
            let busy = scope.busy(&holder.describe(now));
            match contention {
                Contention::Refuse => bail!(
                    "{busy}; run again without --no-wait to wait for it. If that run was killed, its \
                     lock expires by itself in {}s, or remove it with `aws s3 rm {location}`",
                    holder.expires - now
                ),
                Contention::Wait { until } => {
                    if Instant::now() > until {
                        bail!(
                            "{busy}, still, after waiting for as long as --timeout allows; its lock \
                             ({location}) expires in {}s",
                            holder.expires.saturating_sub(now)
                        );
                    }
                    match &waiting {
                        Some(step) => {
                            crate::progress::Step::set_message(step, &format!("waiting: {busy}"))
                        }
                        None => waiting = Some(progress.step(&format!("waiting: {busy}"))),
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Removes the lock, if it is still ours.
    pub async fn release(self) -> anyhow::Result<()> {
        let mut delete = self.s3.delete_object().bucket(&self.bucket).key(&self.key);
        if let Some(etag) = &self.etag {
            delete = delete.if_match(etag);
        }
        delete.send().await.map(|_| ()).with_context(|| {
            format!(
                "releasing the lock s3://{}/{}; remove it with `aws s3 rm s3://{}/{}`",
                self.bucket, self.key, self.bucket, self.key
            )
        })
    }
}

/// The lock's holder and ETag, or `None` when there is no lock.
pub(super) async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<(Holder, Option<String>)>> {
    let output = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(output) => output,
        Err(SdkError::ServiceError(error)) if error.err().is_no_such_key() => return Ok(None),
        Err(error) if error.code() == Some("NoSuchKey") => return Ok(None),
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("reading the lock s3://{bucket}/{key}"));
        }
    };
    let etag = output.e_tag().map(str::to_owned);
    let body = output.body.collect().await?.into_bytes();
    let holder = serde_json::from_slice(&body).with_context(|| {
        format!("s3://{bucket}/{key} is not a lock; remove it with `aws s3 rm s3://{bucket}/{key}`")
    })?;
    Ok(Some((holder, etag)))
}

/// Who is deploying, for the person who has to wait: user, host and process, or the CI run.
pub(super) fn whoami() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(repository), Some(run)) = (var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID")) {
        let server = var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".to_owned());
        return format!("GitHub Actions run {server}/{repository}/actions/runs/{run}");
    }
    let user = var("USER")
        .or_else(|| var("USERNAME"))
        .unwrap_or_else(|| "someone".to_owned());
    let host = var("HOSTNAME")
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown host".to_owned());
    format!("{user}@{host} (pid {})", std::process::id())
}

pub(super) fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
