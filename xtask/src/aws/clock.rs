//! S3's clock, as its responses tell it. Locks and leases expire by the time S3 wrote them (their
//! `LastModified`), so they must be judged by S3's time too, never by the writer's clock or this
//! machine's: every S3 response's `Date` header updates the offset between S3's clock and this
//! machine's, and [`server_now`] applies it.

use std::sync::atomic::{AtomicI64, Ordering};

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;

/// S3's clock minus this machine's, in seconds; `i64::MIN` until a response has been seen.
static OFFSET: AtomicI64 = AtomicI64::new(i64::MIN);

/// Reads the `Date` header of every S3 response.
#[derive(Debug)]
pub struct ServerClock;

impl Intercept for ServerClock {
    fn name(&self) -> &'static str {
        "ServerClock"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let date = context.response().headers().get("date");
        if let Some(at) = date.and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok()) {
            OFFSET.store(at.timestamp() - local_now(), Ordering::Relaxed);
        }
        Ok(())
    }
}

fn local_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Now by S3's clock, in seconds since the Unix epoch (this machine's clock until S3 has answered).
pub fn server_now() -> i64 {
    match OFFSET.load(Ordering::Relaxed) {
        i64::MIN => local_now(),
        offset => local_now() + offset,
    }
}
