//! `cargo xtask bench package`: how long packaging takes when nothing changed and after a change,
//! against a no-op `cargo build` of the same binaries, and how big the zips are.
//! `cargo xtask bench deploy`: how long a deploy with nothing to do takes, end to end, against the
//! local emulator.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde::Serialize;
use xshell::Shell;

use crate::compile::Tools;
use crate::names::Environment;
use crate::package::{self, human_size};
use crate::progress::{Progress, print_json};
use crate::workspace::Workspace;

/// Measure the release tool; the figures go into docs/benchmarks.md.
#[derive(Debug, clap::Args)]
pub struct Bench {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// `package --all` with nothing changed and after touching one service; zip sizes.
    Package {
        /// How many times to repeat each no-op measurement.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print the figures as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// `deploy <service> dev --local` with nothing changed, after a first deploy.
    Deploy {
        /// The service to deploy (default: the first one).
        service: Option<String>,
        /// How many times to repeat the no-op deploy.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print the figures as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
struct DeployFigures {
    service: String,
    first_deploy_seconds: f64,
    first_outcome: String,
    noop_deploy_seconds: Vec<f64>,
    noop_median_seconds: f64,
    noop_max_seconds: f64,
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

impl Bench {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        match self.what {
            What::Package { runs, json } => bench_package(workspace, progress, runs.max(1), json),
            What::Deploy {
                service,
                runs,
                json,
            } => bench_deploy(workspace, progress, service, runs.max(1), json),
        }
    }
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

    let step = progress.step(&format!("package --all, nothing changed ({runs} runs)"));
    let noop_package_seconds = repeat(runs, || package_all(workspace))?;
    step.done(&format!(
        "package --all, nothing changed: median {:.2}s",
        median(&noop_package_seconds)
    ));

    let step = progress.step(&format!("cargo build, nothing changed ({runs} runs)"));
    let manifest = workspace.root.join("Cargo.toml");
    let noop_cargo_build_seconds = repeat(runs, || {
        let started = Instant::now();
        for build in &plan.builds {
            let command = tools.command(build.builder, &manifest, &build.target, &build.bins);
            let _quiet = sh.push_env("CARGO_TERM_QUIET", "true");
            tools.run(&sh, &workspace.root, &command)?;
        }
        Ok(started.elapsed())
    })?;
    step.done(&format!(
        "cargo build, nothing changed: median {:.2}s",
        median(&noop_cargo_build_seconds)
    ));

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

fn bench_deploy(
    workspace: &Workspace,
    progress: Progress,
    service: Option<String>,
    runs: usize,
    json: bool,
) -> anyhow::Result<()> {
    let service = match service {
        Some(name) => workspace.service(&name)?.name.clone(),
        None => workspace
            .services
            .first()
            .context("this workspace has no services to measure")?
            .name
            .clone(),
    };
    let step = progress.step(&format!(
        "first deploy of {service} to the local emulator (builds and creates what is missing)"
    ));
    let (first, first_outcome) = deploy_locally(workspace, &service)?;
    step.done(&format!("first deploy: {first_outcome}"));

    let step = progress.step(&format!("deploy, nothing changed ({runs} runs)"));
    let noop_deploy_seconds = repeat(runs, || {
        let (took, outcome) = deploy_locally(workspace, &service)?;
        if outcome != "unchanged" {
            bail!("a deploy with nothing changed reported `{outcome}`, not `unchanged`");
        }
        Ok(took)
    })?;
    let figures = DeployFigures {
        first_deploy_seconds: first.as_secs_f64(),
        first_outcome,
        noop_median_seconds: median(&noop_deploy_seconds),
        noop_max_seconds: noop_deploy_seconds.iter().copied().fold(0.0, f64::max),
        noop_deploy_seconds,
        service,
    };
    step.done(&format!(
        "deploy, nothing changed: median {:.2}s",
        figures.noop_median_seconds
    ));
    if json {
        return print_json(&figures);
    }
    println!("| measurement | seconds |");
    println!("|---|---|");
    println!(
        "| first `deploy {} dev --local` ({}) | {:.2} |",
        figures.service, figures.first_outcome, figures.first_deploy_seconds
    );
    println!(
        "| `deploy {} dev --local`, nothing changed (median of {}; max) | {:.2} ({:.2}) |",
        figures.service,
        figures.noop_deploy_seconds.len(),
        figures.noop_median_seconds,
        figures.noop_max_seconds
    );
    Ok(())
}

/// One `cargo xtask deploy <service> dev --local`, as a user runs it; its time and outcome.
fn deploy_locally(workspace: &Workspace, service: &str) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let output = Command::new(std::env::current_exe()?)
        .arg("--manifest-path")
        .arg(workspace.root.join("Cargo.toml"))
        .args(["deploy", service, "dev", "--local", "--json"])
        .stderr(Stdio::null())
        .output()
        .context("running deploy")?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "deploy failed during the benchmark; run `cargo xtask deploy {service} dev --local` to see why"
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let outcome = report["stacks"][0]["outcome"]
        .as_str()
        .context("deploy --json reported no outcome")?
        .to_owned();
    Ok((took, outcome))
}

/// One `cargo xtask package --all dev`, as a user runs it (the xtask binary itself, already built).
fn package_all(workspace: &Workspace) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new(std::env::current_exe()?)
        .arg("--manifest-path")
        .arg(workspace.root.join("Cargo.toml"))
        .args(["package", "--all", "dev"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running package")?;
    if !status.success() {
        bail!("package --all failed during the benchmark; run it alone to see why");
    }
    Ok(started.elapsed())
}

fn repeat(
    runs: usize,
    mut once: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Vec<f64>> {
    (0..runs).map(|_| once().map(|d| d.as_secs_f64())).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn report(figures: &PackageFigures, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    if json {
        return print_json(figures);
    }
    let mut out = std::io::stdout().lock();
    let list = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
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
