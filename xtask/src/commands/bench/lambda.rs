//! `cargo xtask bench lambda`: each service's packaged `bootstrap`, run through the local Lambda
//! Runtime API (`lambda-harness`) with its configuration pointing at the local emulator.
//!
//! - cold init: from spawning the process until its first `next` poll, over `--cold-starts` fresh
//!   processes;
//! - first request: the first invocation's latency in each of those processes;
//! - warm latency: p50 and p99 over `--invocations` invocations per route, in one process, after a
//!   short warm-up;
//! - peak RSS: the largest `VmHWM` any of those processes reached.
//!
//! The binaries are built in the release profile (or `--profile fast`) for this machine's architecture, then zipped
//! exactly as `package` zips them and unzipped again: what runs is the packaged `bootstrap`.
//! Where Lambda's architecture differs from this machine's (arm64 functions on an x86_64 host),
//! the same code is measured natively rather than through an instruction-set emulator, which
//! would measure the emulator.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use lambda_harness::{Bootstrap, Running};
use serde::Serialize;
use xshell::Shell;

use super::function::{
    Machine, Secrets, Subject, build, configured, event, machine, millis, subject,
};
use super::{max, median, min, percentile, report};
use crate::cli::{Install, Output};
use crate::environments::Profile;
use crate::local::emulator::Emulator;
use crate::progress::Progress;
use crate::release::compile::Tools;
use crate::release::package;
use crate::workspace::{Probe, Service, Workspace};

/// Each service's bootstrap through a local Lambda Runtime API: cold init, latency, memory.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The services to measure (default: all of them).
    services: Vec<String>,
    /// Fresh processes started per service, for cold init and the first request.
    #[arg(long, default_value_t = 20)]
    cold_starts: usize,
    /// Warm invocations per route.
    #[arg(long, default_value_t = 1000)]
    invocations: usize,
    /// Where the figures are written as JSON (default: target/bench/lambda.json).
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// The profile to build with: release (qa's and production's, the default) or fast (dev's).
    #[arg(long, value_name = "PROFILE", default_value = "release", value_parser = str::parse::<Profile>)]
    profile: Profile,
    #[command(flatten)]
    format: Output,
    #[command(flatten)]
    install: Install,
}

/// How long a bootstrap may take to poll, and an invocation to answer, before it is refused.
const WITHIN: Duration = Duration::from_secs(10);
const WARM_UP: usize = 20;

#[derive(Debug, Serialize)]
struct Figures {
    machine: Machine,
    commit: String,
    profile: Profile,
    cold_starts: usize,
    invocations: usize,
    functions: Vec<FunctionFigures>,
}

#[derive(Debug, Serialize)]
struct FunctionFigures {
    service: String,
    function: String,
    /// What Lambda runs; `measured_on` says what ran here.
    lambda_architecture: String,
    measured_on: String,
    zip_bytes: u64,
    cold_init_ms: Spread,
    first_request: String,
    first_request_ms: Spread,
    /// The first request that reaches a store, right after the first request: where the cost of
    /// clients that connect lazily shows.
    first_store_request: Option<String>,
    first_store_request_ms: Option<Spread>,
    peak_rss_mib: f64,
    routes: Vec<RouteFigures>,
}

#[derive(Debug, Serialize)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    all: Vec<f64>,
}

impl Spread {
    fn of(values: Vec<f64>) -> Spread {
        Spread {
            median: median(&values),
            min: min(&values),
            max: max(&values),
            all: values,
        }
    }
}

