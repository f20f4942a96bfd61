//! `cargo xtask bench package`: how long packaging takes when nothing changed and after a change,
//! against a no-op `cargo build` of the same binaries, and how big the zips are, beside the zips
//! `cargo lambda build --release --arm64` makes of the same binaries when cargo-lambda is installed.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde::Serialize;
use xshell::Shell;

use crate::cli::Output;
use crate::environments::Profile;
use crate::names::human_size;
use crate::progress::{Progress, print_json};
use crate::release::compile::Tools;
use crate::release::package;
use crate::workspace::Workspace;

use super::{list, measure, median, xtask};

/// `package --all` with nothing changed and after touching one service; zip sizes.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// How many times to repeat each no-op measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The profile to build with: release (qa's and production's, the default) or fast (dev's).
    #[arg(long, value_name = "PROFILE", default_value = "release", value_parser = str::parse::<Profile>)]
    profile: Profile,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct PackageFigures {
    noop_package_seconds: Vec<f64>,
    noop_cargo_build_seconds: Vec<f64>,
    noop_ratio: f64,
    touched_service: String,
    after_touch_seconds: f64,
    zips: Vec<(String, u64)>,
    /// The zip cargo-lambda makes of each function's binary; `None` without cargo-lambda.
    cargo_lambda_zips: Option<Vec<(String, u64)>>,
}

pub fn run(workspace: &Workspace, progress: Progress, options: Options) -> anyhow::Result<()> {
    bench_package(
        workspace,
        progress,
        options.runs.max(1),
        options.profile,
        options.output.json,
    )
}

fn bench_package(
    workspace: &Workspace,
    progress: Progress,
    runs: usize,
    profile: Profile,
    json: bool,
) -> anyhow::Result<()> {
    let services: Vec<_> = workspace.services.iter().collect();
    let Some(touched) = services.first() else {
        bail!("this workspace has no services to measure")
    };
    let sh = Shell::new()?;
    let mut tools = Tools::detect(&sh, &workspace.root)?;
    let plan = package::plan(workspace, &services, "dev".parse()?, profile, &tools, false)?;

    progress.note("warming up: packaging every service once");
    let done = package::execute(&sh, workspace, plan.clone(), &mut tools, false, progress)?;

    let noop_package_seconds = measure(progress, "package --all, nothing changed", runs, || {
        package_all(workspace, profile)
    })?;

    let manifest = workspace.root.join("Cargo.toml");
    let noop_cargo_build_seconds = measure(progress, "cargo build, nothing changed", runs, || {
        let started = Instant::now();
        for build in &plan.builds {
            let command = tools.command(
                build.builder,
                &manifest,
                &build.target,
                profile,
                &build.bins,
            );
            let _quiet = sh.push_env("CARGO_TERM_QUIET", "true");
            tools.run(&sh, &workspace.root, &build.target, &command)?;
        }
        Ok(started.elapsed())
    })?;

    let source = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|file| touched.manifest_path.with_file_name(file))
        .find(|path| path.is_file())
        .context("the touched service has neither src/lib.rs nor src/main.rs")?;
    let step = progress.step(&format!(
        "package --all after touching {}",
        source.display()
    ));
    std::fs::File::options()
        .append(true)
        .open(&source)
        .and_then(|file| file.set_modified(SystemTime::now()))
        .with_context(|| format!("touching {}", source.display()))?;
    let after_touch_seconds = package_all(workspace, profile)?.as_secs_f64();
    step.done(&format!(
        "package --all after touching {}: {after_touch_seconds:.2}s",
        touched.name
    ));

    // Only the release profile is cargo-lambda's `--release`.
    let cargo_lambda_zips = match profile {
        Profile::Release => cargo_lambda(workspace, &sh, &tools, &plan, progress)?,
        Profile::Fast => None,
    };
    let figures = PackageFigures {
        noop_ratio: median(&noop_package_seconds) / median(&noop_cargo_build_seconds),
        noop_package_seconds,
        noop_cargo_build_seconds,
        touched_service: touched.name.clone(),
        after_touch_seconds,
        zips: done
            .functions
            .iter()
            .map(|a| (format!("{}/{}", a.service, a.function), a.size))
            .collect(),
        cargo_lambda_zips,
    };
    report(&figures, json)
}

