//! Running `cargo xtask` on copies of the fixture workspace.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A throwaway copy of `tests/fixtures/<name>`, removed when dropped.
pub struct Fixture {
    pub root: PathBuf,
}

impl Fixture {
    pub fn copy(name: &str) -> Fixture {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let root = std::env::temp_dir().join(format!("xtask-{name}-{}", unique()));
        copy_dir(&source, &root);
        Fixture { root }
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.join("Cargo.toml")
    }

    /// `cargo xtask --manifest-path <fixture> <args>`, building inside the fixture (never into a
    /// shared CARGO_TARGET_DIR), with the build tools on PATH and CI-style output.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = xtask();
        command
            .arg("--manifest-path")
            .arg(self.manifest())
            .args(args);
        command
            .env("PATH", path_with_tools())
            .env_remove("CARGO_TARGET_DIR")
            .env("CI", "true");
        command
    }

    /// Runs [`Fixture::command`] to completion.
    pub fn xtask(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the xtask binary runs")
    }
}

impl Fixture {
    /// The endpoint and pid of the emulator `deploy --local` started for this fixture.
    pub fn emulator(&self) -> Option<(String, u32)> {
        let state = std::fs::read(self.root.join("target/local/emulator.json")).ok()?;
        let state: serde_json::Value = serde_json::from_slice(&state).ok()?;
        Some((
            state["endpoint"].as_str()?.to_owned(),
            u32::try_from(state["pid"].as_u64()?).ok()?,
        ))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some((_, pid)) = self.emulator() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        // The PostgreSQL server `serve` started: its postmaster, then its cluster.
        if let Some(data) = std::fs::read(self.root.join("target/local/postgres.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|state| state["data"].as_str().map(PathBuf::from))
        {
            if let Some(pid) = std::fs::read_to_string(data.join("postmaster.pid"))
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned))
            {
                let _ = Command::new("kill").arg(pid).status();
            }
            let _ = std::fs::remove_dir_all(&data);
        }
        // XTASK_KEEP_FIXTURE=1 keeps the fixture (and its emulator log) for a look after a failure.
        if std::env::var_os("XTASK_KEEP_FIXTURE").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

pub fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

/// PATH with the project's `.venv/bin` first, where `scripts/test` installs cargo-zigbuild and zig.
pub fn path_with_tools() -> std::ffi::OsString {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin");
    assert!(
        venv.join("cargo-zigbuild").is_file(),
        "cargo-zigbuild is not in {}: run the tests with scripts/test, which installs it",
        venv.display()
    );
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(venv).chain(std::env::split_paths(&path))).unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failure whose last stderr line is `error: <message>`.
pub fn assert_refused(output: &Output, message: &str) {
    assert!(
        !output.status.success(),
        "expected a failure; stdout: {}",
        stdout(output)
    );
    let stderr = stderr(output);
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert_eq!(last, format!("error: {message}"), "full stderr:\n{stderr}");
}

fn unique() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A long-running command, started with its stdout (and its stderr, when `with_stderr`) read line
/// by line to the end, so it never writes into a closed pipe; returns once a line contains
/// `marker`, with the lines so far and the channel of the rest. Fails, showing what it printed,
/// when no such line comes within `within`.
pub fn spawn_until(
    mut command: Command,
    with_stderr: bool,
    marker: &str,
    within: std::time::Duration,
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    command.stdout(Stdio::piped());
    command.stderr(if with_stderr {
        Stdio::piped()
    } else {
        Stdio::inherit()
    });
    let mut child = command.spawn().expect("the xtask binary runs");
    let (sender, lines) = std::sync::mpsc::channel();
    let mut streams: Vec<Box<dyn Read + Send>> = vec![Box::new(child.stdout.take().unwrap())];
    if with_stderr {
        streams.push(Box::new(child.stderr.take().unwrap()));
    }
    for stream in streams {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
    }
    let mut seen = String::new();
    if !read_until(&lines, &mut seen, marker, within) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no line with {marker:?} within {within:?}; it printed:\n{seen}");
    }
    (child, seen, lines)
}

/// Appends the lines of `lines` to `seen` until one holds `marker`; false if none came within
/// `within` of the one before.
pub fn read_until(
    lines: &std::sync::mpsc::Receiver<String>,
    seen: &mut String,
    marker: &str,
    within: std::time::Duration,
) -> bool {
    while let Ok(line) = lines.recv_timeout(within) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(marker) {
            return true;
        }
    }
    false
}

/// A port nothing listens on at the moment, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP response as a test reads it.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, with a bearer token and a JSON body when given.
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Answer {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{authorization}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head,
        body: response[split + 4..].to_vec(),
    }
}
