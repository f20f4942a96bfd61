//! `cargo xtask bench package`: how long packaging takes when nothing changed and after a change,
//! against a no-op `cargo build` of the same binaries, and how big the zips are.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde::Serialize;
use xshell::Shell;

use crate::cli::Output;
use crate::names::{Environment, human_size};
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
}

pub fn run(workspace: &Workspace, progress: Progress, options: Options) -> anyhow::Result<()> {
    bench_package(
        workspace,
        progress,
        options.runs.max(1),
        options.output.json,
    )
}

fn bench_package(
    workspace: &Workspace,
    progress: Progress,
    runs: usize,
    json: bool,
) -> anyhow::Result<()> {
    let services: Vec<_> = workspace.services.iter().collect();
    let Some(touched) = services.first() else {
        bail!("this workspace has no services to measure")
    };
    let sh = Shell::new()?;
    let mut tools = Tools::detect(&sh, &workspace.root)?;
    let plan = package::plan(workspace, &services, Environment::Dev, &tools, false)?;

    progress.note("warming up: packaging every service once");
    let done = package::execute(&sh, workspace, plan.clone(), &mut tools, false, progress)?;

    let noop_package_seconds = measure(progress, "package --all, nothing changed", runs, || {
        package_all(workspace)
    })?;

    let manifest = workspace.root.join("Cargo.toml");
    let noop_cargo_build_seconds = measure(progress, "cargo build, nothing changed", runs, || {
        let started = Instant::now();
        for build in &plan.builds {
            let command = tools.command(build.builder, &manifest, &build.target, &build.bins);
            let _quiet = sh.push_env("CARGO_TERM_QUIET", "true");
            tools.run(&sh, &workspace.root, &command)?;
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
    let after_touch_seconds = package_all(workspace)?.as_secs_f64();
    step.done(&format!(
        "package --all after touching {}: {after_touch_seconds:.2}s",
        touched.name
    ));

    let figures = PackageFigures {
        noop_ratio: median(&noop_package_seconds) / median(&noop_cargo_build_seconds),
        noop_package_seconds,
        noop_cargo_build_seconds,
        touched_service: touched.name.clone(),
        after_touch_seconds,
        zips: done
            .functions
            .iter()
            .map(|a| {
                (
                    format!("{}/{}", a.service, a.function),
                    a.size.unwrap_or_default(),
                )
            })
            .collect(),
    };
    report(&figures, json)
}

/// One `cargo xtask package --all dev`, as a user runs it (the xtask binary itself, already built).
pub(super) fn package_all(workspace: &Workspace) -> anyhow::Result<Duration> {
    Ok(xtask(workspace, &["package", "--all", "dev"])?.0)
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
    Ok(())
}
