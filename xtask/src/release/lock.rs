//! One deploy per stack at a time. CloudFormation refuses a second update only once the first is
//! executing; between looking at a stack and executing a change set, two deploys could still both
//! go ahead. So a deploy first creates `locks/<stack>.json` in the artifact bucket, with a write
//! that S3 performs only when the object does not exist yet (`If-None-Match: *`).
//!
//! The lock is fenced:
//! - its holder rewrites it every [`RENEW`] while it works, each time on the condition that it is
//!   still the one it wrote (`If-Match` on its ETag), and once more, the same way, just before it
//!   executes a change set ([`Lock::confirm`]): a lock taken over in between stops the deploy
//!   before anything is executed;
//! - a lock is stale when S3 wrote it longer ago than its lifetime, judged by S3's clock alone (its
//!   `LastModified` against `aws::clock::server_now`), never by the writer's;
//! - a lock whose holder ran on this machine since it booted (its boot id, not its host name, which
//!   two machines can share), in a process that is gone, is taken over at once;
//! - a renewal that fails for a passing reason is tried again until close to the lock's lifetime.
//!
//! The same objects, with a lifetime and no renewal, are `gc`'s lock and the leases of `lease`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::aws::clock::server_now;
use crate::progress::Progress;

const POLL: Duration = Duration::from_secs(2);
/// How often a held lock is rewritten.
pub const RENEW: Duration = Duration::from_secs(20);
/// How long a lock that is renewed counts after its last renewal.
pub const RENEWED_LIFETIME: Duration = Duration::from_secs(90);
/// How soon a renewal that failed for a passing reason is tried again.
const RETRY: Duration = Duration::from_secs(5);
/// How long before the lock's lifetime ends renewal stops trying: a write then could land after
/// another deploy judged the lock stale.
const MARGIN: Duration = Duration::from_secs(15);

/// Whether a renewal that failed `since` the last successful write may be tried again: while one
/// more try still lands inside the lock's `lifetime`, less a margin.
pub fn keep_trying(since: Duration, lifetime: Duration) -> bool {
    since + RETRY + MARGIN < lifetime
}

/// A lock that another holder has (or that is gone): never worth renewing again.
#[derive(Debug)]
pub struct Lost(String);

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Lost {}

/// Whether `error` says the lock is lost, rather than that renewing it failed for now.
pub fn is_lost(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.downcast_ref::<Lost>().is_some())
}

/// Who holds a lock, as stored in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub holder: String,
    /// What it guards, as people read it.
    pub stack: String,
    /// The machine's name, for people; never used to decide anything (two machines can share one).
    #[serde(default)]
    pub host: String,
    /// The boot of the machine it ran on (`/proc/sys/kernel/random/boot_id`): with `pid`, what
    /// tells whether its process is gone.
    #[serde(default)]
    pub boot_id: String,
    #[serde(default)]
    pub pid: u32,
    /// How long it counts after S3 last wrote it, in seconds.
    #[serde(default)]
    pub lifetime: u64,
}

impl Holder {
    /// A holder for this process, counting for `lifetime` after each write.
    pub fn me(what: String, lifetime: Duration) -> Holder {
        Holder {
            holder: whoami(),
            stack: what,
            host: host(),
            boot_id: boot_id(),
            pid: std::process::id(),
            lifetime: lifetime.as_secs(),
        }
    }
}

/// A lock as found in the bucket.
#[derive(Debug, Clone)]
pub struct Found {
    pub holder: Holder,
    pub etag: Option<String>,
    /// When S3 last wrote it, seconds since the Unix epoch by S3's clock.
    pub written: i64,
}

impl Found {
    /// Why it no longer counts, or `None` while it does.
    pub fn stale(&self) -> Option<String> {
        let age = server_now() - self.written;
        if age > i64::try_from(self.holder.lifetime).unwrap_or(i64::MAX) {
            return Some(format!(
                "S3 last wrote it {age}s ago, longer than the {}s it counts for",
                self.holder.lifetime
            ));
        }
        if gone(&self.holder, &boot_id()) {
            return Some(format!(
                "its process ({}) is no longer running on this machine",
                self.holder.pid
            ));
        }
        None
    }

    fn describe(&self) -> String {
        format!(
            "{} (written {}s ago)",
            self.holder.holder,
            server_now() - self.written
        )
    }
}

