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

/// Writes a command's result to stdout as pretty JSON (for `--json`).
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
