//! Output: progress on stderr (spinners on a terminal, plain timestamped lines in CI and pipes),
//! results on stdout (`print_json` for `--json`).

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    interactive: bool,
}

impl Progress {
    /// Interactive only on a terminal outside CI.
    pub fn detect() -> Progress {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        Progress {
            interactive: std::io::stderr().is_terminal() && !ci,
        }
    }

    /// A line on its own, for steps whose output is someone else's (cargo's).
    pub fn note(&self, message: &str) {
        if self.interactive {
            eprintln!("{message}");
        } else {
            eprintln!("[{}] {message}", clock());
        }
    }

    /// A step that takes a while; finish it with [`Step::done`].
    pub fn step(&self, message: &str) -> Step {
        let bar = if self.interactive {
            let bar = ProgressBar::new_spinner().with_message(message.to_owned());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        } else {
            self.note(message);
            None
        };
        Step {
            bar,
            started: Instant::now(),
            progress: *self,
        }
    }
}

#[derive(Debug)]
pub struct Step {
    bar: Option<ProgressBar>,
    started: Instant,
    progress: Progress,
}

impl Step {
    /// A line of its own while the step goes on (above the spinner on a terminal).
    pub fn line(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => self.progress.note(message),
        }
    }

    /// Replaces the spinner's message; in plain output, nothing (lines carry the news).
    pub fn set_message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_owned());
        }
    }

    pub fn done(self, message: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let line = format!("{message} ({elapsed:.1}s)");
        match &self.bar {
            Some(bar) => bar.finish_with_message(format!("✓ {line}")),
            None => self.progress.note(&line),
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

/// `HH:MM:SS` in UTC, without pulling in a date library.
fn clock() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The current time as RFC 3339 in UTC (`2026-11-28T10:00:00Z`), for records.
pub fn now_rfc3339() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(seconds)
}

/// Seconds since the epoch as RFC 3339 in UTC: the proleptic Gregorian calendar, computed from the
/// day count (Howard Hinnant's `civil_from_days`).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Writes a command's result to stdout as pretty JSON (for `--json`).
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates_are_right_across_leap_years_and_centuries() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_795_861_800), "2026-11-28T10:30:00Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