/// A held lock; renew it with [`Lock::keep`] while working, [`Lock::release`] it when done.
#[derive(Debug)]
pub struct Lock {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    name: String,
    mine: Holder,
    /// The ETag of the lock as this process last wrote it.
    etag: Mutex<Option<String>>,
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

/// True for a 412 (the condition failed) or a 409 (another conditional write raced this one).
pub fn is_conflict<E>(error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    let status = error.raw_response().map(|r| r.status().as_u16());
    matches!(status, Some(412 | 409))
}

impl Lock {
    /// Takes the lock on `scope`, which counts for `lifetime` after each write; waits for or
    /// refuses a holder as `contention` says, and takes over a stale one, saying so.
    pub async fn acquire(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        scope: Scope<'_>,
        lifetime: Duration,
        contention: Contention,
        progress: Progress,
    ) -> anyhow::Result<Lock> {
        let key = scope.key();
        let location = format!("s3://{bucket}/{key}");
        let mine = Holder::me(scope.name(), lifetime);
        let mut waiting = None;
        loop {
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
                        name: scope.name(),
                        mine,
                        etag: Mutex::new(output.e_tag().map(str::to_owned)),
                    });
                }
                Err(error) => error,
            };
            if !is_conflict(&error) {
                return Err(anyhow::Error::new(error))
                    .with_context(|| format!("creating the lock {location}"));
            }
            let Some(found) = read(s3, bucket, &key).await? else {
                continue; // released in between
            };
            if let Some(why) = found.stale() {
                progress.note(&format!(
                    "taking over the lock of {} on {}: {why}",
                    found.holder.holder,
                    scope.name()
                ));
                let mut delete = s3.delete_object().bucket(bucket).key(&key);
                if let Some(etag) = &found.etag {
                    delete = delete.if_match(etag);
                }
                match delete.send().await {
                    Ok(_) => {}
                    // Someone else took it over first; contend with them instead.
                    Err(error) if is_conflict(&error) => {}
                    Err(error) => {
                        return Err(anyhow::Error::new(error))
                            .with_context(|| format!("removing the stale lock {location}"));
                    }
                }
                continue;
            }
            let busy = scope.busy(&found.describe());
            let after = format!(
                "a lock its holder no longer renews is taken over by itself {}s after its last \
                 write",
                found.holder.lifetime
            );
            match contention {
                Contention::Refuse => {
                    bail!("{busy}; run again without --no-wait to wait for it ({after})")
                }
                Contention::Wait { until } => {
                    if Instant::now() > until {
                        bail!(
                            "{busy}, still, after waiting for as long as --timeout allows ({after})"
                        );
                    }
                    match &waiting {
                        Some(step) => {
                            crate::progress::Step::set_message(step, &format!("waiting: {busy}"))
                        }
                        None => waiting = Some(progress.step(&format!("waiting: {busy}"))),
                    }
                    crate::wait::pause(POLL).await;
                }
            }
        }
    }

    /// Rewrites the lock on the condition that it is still the one this process wrote; fails,
    /// naming whoever holds it now, when it is not.
    pub async fn confirm(&self) -> anyhow::Result<()> {
        let etag = self.etag.lock().expect("the lock's ETag").clone();
        let mut put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(ByteStream::from(serde_json::to_vec_pretty(&self.mine)?));
        put = match &etag {
            Some(etag) => put.if_match(etag),
            None => put,
        };
        match put.send().await {
            Ok(output) => {
                *self.etag.lock().expect("the lock's ETag") = output.e_tag().map(str::to_owned);
                Ok(())
            }
            Err(error) if is_conflict(&error) || error.code() == Some("NoSuchKey") => {
                let now = read(&self.s3, &self.bucket, &self.key).await.ok().flatten();
                let by = now.map_or_else(
                    || "nobody: it was removed".to_owned(),
                    |found| found.holder.holder,
                );
                Err(anyhow::Error::new(Lost(format!(
                    "the lock on {} (s3://{}/{}) is no longer this deploy's: it is held by {by}",
                    self.name, self.bucket, self.key
                ))))
            }
            Err(error) => Err(anyhow::Error::new(error))
                .with_context(|| format!("renewing the lock s3://{}/{}", self.bucket, self.key)),
        }
    }

    /// Renews the lock every [`RENEW`] for as long as it is polled. A renewal that fails for a
    /// passing reason (the network, throttling, an expired token) is tried again every
    /// [`RETRY`] for as long as [`keep_trying`] allows; a lock that is lost, or that could not be
    /// renewed in time, is said and no longer renewed (the next [`Lock::confirm`] then fails too).
    /// Never returns.
    pub async fn keep(&self, progress: Progress) {
        let mut written = Instant::now();
        loop {
            crate::wait::pause(RENEW).await;
            loop {
                match self.confirm().await {
                    Ok(()) => {
                        written = Instant::now();
                        break;
                    }
                    Err(error) if is_lost(&error) => {
                        progress.note(&format!("warning: {error:#}"));
                        return std::future::pending().await;
                    }
                    Err(error) if keep_trying(written.elapsed(), RENEWED_LIFETIME) => {
                        progress.note(&format!("warning: {error:#}; trying again"));
                        crate::wait::pause(RETRY).await;
                    }
                    Err(error) => {
                        progress.note(&format!(
                            "warning: {error:#}; the lock could not be renewed within its \
                             lifetime, so another deploy may take it"
                        ));
                        return std::future::pending().await;
                    }
                }
            }
        }
    }

    /// Removes the lock, if it is still ours.
    pub async fn release(&self) -> anyhow::Result<()> {
        let mut delete = self.s3.delete_object().bucket(&self.bucket).key(&self.key);
        if let Some(etag) = self.etag.lock().expect("the lock's ETag").as_ref() {
            delete = delete.if_match(etag);
        }
        match delete.send().await {
            Ok(_) => Ok(()),
            // Someone else holds it now: it is theirs to release.
            Err(error) if is_conflict(&error) => Ok(()),
            Err(error) => Err(anyhow::Error::new(error)).with_context(|| {
                format!(
                    "releasing the lock s3://{}/{}; the next run takes it over {}s after its last \
                     write",
                    self.bucket, self.key, self.mine.lifetime
                )
            }),
        }
    }
}

