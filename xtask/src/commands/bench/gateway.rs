//! `cargo xtask bench gateway`: what the local API Gateway of `up` adds to a request, over
//! handing the same REST proxy event to the function through `lambda-harness` directly; natively
//! (the service built for this machine, as `bench lambda` builds it) and under qemu (the arm64
//! zip deployed to the local emulator, as `up` runs it); and the cold start of that deployed
//! function under qemu.
//!
//! Both paths run the same instance kind with the same environment and the service's first
//! store-free probe. Direct: the event, built once by the gateway's own event builder, timed
//! around `Running::invoke`. Through the gateway: an HTTP/1.1 request on a kept-alive connection
//! to a gateway on 127.0.0.1 with one instance, timed from the first byte written to the last
//! byte read, so it includes reading and writing HTTP, the event builder, the response merger and
//! the CloudWatch Logs hand-off. The overhead is the difference of the percentiles.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lambda_harness::Bootstrap;
use serde::Serialize;
use xshell::Shell;

use super::function::{self, Machine, Secrets, configured, event, millis, stage};
use super::{max, median, min, percentile, report};
use crate::cli::{Install, Output};
use crate::environments::Environment;
use crate::local::deployed::Deployed;
use crate::local::gateway::terminal::Echo;
use crate::local::gateway::{self, Instances, Launch, logs::Logs};
use crate::progress::Progress;
use crate::release::compile::Tools;
use crate::release::package;
use crate::workspace::{Probe, Workspace};

/// The local API Gateway's overhead per request, natively and under qemu; cold start under qemu.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask deploy hardware dev --local && cargo xtask bench gateway\n  \
    cargo xtask bench gateway users --invocations 5000 --json\n\n\
    The qemu figures run the arm64 zip deployed to <service>-<env> on the local emulator; deploy it\n\
    first. The native ones build the service for this machine in the release profile.")]
pub struct Options {
    /// The service to measure.
    #[arg(default_value = "hardware")]
    service: String,
    /// The environment whose deployed function runs under qemu.
    #[arg(long = "env", default_value = "dev")]
    environment: Environment,
    /// Requests timed per path and architecture, after a warm-up.
    #[arg(long, default_value_t = 1000)]
    invocations: usize,
    /// Fresh instances of the deployed function started under qemu.
    #[arg(long, default_value_t = 10)]
    cold_starts: usize,
    /// Where the figures are written as JSON (default: target/bench/gateway.json).
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    #[command(flatten)]
    format: Output,
    #[command(flatten)]
    install: Install,
}

const WITHIN: Duration = Duration::from_secs(30);
const WARM_UP: usize = 50;
/// The target: at most this much p50 overhead natively.
const TARGET_P50_MS: f64 = 1.0;

#[derive(Debug, Serialize)]
struct Figures {
    machine: Machine,
    commit: String,
    service: String,
    route: String,
    invocations: usize,
    runs: Vec<Run>,
    qemu_cold_start: Option<ColdStart>,
}

