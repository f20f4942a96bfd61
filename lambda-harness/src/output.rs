//! What a bootstrap writes to stdout and stderr: drained continuously (a full pipe would stall
//! it), and the last lines kept for error messages.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::{Arc, Mutex};

const KEPT_LINES: usize = 40;

#[derive(Debug, Clone, Default)]
pub struct Output {
    lines: Arc<Mutex<VecDeque<String>>>,
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
                if lines.len() == KEPT_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
    }

    /// The kept lines, oldest first.
    pub fn text(&self) -> String {
        // The drain threads may still be reading what a process wrote just before it exited.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}
