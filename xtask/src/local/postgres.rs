//! The local PostgreSQL server `serve` runs services against: Debian's server binaries, a cluster
//! in a fresh 0700 directory under `target/local` (as root, owned by the `postgres` user under
//! `/var/tmp`), started once per workspace and left running like the emulator, with the legacy
//! schema from `services/kit/migrations` applied.
//!
//! It listens on 127.0.0.1 with password authentication (`scram-sha-256`), the password made for
//! the cluster and kept in `target/local/postgres.password` (0600): with `trust`, any user of the
//! machine would be its superuser, and could run programs as its owner (`COPY … TO PROGRAM`).
//! Only its Unix socket, inside the cluster's own 0700 directory, trusts whoever reaches it, which
//! is the cluster's owner alone; that is how the password is set.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use xshell::{Cmd, Shell};

use super::process::{free_port, listening};
use super::state;
use crate::progress::Progress;
use crate::wait::{Backoff, poll_blocking};
use crate::workspace::Workspace;

const MIGRATIONS: &str = "services/kit/migrations";
const DATABASE: &str = "biometrix";

/// A running local server, as recorded in `target/local/postgres.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Postgres {
    pub port: u16,
    pub data: PathBuf,
    /// The file holding the superuser's password (0600); `None` for a cluster made before
    /// passwords were (which trusts 127.0.0.1, and is used as it is).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl Postgres {
    /// The workspace's server: the recorded one if it answers, else a new cluster, started.
    pub fn ensure(workspace: &Workspace, progress: Progress) -> anyhow::Result<Postgres> {
        let state = state::path(workspace, "postgres");
        if let Some(server) = state::read::<Postgres>(&state)
            && server.answers()
        {
            progress.note(&format!(
                "using the local PostgreSQL on 127.0.0.1:{}",
                server.port
            ));
            // Migrations added since it started still apply.
            server.prepare(workspace, progress)?;
            return Ok(server);
        }
        let sh = Shell::new()?;
        let bin = binaries()?;
        let as_postgres = owner_command(&sh)?;
        // A cluster recorded earlier is started again, if it is still the directory we made.
        let mut fresh_password = None;
        let (data, password_file) = match state::read::<Postgres>(&state) {
            Some(old) if is_our_cluster(&old.data, !as_postgres.is_empty()) => {
                (old.data, old.password_file)
            }
            _ => {
                let data = fresh_directory(workspace, &sh, !as_postgres.is_empty())?;
                let step = progress.step(&format!(
                    "creating a PostgreSQL cluster in {}",
                    data.display()
                ));
                run(
                    owned(&sh, &as_postgres, &bin.join("initdb"))
                        .args(["--no-sync", "-U", "postgres"])
                        .args(["--auth-local=trust", "--auth-host=scram-sha-256", "-D"])
                        .arg(&data),
                    "initdb",
                )?;
                // Settings go into the cluster's own configuration, never through a shell string.
                let mut conf = std::fs::OpenOptions::new()
                    .append(true)
                    .open(data.join("postgresql.conf"))
                    .context("opening the new cluster's postgresql.conf")?;
                std::io::Write::write_all(
                    &mut conf,
                    format!(
                        "\n# cargo xtask serve\nlisten_addresses = '127.0.0.1'\n\
                         unix_socket_directories = '{}'\nfsync = off\n",
                        data.display()
                    )
                    .as_bytes(),
                )?;
                step.done("created the PostgreSQL cluster");
                let password = super::random_hex(16)?;
                let file = state.with_file_name("postgres.password");
                write_secret(&file, &password)?;
                fresh_password = Some(password);
                (data, Some(file))
            }
        };
        let port = free_port()?;
        let step = progress.step(&format!("starting PostgreSQL on 127.0.0.1:{port}"));
        run(
            owned(&sh, &as_postgres, &bin.join("pg_ctl"))
                .args(["start", "-w", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(data.join("server.log"))
                .env("PGPORT", port.to_string()),
            "pg_ctl start",
        )
        .with_context(|| format!("see {}", data.join("server.log").display()))?;
        let server = Postgres {
            port,
            data,
            password_file,
        };
        poll_blocking(
            Instant::now() + Duration::from_secs(30),
            Backoff::every(Duration::from_millis(100)),
            || Ok(server.answers().then_some(())),
            || anyhow::anyhow!("PostgreSQL did not answer on 127.0.0.1:{port} within 30 s"),
        )?;
        if let Some(password) = fresh_password {
            // Over the Unix socket in the cluster's 0700 directory, and on stdin, never argv.
            run(
                owned(&sh, &as_postgres, &bin.join("psql"))
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                    .arg(&server.data)
                    .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
                    .args(["-f", "-"])
                    .stdin(format!("ALTER USER postgres PASSWORD '{password}';")),
                "psql (setting the password)",
            )?;
        }
        state::write(&state, &server)?;
        step.done(&format!("PostgreSQL on 127.0.0.1:{port}"));
        server.prepare(workspace, progress)?;
        Ok(server)
    }

    /// [`Postgres::ensure`], with Debian's server installed first when it is missing and `install`.
    /// Stops the workspace's server, if one is recorded and answers; its data stays, and the next
    /// local command starts it again. What was stopped, if anything.
    pub fn stop(workspace: &Workspace) -> anyhow::Result<Option<Postgres>> {
        let state = state::path(workspace, "postgres");
        let Some(server) = state::read::<Postgres>(&state).filter(Postgres::answers) else {
            return Ok(None);
        };
        let sh = Shell::new()?;
        let bin = binaries()?;
        let as_postgres = owner_command(&sh)?;
        run(
            owned(&sh, &as_postgres, &bin.join("pg_ctl"))
                .args(["stop", "-m", "fast", "-w", "-D"])
                .arg(&server.data),
            "pg_ctl stop",
        )?;
        Ok(Some(server))
    }

    pub fn ensure_installed(
        workspace: &Workspace,
        install: bool,
        progress: Progress,
    ) -> anyhow::Result<Postgres> {
        if install && binaries().is_err() {
            let step = progress.step("installing postgresql from Debian's packages");
            super::apt_install(&["postgresql"])?;
            step.done("installed postgresql");
        }
        Postgres::ensure(workspace, progress)
    }

    pub fn url(&self) -> String {
        match self.password() {
            Some(password) => format!(
                "postgres://postgres:{password}@127.0.0.1:{}/{DATABASE}",
                self.port
            ),
            None => format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port),
        }
    }

    /// The superuser's password, from its 0600 file.
    fn password(&self) -> Option<String> {
        let file = self.password_file.as_ref()?;
        std::fs::read_to_string(file)
            .ok()
            .map(|p| p.trim().to_owned())
    }

    fn answers(&self) -> bool {
        listening(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
    }

    /// Creates the database and applies the migrations it has not had, recorded in
    /// `schema_migrations` exactly as `kit::db::migrate` records them.
    fn prepare(&self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let sh = Shell::new()?;
        let port = self.port.to_string();
        let password = self.password().unwrap_or_default();
        let psql = |database: &str| {
            sh.cmd("psql").env("PGPASSWORD", &password).args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
            ])
        };
        let exists = run(
            psql("postgres").args([
                "-tAc",
                &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"),
            ]),
            "psql",
        )
        .context("install PostgreSQL's client (apt-get install postgresql-client)")?;
        if exists != "1" {
            run(
                psql("postgres").args(["-c", &format!("CREATE DATABASE {DATABASE}")]),
                "psql",
            )?;
        }
        run(
            psql(DATABASE).args([
                "-c",
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            ]),
            "psql",
        )?;
        let dir = workspace.root.join(MIGRATIONS);
        if !dir.is_dir() {
            progress.note(&format!(
                "{MIGRATIONS} does not exist: no migrations to apply"
            ));
            return Ok(());
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|p| p.extension().is_some_and(|e| e == "sql"));
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .context("a migration file name")?
                .to_owned();
            let applied = run(
                psql(DATABASE).args([
                    "-tAc",
                    &format!("SELECT 1 FROM schema_migrations WHERE name = '{name}'"),
                ]),
                "psql",
            )?;
            if applied == "1" {
                continue;
            }
            progress.note(&format!("applying migration {name}"));
            run(
                psql(DATABASE)
                    .arg("--single-transaction")
                    .arg("-f")
                    .arg(&file)
                    .args([
                        "-c",
                        &format!("INSERT INTO schema_migrations (name) VALUES ('{name}')"),
                    ]),
                "psql",
            )?;
        }
        Ok(())
    }
}

