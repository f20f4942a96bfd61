//! Output: progress on stderr (spinners on a terminal, plain timestamped lines in CI and pipes),
//! results on stdout (`print_json` for `--json`), and the few formats both use (tables, dates).

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
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

    /// A block of text as it is (a table, say), on stderr with the progress.
    pub fn text(&self, text: &str) {
        eprint!("{text}");
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

/// `HH:MM:SS` in UTC, the time part of [`now_rfc3339`].
fn clock() -> String {
    now_rfc3339()[11..19].to_owned()
}

/// The current time as RFC 3339 in UTC, to the second (`2026-11-28T10:00:00Z`), for records.
pub fn now_rfc3339() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(seconds)
}

/// `at` as RFC 3339 in UTC, to the second.
pub fn rfc3339_at(at: SystemTime) -> String {
    rfc3339(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Seconds since the epoch as RFC 3339 in UTC, formatted by the AWS SDK's own date type.
fn rfc3339(seconds: u64) -> String {
    let seconds = i64::try_from(seconds).expect("seconds since 1970 fit in an i64");
    DateTime::from_secs(seconds)
        .fmt(DateTimeFormat::DateTime)
        .expect("a whole-second date after 1970 formats as RFC 3339")
}

/// Rows under a title, each column as wide as its widest cell, two spaces of indent.
pub fn table<const N: usize>(title: &str, header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = format!("{title}\n");
    let mut line = |cells: [&str; N]| {
        let mut text = String::from(" ");
        for (cell, width) in cells.iter().zip(widths) {
            text.push_str(&format!(" {cell:<width$}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// A command's result on stdout: pretty JSON with `--json`, else the text people read.
pub fn print_result<T: Serialize>(
    result: &T,
    json: bool,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        return print_json(result);
    }
    print!("{}", text(result));
    Ok(())
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

    #[test]
    fn tables_align_their_columns() {
        let rows = [
            ["Modify".to_owned(), "Function".to_owned()],
            ["Add".to_owned(), "Api".to_owned()],
        ];
        assert_eq!(
            table("title:", ["ACTION", "LOGICAL ID"], &rows),
            "title:\n  ACTION LOGICAL ID\n  Modify Function\n  Add    Api\n"
        );
    }
}