/// One architecture's figures: the function run directly and through the gateway.
#[derive(Debug, Serialize)]
struct Run {
    /// `native` (this machine's build) or `qemu` (the deployed arm64 zip).
    how: String,
    architecture: String,
    direct_p50_ms: f64,
    direct_p99_ms: f64,
    gateway_p50_ms: f64,
    gateway_p99_ms: f64,
    overhead_p50_ms: f64,
    overhead_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct ColdStart {
    starts: usize,
    /// From spawning qemu until the function's first `next` poll.
    init_median_ms: f64,
    init_min_ms: f64,
    init_max_ms: f64,
    /// The first request of each fresh instance (qemu translates code on first use).
    first_request_median_ms: f64,
    zip: String,
}

pub fn run(workspace: &Workspace, progress: Progress, options: Options) -> anyhow::Result<()> {
    let service = workspace.service(&options.service)?;
    let subject = function::subject(service)?;
    let probe = subject
        .probes
        .iter()
        .find(|p| !p.store)
        .expect("subject() keeps services with a store-free probe");
    let [function] = service.functions.as_slice() else {
        bail!(
            "bench gateway measures services with one function; {} has {}",
            service.name,
            service.functions.len()
        );
    };
    let invocations = options.invocations.max(1);

    // The deployed zip first: without it there is nothing to run under qemu.
    let session = crate::local::connect(
        None,
        None,
        true,
        None,
        None,
        crate::local::Access::Changes,
        workspace,
        progress,
    )?;
    let aws = &session.aws;
    let endpoint = session.emulator()?.endpoint.clone();
    let deployed = aws
        .runtime
        .block_on(Deployed::read(aws, service, options.environment))?;
    let deployed = deployed
        .first()
        .context("the deployed stack has no function")?;
    let scratch = workspace.target_dir.join("local/up");
    let (arm64, architecture) = aws.runtime.block_on(deployed.fetch(aws, &scratch))?;

    let sh = Shell::new()?;
    let mut tools = Tools::detect(&sh, &workspace.root)?;
    let install = options.install.tools;
    let release = crate::environments::Profile::Release;
    let built = function::build(
        workspace,
        &[service],
        &sh,
        &mut tools,
        release,
        install,
        progress,
    )?;
    let native = built[0][0].1.clone();

    let secrets = Secrets::put(&aws.runtime, &aws.sdk)?;
    let configure = |bootstrap: Bootstrap| {
        configured(
            bootstrap,
            workspace,
            service,
            function,
            (&aws.runtime, &aws.sdk, &endpoint),
            &secrets,
            progress,
        )
    };
    let native = configure(Bootstrap::new(native))?;
    let emulated = configure(gateway::runner(&arm64, architecture, install)?)?;
    let logs = Logs::start(&aws.sdk);

    let mut runs = Vec::new();
    for (how, bootstrap, architecture) in [
        ("native", &native, tools.host.clone()),
        ("qemu", &emulated, architecture.to_string()),
    ] {
        let name = format!("{}/{how}", service.name);
        let step = progress.step(&format!("{name}: {invocations} requests each way"));
        let direct = direct(bootstrap, probe, invocations)?;
        let through = through_gateway(bootstrap, &deployed.name, probe, invocations, &logs)?;
        let run = Run {
            how: how.to_owned(),
            architecture,
            direct_p50_ms: percentile(&direct, 0.5),
            direct_p99_ms: percentile(&direct, 0.99),
            gateway_p50_ms: percentile(&through, 0.5),
            gateway_p99_ms: percentile(&through, 0.99),
            overhead_p50_ms: percentile(&through, 0.5) - percentile(&direct, 0.5),
            overhead_p99_ms: percentile(&through, 0.99) - percentile(&direct, 0.99),
        };
        step.done(&format!(
            "{name}: overhead p50 {:.3} ms, p99 {:.3} ms",
            run.overhead_p50_ms, run.overhead_p99_ms
        ));
        runs.push(run);
    }

    let starts = options.cold_starts;
    let qemu_cold_start = match starts {
        0 => None,
        _ => {
            let step = progress.step(&format!("{}: {starts} cold starts", deployed.name));
            let event = event(probe)?;
            let (mut init, mut first) = (Vec::new(), Vec::new());
            for _ in 0..starts {
                let mut running = emulated
                    .start(WITHIN)
                    .with_context(|| format!("starting {} under qemu", deployed.name))?;
                init.push(millis(running.cold_init));
                let started = Instant::now();
                running.invoke(&event, WITHIN)?;
                first.push(millis(started.elapsed()));
                running.stop();
            }
            step.done(&format!(
                "{}: cold init median {:.1} ms under qemu",
                deployed.name,
                median(&init)
            ));
            Some(ColdStart {
                starts,
                init_median_ms: median(&init),
                init_min_ms: min(&init),
                init_max_ms: max(&init),
                first_request_median_ms: median(&first),
                zip: deployed.key.clone(),
            })
        }
    };

    let figures = Figures {
        machine: function::machine(&tools),
        commit: package::source(&sh, &workspace.root, &tools.toolchain).commit,
        service: service.name.clone(),
        route: probe.label(),
        invocations,
        runs,
        qemu_cold_start,
    };
    let how = ("gateway", options.output, options.format.json);
    report(workspace, progress, how, &figures, print)
}

/// Latencies of `invocations` direct invocations of one warm instance, in milliseconds.
fn direct(bootstrap: &Bootstrap, probe: &Probe, invocations: usize) -> anyhow::Result<Vec<f64>> {
    let event = event(probe)?;
    let mut running = bootstrap.start(WITHIN).context("starting the function")?;
    let mut latencies = Vec::with_capacity(invocations);
    for n in 0..WARM_UP + invocations {
        let started = Instant::now();
        let invocation = running.invoke(&event, WITHIN)?;
        let took = started.elapsed();
        let answer: serde_json::Value = serde_json::from_slice(&invocation.response)?;
        if answer["statusCode"] != probe.status {
            bail!(
                "{} answered {} directly, not {}",
                probe.label(),
                answer["statusCode"],
                probe.status
            );
        }
        if n >= WARM_UP {
            latencies.push(millis(took));
        }
    }
    running.stop();
    Ok(latencies)
}

/// Latencies of `invocations` requests through a gateway with one instance, in milliseconds.
fn through_gateway(
    bootstrap: &Bootstrap,
    function: &str,
    probe: &Probe,
    invocations: usize,
    logs: &Logs,
) -> anyhow::Result<Vec<f64>> {
    let launch = Launch {
        function: function.to_owned(),
        bootstrap: bootstrap.clone(),
        timeout: WITHIN,
        memory_mb: 128,
        version: "bench".into(),
    };
    let instances = Arc::new(Instances::new("bench", launch, 1, logs.clone(), Echo::Off));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let serving = Arc::clone(&instances);
    std::thread::spawn(move || gateway::serve(listener, stage(), serving));

    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: hardware.dev.biometrix.example\r\nAccept: application/json\r\n\r\n",
        probe.method, probe.path
    );
    let mut latencies = Vec::with_capacity(invocations);
    for n in 0..WARM_UP + invocations {
        let started = Instant::now();
        stream.write_all(request.as_bytes())?;
        let status = lambda_harness::http::read_response(&mut reader)?.status;
        let took = started.elapsed();
        if status != probe.status {
            bail!(
                "{} answered {status} through the gateway, not {}",
                probe.label(),
                probe.status
            );
        }
        if n >= WARM_UP {
            latencies.push(millis(took));
        }
    }
    instances.stop();
    Ok(latencies)
}