/// Writes `secret` to `file`, readable and writable by this user alone (0600 from the start).
fn write_secret(file: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let _ = std::fs::remove_file(file);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("writing {}", file.display()))?;
    std::io::Write::write_all(&mut out, secret.as_bytes())?;
    Ok(())
}

/// A new, empty directory of a name nobody can guess, made with mode 0700 (and failing if anything,
/// a symbolic link included, is already there). Not as root: under the workspace's target
/// directory. As root, the cluster belongs to the `postgres` user, which may not reach into root's
/// home (where CI's target directory is), so it goes under /var/tmp, handed to that user without
/// following links.
fn fresh_directory(workspace: &Workspace, sh: &Shell, as_root: bool) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let suffix = super::random_hex(8)?;
    let data = if as_root {
        PathBuf::from(format!("/var/tmp/biometrix-postgres-{suffix}"))
    } else {
        let parent = workspace.target_dir.join("local");
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        parent.join(format!("postgres-{suffix}"))
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .with_context(|| format!("creating {}", data.display()))?;
    if as_root {
        let id = |flag: &str| -> anyhow::Result<u32> {
            run(sh.cmd("id").arg(flag).arg("postgres"), "id")?
                .parse()
                .context("reading the postgres user's ids")
        };
        std::os::unix::fs::lchown(&data, Some(id("-u")?), Some(id("-g")?))
            .with_context(|| format!("handing {} to the postgres user", data.display()))?;
    }
    Ok(data)
}