#[derive(Debug, Serialize)]
struct RouteFigures {
    route: String,
    store_free: bool,
    status: u16,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

pub fn run(workspace: &Workspace, progress: Progress, options: Options) -> anyhow::Result<()> {
    let services: Vec<&Service> = if options.services.is_empty() {
        workspace.services.iter().collect()
    } else {
        options
            .services
            .iter()
            .map(|name| workspace.service(name))
            .collect::<Result<_, _>>()?
    };
    let subjects = services
        .iter()
        .map(|service| subject(service))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cold_starts = options.cold_starts.max(1);
    let invocations = options.invocations.max(1);

    let sh = Shell::new()?;
    let mut tools = Tools::detect(&sh, &workspace.root)?;
    let bootstraps = build(
        workspace,
        &services,
        &sh,
        &mut tools,
        options.profile,
        options.install.tools,
        progress,
    )?;

    let emulator = Emulator::ensure(workspace, progress)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sdk = runtime.block_on(emulator.sdk_config(None));
    let secrets = Secrets::put(&runtime, &sdk)?;

    let mut functions = Vec::new();
    for ((service, subject), packaged) in services.iter().zip(&subjects).zip(&bootstraps) {
        for (function, path, zip_bytes) in packaged {
            let bootstrap = configured(
                Bootstrap::new(path),
                workspace,
                service,
                function,
                (&runtime, &sdk, &emulator.endpoint),
                &secrets,
                progress,
            )?;
            let figures = measure(
                &bootstrap,
                subject,
                cold_starts,
                invocations,
                progress,
                &format!("{}/{}", service.name, function.name),
            )?;
            functions.push(FunctionFigures {
                service: service.name.clone(),
                function: function.name.clone(),
                lambda_architecture: function.architecture.to_string(),
                measured_on: tools.host.clone(),
                zip_bytes: *zip_bytes,
                ..figures
            });
        }
    }

    let figures = Figures {
        machine: machine(&tools),
        profile: options.profile,
        commit: package::source(&sh, &workspace.root, &tools.toolchain).commit,
        cold_starts,
        invocations,
        functions,
    };
    let how = ("lambda", options.output, options.format.json);
    report(workspace, progress, how, &figures, print)
}

/// Cold starts, then warm invocations of every probe in one process.
fn measure(
    bootstrap: &Bootstrap,
    subject: &Subject,
    cold_starts: usize,
    invocations: usize,
    progress: Progress,
    name: &str,
) -> anyhow::Result<FunctionFigures> {
    let first = subject.probes.first().context("a subject with no routes")?;
    let step = progress.step(&format!("{name}: {cold_starts} cold starts"));
    let store = subject.probes.iter().find(|p| p.store);
    let (mut cold, mut first_request, mut first_store, mut peak) =
        (Vec::new(), Vec::new(), Vec::new(), 0u64);
    for _ in 0..cold_starts {
        let mut running = start(bootstrap, name)?;
        cold.push(millis(running.cold_init));
        first_request.push(millis(invoke(&mut running, first, name)?));
        if let Some(store) = store {
            first_store.push(millis(invoke(&mut running, store, name)?));
        }
        peak = peak.max(running.peak_rss().unwrap_or_default());
    }
    step.done(&format!(
        "{name}: cold init median {:.2} ms over {cold_starts} starts",
        median(&cold)
    ));

    let mut running = start(bootstrap, name)?;
    let mut routes = Vec::new();
    for probe in &subject.probes {
        let step = progress.step(&format!("{name}: {invocations} × {}", probe.label()));
        for _ in 0..WARM_UP {
            invoke(&mut running, probe, name)?;
        }
        let latencies = (0..invocations)
            .map(|_| invoke(&mut running, probe, name).map(millis))
            .collect::<anyhow::Result<Vec<f64>>>()?;
        let figures = RouteFigures {
            route: probe.label(),
            store_free: !probe.store,
            status: probe.status,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: max(&latencies),
        };
        step.done(&format!(
            "{name}: {} p50 {:.3} ms, p99 {:.3} ms",
            probe.label(),
            figures.p50_ms,
            figures.p99_ms
        ));
        routes.push(figures);
    }
    peak = peak.max(running.peak_rss().unwrap_or_default());
    Ok(FunctionFigures {
        service: String::new(),
        function: String::new(),
        lambda_architecture: String::new(),
        measured_on: String::new(),
        zip_bytes: 0,
        cold_init_ms: Spread::of(cold),
        first_request: first.label(),
        first_request_ms: Spread::of(first_request),
        first_store_request: store.map(Probe::label),
        first_store_request_ms: store.map(|_| Spread::of(first_store)),
        peak_rss_mib: peak as f64 / (1024.0 * 1024.0),
        routes,
    })
}

fn start(bootstrap: &Bootstrap, name: &str) -> anyhow::Result<Running> {
    bootstrap
        .start(WITHIN)
        .with_context(|| format!("starting {name} through the Runtime API harness"))
}

/// One invocation of `probe`; its latency, once its answer is the expected one.
fn invoke(running: &mut Running, probe: &Probe, name: &str) -> anyhow::Result<Duration> {
    let invocation = running
        .invoke(&event(probe)?, WITHIN)
        .with_context(|| format!("invoking {name} with {}", probe.label()))?;
    let answer = gate::event::answer(&invocation.response)
        .map_err(|problem| anyhow::anyhow!("{name} answered {}: {problem}", probe.label()))?;
    if let Some(wrong) = probe.verdict(answer.status, &answer.body) {
        bail!("{name} answered {} with {wrong}", probe.label());
    }
    Ok(invocation.latency)
}

/// Cold init, warm latency and peak RSS, against the targets of the issues that asked for them;
/// the first store request may cost at most this much more than the same route warm.
const COLD_INIT_TARGET_MS: f64 = 5.0;
const WARM_P50_TARGET_MS: f64 = 0.3;
const WARM_P99_TARGET_MS: f64 = 1.0;
const RSS_TARGET_MIB: f64 = 15.0;
const FIRST_STORE_OVER_WARM_TARGET_MS: f64 = 2.0;

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn print(figures: &Figures) {
    let m = &figures.machine;
    println!(
        "{} × {}, {} GiB, {}; {}; commit {}; {} profile",
        m.cpus, m.cpu, m.memory_gib, m.os, m.toolchain, figures.commit, figures.profile
    );
    println!();
    println!(
        "| function | measured on | cold init, ms: median (min–max) of {} | first request, ms: median (max) | first store request, ms: median (max) | peak RSS | zip |",
        figures.cold_starts
    );
    println!("|---|---|---|---|---|---|---|");
    for f in &figures.functions {
        println!(
            "| {}/{} | {} (Lambda: {}) | {:.2} ({:.2}–{:.2}) {} | {:.2} ({:.2}) | {} | {:.1} MiB {} | {:.1} MB |",
            f.service,
            f.function,
            f.measured_on,
            f.lambda_architecture,
            f.cold_init_ms.median,
            f.cold_init_ms.min,
            f.cold_init_ms.max,
            verdict(f.cold_init_ms.median <= COLD_INIT_TARGET_MS),
            f.first_request_ms.median,
            f.first_request_ms.max,
            f.first_store_request_ms.as_ref().map_or_else(
                || "none measured".to_owned(),
                |s| {
                    let warm = f.routes.iter().find(|r| !r.store_free).map(|r| r.p50_ms);
                    let over = warm.map(|warm| s.median - warm);
                    format!(
                        "{:.2} ({:.2}){}",
                        s.median,
                        s.max,
                        over.map_or_else(String::new, |over| format!(
                            ", {over:+.2} over warm p50 {}",
                            verdict(over <= FIRST_STORE_OVER_WARM_TARGET_MS)
                        ))
                    )
                }
            ),
            f.peak_rss_mib,
            verdict(f.peak_rss_mib <= RSS_TARGET_MIB),
            f.zip_bytes as f64 / 1e6
        );
    }
    println!();
    println!(
        "| function | route | warm p50, ms | warm p99, ms | max, ms | ({} invocations) |",
        figures.invocations
    );
    println!("|---|---|---|---|---|---|");
    for f in &figures.functions {
        for r in &f.routes {
            let target = if r.store_free {
                verdict(r.p50_ms <= WARM_P50_TARGET_MS && r.p99_ms <= WARM_P99_TARGET_MS)
            } else {
                "store route: no target"
            };
            println!(
                "| {}/{} | {} | {:.3} | {:.3} | {:.3} | {target} |",
                f.service, f.function, r.route, r.p50_ms, r.p99_ms, r.max_ms
            );
        }
    }
}