fn print(figures: &Figures) {
    let m = &figures.machine;
    println!(
        "{} × {}, {} GiB, {}; {}; commit {}",
        m.cpus, m.cpu, m.memory_gib, m.os, m.toolchain, figures.commit
    );
    println!(
        "{} {} through the local API Gateway, {} requests each (ms):",
        figures.service, figures.route, figures.invocations
    );
    println!(
        "  {:<7} {:<8} {:>10} {:>10} {:>11} {:>11} {:>12} {:>12}",
        "RUN",
        "ARCH",
        "DIRECT P50",
        "DIRECT P99",
        "GATEWAY P50",
        "GATEWAY P99",
        "OVERHEAD P50",
        "OVERHEAD P99"
    );
    for run in &figures.runs {
        println!(
            "  {:<7} {:<8} {:>10.3} {:>10.3} {:>11.3} {:>11.3} {:>12.3} {:>12.3}",
            run.how,
            run.architecture.split('-').next().unwrap_or_default(),
            run.direct_p50_ms,
            run.direct_p99_ms,
            run.gateway_p50_ms,
            run.gateway_p99_ms,
            run.overhead_p50_ms,
            run.overhead_p99_ms
        );
    }
    if let Some(native) = figures.runs.iter().find(|r| r.how == "native") {
        println!(
            "  target: at most {TARGET_P50_MS} ms of p50 overhead natively: {}",
            if native.overhead_p50_ms <= TARGET_P50_MS {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    if let Some(cold) = &figures.qemu_cold_start {
        println!(
            "  cold start under qemu ({} starts of {}): init median {:.1} ms ({:.1}–{:.1}), first \
             request median {:.1} ms",
            cold.starts,
            cold.zip,
            cold.init_median_ms,
            cold.init_min_ms,
            cold.init_max_ms,
            cold.first_request_median_ms
        );
    }
}
