//! The one way the release tool waits for something to change: polls spaced by a backoff, up to a
//! deadline. AWS operations are polled with [`poll`]; local processes with [`poll_blocking`]. Every
//! other wait is a [`pause`] (or [`pause_blocking`]) here, and nothing else in the tool sleeps
//! (`tidy/layers.rs` checks it), so that every wait is bounded and easy to find.

use std::time::{Duration, Instant};

/// The pause before each attempt: `first`, growing by half each time, never above `longest`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    longest: Duration,
}

impl Backoff {
    pub fn new(first: Duration, longest: Duration) -> Backoff {
        Backoff {
            first,
            next: first,
            longest,
        }
    }

    /// A fixed pause.
    pub fn every(interval: Duration) -> Backoff {
        Backoff::new(interval, interval)
    }

    /// The pause to take now; the one after it is longer.
    pub fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 3 / 2).min(self.longest);
        pause
    }

    /// Back to the first pause, after something happened.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Waits `how_long` on the runtime: the one async sleep of the tool.
pub async fn pause(how_long: Duration) {
    tokio::time::sleep(how_long).await;
}

/// Blocks this thread for `how_long`: the one blocking sleep of the tool.
pub fn pause_blocking(how_long: Duration) {
    std::thread::sleep(how_long);
}

/// Calls `attempt` until it gives a value, pausing between calls; past `deadline`, fails with
/// `timed_out()`. The first attempt is immediate.
pub async fn poll<T>(
    deadline: Instant,
    mut backoff: Backoff,
    mut attempt: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
    timed_out: impl FnOnce() -> anyhow::Error,
) -> anyhow::Result<T> {
    loop {
        if let Some(value) = attempt().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(timed_out());
        }
        pause(backoff.pause()).await;
    }
}

/// [`poll`] for a thread that may block: waiting for a local process to listen, say.
pub fn poll_blocking<T>(
    deadline: Instant,
    mut backoff: Backoff,
    mut attempt: impl FnMut() -> anyhow::Result<Option<T>>,
    timed_out: impl FnOnce() -> anyhow::Error,
) -> anyhow::Result<T> {
    loop {
        if let Some(value) = attempt()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(timed_out());
        }
        pause_blocking(backoff.pause());
    }
}

/// A test hook: when `XTASK_TEST_PAUSE_AT` names `point`, says `paused at <point>` on stderr and
/// waits (Ctrl-C still interrupts it) until the file `XTASK_TEST_RESUME` names exists. The tests
/// use it to interrupt a deploy, or change the bucket under it, at an exact step; unset, it costs
/// one environment lookup.
pub async fn pause_point(point: &str) {
    if std::env::var("XTASK_TEST_PAUSE_AT").ok().as_deref() != Some(point) {
        return;
    }
    eprintln!("paused at {point}");
    let resume = std::env::var_os("XTASK_TEST_RESUME").map(std::path::PathBuf::from);
    loop {
        if resume.as_ref().is_some_and(|file| file.exists()) {
            return;
        }
        pause(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_by_half_up_to_the_longest_and_reset() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(4));
        let pauses: Vec<u64> = (0..4).map(|_| backoff.pause().as_secs()).collect();
        assert_eq!(pauses, [2, 3, 4, 4]);
        backoff.reset();
        assert_eq!(backoff.pause(), Duration::from_secs(2));
    }

    #[test]
    fn polling_stops_at_the_first_value_or_at_the_deadline() {
        let mut calls = 0;
        let value = poll_blocking(
            Instant::now() + Duration::from_secs(5),
            Backoff::every(Duration::from_millis(1)),
            || {
                calls += 1;
                Ok((calls == 3).then_some(calls))
            },
            || anyhow::anyhow!("too late"),
        )
        .unwrap();
        assert_eq!(value, 3);
        let error = poll_blocking::<()>(
            Instant::now(),
            Backoff::every(Duration::from_millis(1)),
            || Ok(None),
            || anyhow::anyhow!("too late"),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "too late");
    }
}
