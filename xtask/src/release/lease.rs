//! How the commands that rely on the bucket's artifacts and `gc`, which deletes them, keep out of
//! each other's way, without one lock that would make every deploy wait for every other.
//!
//! A deploy, rollback or promote relies on its objects from the moment it finds them in the bucket
//! (uploaded, or already there) until its stacks run them; `publish` until it has said they are
//! there. gc must not delete one in that window. So each of them holds a *lease*,
//! `locks/artifacts/<env>/<id>.json` (under its environment, so that one environment's pipeline
//! may write its own leases and no other's), from before it looks at the bucket until it is done, and
//! `gc --delete` holds `locks/gc.json` ([`Scope::Artifacts`]) while it scans and deletes.
//!
//! The order of the writes is what makes it safe. A publisher writes its lease, then reads gc's
//! lock; gc writes its lock, then lists the leases. S3 is strongly consistent, for reads and for
//! listings, so of two that overlap at least one sees the other:
//! - a publisher that sees gc's lock takes its lease back and waits for gc to finish, then starts
//!   over (and uploads again whatever gc deleted);
//! - gc that sees a lease waits until it is gone, and only then reads what the stacks run, which by
//!   then includes what that publisher deployed.
//!
//! A lease is written again as each stack's work begins and before a rollback ([`Lease::renew`]), so
//! that it outlives every wait a deploy of several stacks makes, and it is given back on every way
//! out: success, failure, refusal, Ctrl-C. A lease left by a killed process stops counting once S3
//! wrote it longer ago than the command's timeout plus a margin, or at once when its process is
//! gone from this machine; until then gc waits for it and names it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_sdk_s3::primitives::ByteStream;

use super::lock::{self, Holder, Scope};
use crate::aws::Connection;
use crate::progress::Progress;

/// Where the leases are.
pub const PREFIX: &str = "locks/artifacts/";
/// Added to a command's timeout to get its lease's lifetime.
const MARGIN: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(2);

/// A held lease, given back when dropped (at the end of the command, however it ends).
pub struct Lease<'a> {
    aws: &'a Connection,
    key: String,
    mine: Holder,
    progress: Progress,
}

impl<'a> Lease<'a> {
    /// Takes a lease on `aws`'s bucket for a command of `environment` that may run for
    /// `timeout`, waiting while `gc --delete` runs (for no longer than `timeout`).
    pub fn take(
        aws: &'a Connection,
        environment: crate::environments::Environment,
        timeout: Duration,
        progress: Progress,
    ) -> anyhow::Result<Self> {
        let s3 = aws.s3();
        let bucket = aws.bucket.as_str();
        // Unique enough: the time to the nanosecond and the process.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let key = format!("{PREFIX}{environment}/{nanos}-{}.json", std::process::id());
        let until = Instant::now() + timeout;
        let mut waiting = None;
        let mine = Holder::me(
            "a lease on the bucket's artifacts".to_owned(),
            timeout + MARGIN,
        );
        let taken = aws.runtime.block_on(async {
            loop {
                write(&s3, bucket, &key, &mine).await?;
                let gc = lock::read(&s3, bucket, &Scope::Artifacts.key()).await?;
                let Some(gc) = gc.filter(|gc| gc.stale().is_none()) else {
                    if let Some(step) = waiting.take() {
                        crate::progress::Step::done(step, "gc is done with the bucket");
                    }
                    return anyhow::Ok(());
                };
                give_back(&s3, bucket, &key).await?;
                let busy = format!("gc by {} is deleting from s3://{bucket}", gc.holder.holder);
                if Instant::now() > until {
                    bail!(
                        "{busy}, still, after waiting for as long as --timeout allows; a gc that \
                         was killed stops counting {}s after it took the bucket",
                        gc.holder.lifetime
                    );
                }
                if waiting.is_none() {
                    waiting = Some(progress.step(&format!("waiting: {busy}")));
                }
                crate::wait::pause(POLL).await;
            }
        });
        let lease = Lease {
            aws,
            key,
            mine,
            progress,
        };
        // Refused (a garbage gc lock, no time left): the lease is given back as it is dropped.
        taken.map(|()| lease)
    }

    /// Writes the lease again, so that it counts for its whole lifetime from now: called as each
    /// stack's work begins, and before a rollback, each of which may wait for up to the timeout.
    pub async fn renew(&self) -> anyhow::Result<()> {
        write(&self.aws.s3(), &self.aws.bucket, &self.key, &self.mine).await
    }
}

async fn write(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    mine: &Holder,
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(serde_json::to_vec_pretty(mine)?))
        .send()
        .await
        .with_context(|| format!("writing the lease s3://{bucket}/{key}"))?;
    Ok(())
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let s3 = self.aws.s3();
        let given_back = self
            .aws
            .runtime
            .block_on(give_back(&s3, &self.aws.bucket, &self.key));
        if let Err(error) = given_back {
            self.progress.note(&format!(
                "warning: {error:#}; gc waits for it until it expires, or remove it with `aws s3 rm \
                 s3://{}/{}`",
                self.aws.bucket, self.key
            ));
        }
    }
}

async fn give_back(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<()> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("giving back the lease s3://{bucket}/{key}"))?;
    Ok(())
}

/// The leases that still count (not stale), as their keys and holders.
pub async fn live(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<Vec<(String, Holder)>> {
    let mut live = Vec::new();
    for key in crate::aws::s3::list_keys(s3, bucket, PREFIX).await? {
        // A lease given back between the listing and the read is gone: that is fine.
        if let Some(found) = lock::read(s3, bucket, &key).await?
            && found.stale().is_none()
        {
            live.push((key, found.holder));
        }
    }
    Ok(live)
}

/// Waits, holding gc's lock, until no lease counts; refuses after `until`, naming the leases.
pub async fn wait_until_none(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    until: Instant,
    progress: Progress,
) -> anyhow::Result<()> {
    let mut waiting = None;
    loop {
        let leases = live(s3, bucket).await?;
        if leases.is_empty() {
            if let Some(step) = waiting.take() {
                crate::progress::Step::done(step, "no publish or deploy is using the bucket");
            }
            return Ok(());
        }
        let holders: Vec<String> = leases
            .iter()
            .map(|(key, holder)| format!("{} (s3://{bucket}/{key})", holder.holder))
            .collect();
        let busy = format!(
            "a publish or deploy is using the bucket: {}",
            holders.join(", ")
        );
        if Instant::now() > until {
            bail!(
                "{busy}, still, after waiting for as long as --timeout allows; nothing was deleted. \
                 Run gc again later: a lease whose run was killed stops counting by itself, once \
                 its lifetime has passed or at once when its process is gone from this host"
            );
        }
        match &waiting {
            Some(step) => crate::progress::Step::set_message(step, &format!("waiting: {busy}")),
            None => waiting = Some(progress.step(&format!("waiting: {busy}"))),
        }
        crate::wait::pause(POLL).await;
    }
}
