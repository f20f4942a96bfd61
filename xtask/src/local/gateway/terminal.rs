//! What the local gateway shows on this machine's terminal: each line on stderr after the name of
//! the service it belongs to, coloured when stderr is a terminal (and `NO_COLOR` is not set), so
//! a function's own output, Lambda's `START`/`END`/`REPORT` lines and the gateway's problems read
//! apart at a glance. A benchmark turns it off.

use std::io::IsTerminal;

/// Where the lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Stderr { colour: bool },
    Off,
}

/// What a line is, which picks its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The function's own stdout and stderr.
    Output,
    /// Lambda's lines about an invocation or an instance: `START`, `REPORT`.
    Lambda,
    /// Something went wrong: init failed, a crash, a timeout.
    Problem,
}

impl Echo {
    /// stderr, in colour if it is a terminal and `NO_COLOR` is unset.
    pub fn stderr() -> Echo {
        Echo::Stderr {
            colour: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub fn line(self, service: &str, kind: Kind, text: &str) {
        if let Some(line) = self.format(service, kind, text) {
            eprintln!("{line}");
        }
    }

    fn format(self, service: &str, kind: Kind, text: &str) -> Option<String> {
        match self {
            Echo::Off => None,
            Echo::Stderr { colour: false } => Some(format!("[{service}] {text}")),
            Echo::Stderr { colour: true } => {
                let style = match kind {
                    Kind::Output => "",
                    Kind::Lambda => "\x1b[2m",
                    Kind::Problem => "\x1b[31m",
                };
                let reset = if style.is_empty() { "" } else { "\x1b[0m" };
                Some(format!("\x1b[36m[{service}]\x1b[0m {style}{text}{reset}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal() {
        let plain = Echo::Stderr { colour: false };
        assert_eq!(
            plain
                .format("hardware", Kind::Problem, "init failed")
                .unwrap(),
            "[hardware] init failed"
        );
        let coloured = Echo::Stderr { colour: true };
        assert_eq!(
            coloured
                .format("hardware", Kind::Problem, "init failed")
                .unwrap(),
            "\x1b[36m[hardware]\x1b[0m \x1b[31minit failed\x1b[0m"
        );
        assert_eq!(
            coloured.format("hardware", Kind::Output, "{}").unwrap(),
            "\x1b[36m[hardware]\x1b[0m {}"
        );
        assert_eq!(Echo::Off.format("hardware", Kind::Output, "x"), None);
    }
}
