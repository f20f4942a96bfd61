//! What a bootstrap writes to stdout and stderr: drained continuously (a full pipe would stall
//! it); the last lines kept for error messages, and every line kept until its owner takes it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::{Arc, Mutex};

const KEPT_LINES: usize = 40;
/// Lines nobody has taken yet, at most; older ones are dropped (a caller that never takes them
/// does not grow without bound).
const FRESH_LINES: usize = 10_000;

#[derive(Debug, Clone, Default)]
pub struct Output {
    lines: Arc<Mutex<Lines>>,
}

#[derive(Debug, Default)]
struct Lines {
    tail: VecDeque<String>,
    fresh: VecDeque<String>,
}

impl Output {
    /// Takes the child's piped stdout and stderr and drains each on a thread of its own.
    pub fn capture(child: &mut Child) -> Output {
        let output = Output::default();
        if let Some(stdout) = child.stdout.take() {
            output.drain(stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            output.drain(stderr);
        }
        output
    }

    fn drain(&self, pipe: impl Read + Send + 'static) {
        let lines = Arc::clone(&self.lines);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                if lines.tail.len() == KEPT_LINES {
                    lines.tail.pop_front();
                }
                if lines.fresh.len() == FRESH_LINES {
                    lines.fresh.pop_front();
                }
                lines.tail.push_back(line.clone());
                lines.fresh.push_back(line);
            }
        });
    }

    /// The kept lines, oldest first.
    pub fn text(&self) -> String {
        // The drain threads may still be reading what a process wrote just before it exited.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.tail.iter().map(|l| format!("{l}\n")).collect()
    }

    /// The lines read since the last call, oldest first, without waiting.
    pub fn take(&self) -> Vec<String> {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.fresh.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_taken_once_and_the_tail_stays_short() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "for i in $(seq 100); do echo line $i; done; echo err >&2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let output = Output::capture(&mut child);
        child.wait().unwrap();
        let mut taken = Vec::new();
        for _ in 0..100 {
            taken.extend(output.take());
            if taken.len() == 101 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let stdout: Vec<&String> = taken.iter().filter(|l| l.starts_with("line")).collect();
        assert_eq!(stdout.len(), 100, "{taken:?}");
        assert_eq!(stdout[0], "line 1");
        assert_eq!(stdout[99], "line 100");
        assert!(taken.contains(&"err".to_owned()));
        assert!(output.take().is_empty(), "taken once");
        assert_eq!(output.text().lines().count(), KEPT_LINES);
    }
}
