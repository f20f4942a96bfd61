//! Compiling for Lambda: which tools exist, installing them on request, and the cargo invocations.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::manifest::Builder;
use crate::environments::Profile;
use crate::names::MAX_GLIBC;

/// Pinned versions of the Python-packaged build tools, installed by `--install-tools`.
const TOOLS_REQUIREMENTS: &str = "xtask/requirements-tools.txt";

/// The build tools found on this machine.
#[derive(Debug, Clone)]
pub struct Tools {
    pub host: String,
    /// `rustc 1.95.0 (…)`, recorded in the manifest and the S3 metadata.
    pub toolchain: String,
    pub zigbuild: Option<PathBuf>,
    venv_bin: PathBuf,
}

impl Tools {
    pub fn detect(sh: &Shell, root: &Path) -> anyhow::Result<Tools> {
        let verbose = cmd!(sh, "rustc -vV")
            .quiet()
            .read()
            .context("running `rustc -vV`: is Rust installed?")?;
        let host = verbose
            .lines()
            .find_map(|line| line.strip_prefix("host: "))
            .context("`rustc -vV` names no host")?
            .to_owned();
        let toolchain = verbose.lines().next().unwrap_or("unknown").to_owned();
        let venv_bin = root.join(".venv/bin");
        let zigbuild = find_tool(&venv_bin, "cargo-zigbuild");
        Ok(Tools {
            host,
            toolchain,
            zigbuild,
            venv_bin,
        })
    }

    /// How `target` gets built: zigbuild where it is (or will be) installed, else plain cargo for the host.
    pub fn builder_for(&self, target: &str, will_install: bool) -> anyhow::Result<Builder> {
        if self.zigbuild.is_some() || will_install {
            Ok(Builder::Zigbuild)
        } else if target == self.host {
            Ok(Builder::Cargo)
        } else {
            bail!(
                "cargo-zigbuild is missing, and it is needed to cross-compile for {target}: \
                 run `pip install cargo-zigbuild` (it brings zig), or pass --install-tools to install it into .venv"
            )
        }
    }

    /// The targets rustup has installed; without rustup (a distribution's Rust), only the host's.
    /// Asked only when needed: it costs a process, and a no-op package must stay fast.
    fn installed_targets(&self, sh: &Shell) -> Vec<String> {
        cmd!(sh, "rustup target list --installed")
            .quiet()
            .ignore_stderr()
            .read()
            .map(|list| list.lines().map(str::to_owned).collect())
            .unwrap_or_else(|_| vec![self.host.clone()])
    }

    /// Why a build of `targets` may have failed before compiling anything: a missing Rust target.
    pub fn missing_target(&self, sh: &Shell, targets: &[&str]) -> Option<String> {
        let installed = self.installed_targets(sh);
        let missing = targets
            .iter()
            .find(|t| !installed.iter().any(|i| i == *t))?;
        Some(format!(
            "the Rust target {missing} is not installed: run `rustup target add {missing}`, or pass --install-tools"
        ))
    }

    /// `program` from `.venv`, or else from `PATH`.
    pub fn find(&self, program: &str) -> Option<PathBuf> {
        find_tool(&self.venv_bin, program)
    }

    /// Installs what is missing: zigbuild (with zig) into `.venv`, and the Rust targets.
    pub fn install(&mut self, sh: &Shell, root: &Path, targets: &[&str]) -> anyhow::Result<()> {
        if self.zigbuild.is_none() {
            let venv = root.join(".venv");
            let requirements = root.join(TOOLS_REQUIREMENTS);
            if !self.venv_bin.join("pip").is_file() {
                cmd!(sh, "python3 -m venv {venv}")
                    .run()
                    .context("creating .venv (is python3-venv installed?)")?;
            }
            let pip = self.venv_bin.join("pip");
            cmd!(
                sh,
                "{pip} install --quiet --disable-pip-version-check -r {requirements}"
            )
            .run()
            .context("installing cargo-zigbuild into .venv")?;
            self.zigbuild = Some(self.venv_bin.join("cargo-zigbuild"));
        }
        let installed = self.installed_targets(sh);
        for target in targets {
            if !installed.iter().any(|i| i == target) {
                cmd!(sh, "rustup target add {target}")
                    .run()
                    .context("installing a Rust target")?;
            }
        }
        Ok(())
    }