/// True when `data` is a real directory (not a link) with a cluster in it, of mode 0700, owned by
/// the `postgres` user when running as root: the directory [`fresh_directory`] made.
fn is_our_cluster(data: &Path, as_root: bool) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(metadata) = std::fs::symlink_metadata(data) else {
        return false;
    };
    metadata.is_dir()
        && metadata.permissions().mode() & 0o777 == 0o700
        && (!as_root || metadata.uid() != 0)
        && data.join("PG_VERSION").is_file()
}

/// The newest installed server's binaries.
fn binaries() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|bin| bin.join("postgres").is_file());
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or_default()
    });
    found.pop().context(
        "PostgreSQL's server is not installed: run `sudo apt-get install -y postgresql` \
         (`deploy --local --install-tools` installs it; local runs give the services a local \
         database)",
    )
}

/// initdb refuses to run as root: as root, the cluster belongs to the `postgres` user.
fn owner_command(sh: &Shell) -> anyhow::Result<Vec<String>> {
    if run(sh.cmd("id").arg("-u"), "id")? != "0" {
        return Ok(Vec::new());
    }
    if run(sh.cmd("id").arg("postgres"), "id").is_err() {
        run(
            sh.cmd("useradd")
                .args(["--system", "--no-create-home", "postgres"]),
            "useradd",
        )?;
    }
    Ok(vec![
        "runuser".into(),
        "-u".into(),
        "postgres".into(),
        "--".into(),
    ])
}

/// `program`, run as the cluster's owner (`owner` is the prefix that switches user, if any).
fn owned<'a>(sh: &'a Shell, owner: &[String], program: &Path) -> Cmd<'a> {
    match owner.split_first() {
        Some((first, rest)) => sh.cmd(first).args(rest).arg(program),
        None => sh.cmd(program),
    }
}

/// Runs a command to completion; its trimmed stdout, or its stderr in the error.
fn run(command: Cmd<'_>, what: &str) -> anyhow::Result<String> {
    let output = command
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
