//! Long-running local processes, the one place the release tool starts them (commands that run to
//! completion go through `xshell`): a [`Program`] is configured, started, waited for until it
//! answers, and shown with the tail of its log when it does not. Also free ports and programs on
//! PATH.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::wait::{Backoff, poll_blocking};

/// A program to start and leave running.
#[derive(Debug)]
pub struct Program {
    command: Command,
    log: Option<PathBuf>,
}

impl Program {
    pub fn new(program: impl AsRef<OsStr>) -> Program {
        let mut command = Command::new(program);
        command.stdin(Stdio::null());
        Program { command, log: None }
    }

    pub fn args<I, S>(mut self, args: I) -> Program
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Program {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Program {
        self.command.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Program {
        self.command.current_dir(dir);
        self
    }

    /// Its stdout and stderr go to `log` (created afresh), shown in part if it fails to start.
    pub fn log(mut self, log: &Path) -> anyhow::Result<Program> {
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        self.command.stdout(file.try_clone()?).stderr(file);
        self.log = Some(log.to_owned());
        Ok(self)
    }

    /// Its own process group: a Ctrl-C meant for this command leaves it running.
    pub fn detached(mut self) -> Program {
        use std::os::unix::process::CommandExt;
        self.command.process_group(0);
        self
    }

    /// Starts it; `what` names it in messages.
    pub fn start(mut self, what: &str) -> anyhow::Result<Running> {
        let child = self
            .command
            .spawn()
            .with_context(|| format!("starting {what} ({:?})", self.command.get_program()))?;
        Ok(Running {
            child,
            what: what.to_owned(),
            log: self.log,
        })
    }
}

/// A started program.
#[derive(Debug)]
pub struct Running {
    child: Child,
    what: String,
    log: Option<PathBuf>,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `ready` says it answers. Fails, with the tail of its log, when it exits first;
    /// kills it and fails when it is not ready `within`.
    pub fn wait_until(
        &mut self,
        within: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let (what, log) = (&self.what, &self.log);
        let exited = poll_blocking(
            Instant::now() + within,
            Backoff::new(Duration::from_millis(50), Duration::from_millis(200)),
            || {
                if ready() {
                    return Ok(Some(None));
                }
                Ok(self.child.try_wait()?.map(Some))
            },
            || {
                anyhow::anyhow!(
                    "{what} did not answer within {}s; {}",
                    within.as_secs(),
                    output(log.as_deref())
                )
            },
        );
        match exited {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{what} exited ({status}) before it was ready; {}",
                output(log.as_deref())
            ),
            Err(error) => {
                let _ = self.child.kill();
                Err(error)
            }
        }
    }

    /// Waits for it to end.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        self.child
            .wait()
            .with_context(|| format!("waiting for {}", self.what))
    }

    /// Ctrl-C or a termination request stops it too, so nothing is left behind.
    pub fn stop_on_signal(&self) {
        let pid = self.id();
        on_signal(move || {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        });
    }
}

/// Asks the process `pid` to terminate (SIGTERM); fails when it cannot be asked.
pub fn terminate(pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "process {pid} could not be stopped");
    Ok(())
}

/// A flag that turns true at Ctrl-C or a termination request, for a command that stops cleanly.
/// The signals are this process's from the moment it returns.
pub fn stop_requested() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = std::sync::Arc::clone(&flag);
    on_signal(move || set.store(true, std::sync::atomic::Ordering::SeqCst));
    flag
}

/// Runs `then` on a thread of its own once Ctrl-C (SIGINT) or SIGTERM arrives. The handlers are
/// installed before it returns, so a signal right after cannot take the default action (death).
fn on_signal(then: impl FnOnce() + Send + 'static) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let registered = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    let (Ok(mut interrupt), Ok(mut terminate)) = registered else {
        return;
    };
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        then();
    });
}

/// Where to look for what a program said: the tail of its log, or the terminal it wrote to.
fn output(log: Option<&Path>) -> String {
    match log {
        Some(log) => format!("its log is {}:\n{}", log.display(), tail(log)),
        None => "its output is above".to_owned(),
    }
}

/// A port nothing listens on now, on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(listener.local_addr()?.port())
}

/// True when something accepts connections at `address`.
pub fn listening(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok()
}

/// `name` in one of PATH's directories.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The last 20 lines of a log.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