    /// The cargo invocation that builds `bins` for `target` with `profile`.
    pub fn command(
        &self,
        builder: Builder,
        manifest: &Path,
        target: &str,
        profile: Profile,
        bins: &[String],
    ) -> Vec<OsString> {
        let mut command: Vec<OsString> = match builder {
            Builder::Zigbuild => vec![
                self.zigbuild
                    .clone()
                    .unwrap_or_else(|| "cargo-zigbuild".into())
                    .into(),
                "zigbuild".into(),
                "--target".into(),
                // The suffix makes zig link against exactly this glibc, whatever the host has.
                format!("{target}.{}.{}", MAX_GLIBC.0, MAX_GLIBC.1).into(),
            ],
            Builder::Cargo => vec![
                "cargo".into(),
                "build".into(),
                "--target".into(),
                target.into(),
            ],
        };
        command.extend([
            "--profile".into(),
            profile.as_str().into(),
            "--manifest-path".into(),
            manifest.into(),
        ]);
        for bin in bins {
            command.extend(["--bin".into(), bin.into()]);
        }
        command
    }

    /// Runs a build command for `target` with the environment that makes its output reproducible.
    pub fn run(
        &self,
        sh: &Shell,
        root: &Path,
        target: &str,
        command: &[OsString],
    ) -> anyhow::Result<()> {
        let _flags = sh.push_env("CARGO_ENCODED_RUSTFLAGS", rustflags(root, target));
        self.run_as_is(sh, command)
    }

    /// Runs a build command as it is, with the installed tools (zig among them) on `PATH`.
    pub fn run_as_is(&self, sh: &Shell, command: &[OsString]) -> anyhow::Result<()> {
        let path = std::env::join_paths(std::iter::once(self.venv_bin.clone()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))?;
        let _path = sh.push_env("PATH", path);
        let (program, args) = command.split_first().context("an empty build command")?;
        cmd!(sh, "{program} {args...}").run().map_err(|_| {
            anyhow::anyhow!(
                "the build failed (the compiler's output is above); nothing was packaged"
            )
        })
    }
}

/// The CPU Lambda's arm64 functions run on (Graviton2); later Gravitons run its code too.
const LAMBDA_ARM64_CPU: &str = "neoverse-n1";

/// The flags every build gets, after any `RUSTFLAGS` of the caller's.
///
/// Source paths end up in panic messages; mapping them to fixed prefixes keeps the binary the
/// same whichever directory the workspace was checked out in. For arm64, code is generated for
/// Lambda's own CPU rather than the oldest ARMv8, as cargo-lambda does: see docs/benchmarks.md for
/// what it does to the size.
fn rustflags(root: &Path, target: &str) -> String {
    let mut flags: Vec<String> = std::env::var("RUSTFLAGS")
        .map(|f| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if target.starts_with("aarch64-") {
        flags.push(format!("-Ctarget-cpu={LAMBDA_ARM64_CPU}"));
    }
    flags.push(format!("--remap-path-prefix={}=/build", root.display()));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    if let Some(cargo_home) = cargo_home {
        flags.push(format!(
            "--remap-path-prefix={}=/cargo",
            cargo_home.display()
        ));
    }
    flags.join("\u{1f}")
}

/// `program` in `venv_bin`, or else on `PATH`.
fn find_tool(venv_bin: &Path, program: &str) -> Option<PathBuf> {
    Some(venv_bin.join(program))
        .filter(|p| p.is_file())
        .or_else(|| find_on_path(program))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