/// `cargo lambda build --release --arm64` of the plan's arm64 binaries, in one invocation as
/// `package` builds them and with the workspace's release profile (cargo-lambda adds its own
/// flags), into a target directory of its own; each function's zip size.
fn cargo_lambda(
    workspace: &Workspace,
    sh: &Shell,
    tools: &Tools,
    plan: &crate::release::manifest::Plan,
    progress: Progress,
) -> anyhow::Result<Option<Vec<(String, u64)>>> {
    let Some(program) = tools.find("cargo-lambda") else {
        progress.note(
            "cargo-lambda is not installed (`pip install cargo-lambda`): no comparison with its zips",
        );
        return Ok(None);
    };
    let arm64: Vec<_> = plan
        .functions
        .iter()
        .filter(|a| a.architecture == crate::names::Architecture::Arm64)
        .collect();
    let mut bins: Vec<&str> = arm64.iter().map(|a| a.binary_name()).collect();
    bins.sort_unstable();
    bins.dedup();
    let target_dir = workspace.target_dir.join("cargo-lambda");
    let zips = target_dir.join("zips");
    let mut command: Vec<std::ffi::OsString> = vec![
        program.into(),
        "lambda".into(),
        "build".into(),
        "--release".into(),
        "--arm64".into(),
        "--output-format".into(),
        "zip".into(),
        "--lambda-dir".into(),
        zips.clone().into(),
        "--manifest-path".into(),
        workspace.root.join("Cargo.toml").into(),
    ];
    for bin in &bins {
        command.extend(["--bin".into(), (*bin).into()]);
    }
    let step = progress.step(&format!(
        "cargo lambda build --release --arm64 --bin {}",
        bins.join(" --bin ")
    ));
    let _target = sh.push_env("CARGO_TARGET_DIR", &target_dir);
    tools.run_as_is(sh, &command)?;
    step.done("built with cargo-lambda");
    arm64
        .iter()
        .map(|a| {
            let zip = zips.join(a.binary_name()).join("bootstrap.zip");
            let size = std::fs::metadata(&zip)
                .with_context(|| format!("cargo-lambda made no {}", zip.display()))?
                .len();
            Ok((format!("{}/{}", a.service, a.function), size))
        })
        .collect::<anyhow::Result<_>>()
        .map(Some)
}

/// One `cargo xtask package --all dev --profile <profile>`, as a user runs it (the xtask binary
/// itself, already built).
pub(super) fn package_all(workspace: &Workspace, profile: Profile) -> anyhow::Result<Duration> {
    let command = ["package", "--all", "dev", "--profile", profile.as_str()];
    Ok(xtask(workspace, &command)?.0)
}

fn report(figures: &PackageFigures, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    if json {
        return print_json(figures);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "| measurement | seconds |")?;
    writeln!(out, "|---|---|")?;
    writeln!(
        out,
        "| `package --all`, nothing changed (median of {}) | {:.2} ({}) |",
        figures.noop_package_seconds.len(),
        median(&figures.noop_package_seconds),
        list(&figures.noop_package_seconds)
    )?;
    writeln!(
        out,
        "| no-op `cargo build` of the same binaries (median) | {:.2} ({}) |",
        median(&figures.noop_cargo_build_seconds),
        list(&figures.noop_cargo_build_seconds)
    )?;
    writeln!(out, "| ratio | {:.2} |", figures.noop_ratio)?;
    writeln!(
        out,
        "| `package --all` after touching {} | {:.2} |",
        figures.touched_service, figures.after_touch_seconds
    )?;
    writeln!(out)?;
    writeln!(out, "| zip | size |")?;
    writeln!(out, "|---|---|")?;
    for (name, size) in &figures.zips {
        writeln!(out, "| {name} | {} ({size} bytes) |", human_size(*size))?;
    }
    if let Some(theirs) = &figures.cargo_lambda_zips {
        writeln!(out)?;
        writeln!(
            out,
            "| zip | `package` | `cargo lambda build --release --arm64` | difference |"
        )?;
        writeln!(out, "|---|---|---|---|")?;
        for (name, their_size) in theirs {
            let Some((_, our_size)) = figures.zips.iter().find(|(n, _)| n == name) else {
                continue;
            };
            writeln!(
                out,
                "| {name} | {our_size} bytes | {their_size} bytes | {:+.1}% |",
                (*our_size as f64 / *their_size as f64 - 1.0) * 100.0
            )?;
        }
    }
    Ok(())
}