/// The lock at `key` as S3 holds it, or `None` when there is none.
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<Found>> {
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
    let written = output.last_modified().map_or(0, |t| t.secs());
    let body = output.body.collect().await?.into_bytes();
    let mut holder: Holder = serde_json::from_slice(&body).with_context(|| {
        format!(
            "s3://{bucket}/{key} is not a lock this tool wrote; look at it, and remove it with \
             `aws s3 rm s3://{bucket}/{key}` if nothing holds it"
        )
    })?;
    if holder.lifetime == 0 {
        // Written by an older release of this tool, which did not renew its locks.
        holder.lifetime = 3900;
    }
    Ok(Some(Found {
        holder,
        etag,
        written,
    }))
}

/// Who is deploying, for the person who has to wait: user, host and process, or the CI run.
fn whoami() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(repository), Some(run)) = (var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID")) {
        let server = var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".to_owned());
        return format!("GitHub Actions run {server}/{repository}/actions/runs/{run}");
    }
    let user = var("USER")
        .or_else(|| var("USERNAME"))
        .unwrap_or_else(|| "someone".to_owned());
    format!("{user}@{} (pid {})", host(), std::process::id())
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown host".to_owned())
}

/// This boot of this machine: the same on every process of it, another on any other machine or
/// after a restart; empty where it cannot be read (then no process is judged gone).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Whether `holder`'s process is known to be gone: it ran during this boot of this machine (`here`
/// is this boot's id) and its pid runs no more. A holder on another machine (or one that shares
/// this one's name) is never judged so; its lock goes stale by S3's clock.
fn gone(holder: &Holder, here: &str) -> bool {
    !here.is_empty() && holder.boot_id == here && holder.pid != 0 && !alive(holder.pid)
}

/// Whether process `pid` runs on this machine; `true` where that cannot be told.
fn alive(pid: u32) -> bool {
    !cfg!(target_os = "linux") || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_keeps_trying_until_close_to_the_lifetime() {
        let lifetime = RENEWED_LIFETIME;
        assert!(keep_trying(Duration::from_secs(20), lifetime));
        assert!(keep_trying(Duration::from_secs(65), lifetime));
        assert!(!keep_trying(Duration::from_secs(70), lifetime));
        assert!(!keep_trying(Duration::from_secs(200), lifetime));
    }

    #[test]
    fn only_a_lost_lock_stops_renewal_at_once() {
        let lost = anyhow::Error::new(Lost("held by someone else".into())).context("renewing");
        assert!(is_lost(&lost));
        let transient = anyhow::anyhow!("dispatch failure: connection refused").context("renewing");
        assert!(!is_lost(&transient));
    }

    #[test]
    fn a_process_is_judged_gone_only_on_this_boot_of_this_machine() {
        let here = "9f1c2a7e-boot";
        let dead = u32::MAX - 1;
        let holder = |boot_id: &str, pid: u32| Holder {
            holder: "ci@runner (pid 1)".into(),
            stack: "stack s".into(),
            host: "runner".into(),
            boot_id: boot_id.into(),
            pid,
            lifetime: 90,
        };
        assert!(gone(&holder(here, dead), here));
        // The same host name on another machine (another boot): its pid means nothing here.
        assert!(!gone(&holder("another-boot", dead), here));
        // Written before boot ids were recorded: judged by S3's clock alone.
        assert!(!gone(&holder("", dead), here));
        assert!(!gone(&holder(here, std::process::id()), here));
        assert!(!gone(&holder(here, dead), ""));
    }
}
