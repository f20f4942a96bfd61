//! `cargo xtask bench`: the figures docs/benchmarks.md records, each from one command anyone can
//! rerun. Targets are compared in the output, never asserted in timed tests.
//!
//! - `bench package`: packaging with nothing changed, against a no-op `cargo build`; zip sizes.
//! - `bench release`: the release loop against the local emulator: package, publish and deploy
//!   with nothing changed, and one service's change end to end.
//! - `bench lambda`: each service's packaged `bootstrap` through a local Lambda Runtime API: cold
//!   init, first request, warm latency, peak memory.
//! - `bench gateway`: what `up`'s local API Gateway adds per request over the Runtime API alone,
//!   natively and under qemu; the deployed arm64 function's cold start under qemu.

mod function;
mod gateway;
mod lambda;
mod package;
mod release;

use std::time::{Duration, Instant};

use xshell::{Shell, cmd};

use crate::progress::Progress;
use crate::workspace::Workspace;

/// Measure the release tool and the services; the figures go into docs/benchmarks.md.
#[derive(Debug, clap::Args)]
pub struct Bench {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    Package(package::Options),
    Release(release::Options),
    Lambda(lambda::Options),
    Gateway(gateway::Options),
}

impl Bench {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        match self.what {
            What::Package(options) => package::run(workspace, progress, options),
            What::Release(options) => release::run(workspace, progress, options),
            What::Lambda(options) => lambda::run(workspace, progress, options),
            What::Gateway(options) => gateway::run(workspace, progress, options),
        }
    }
}

/// One `cargo xtask <args>` on `workspace`, as a user runs it (this very binary), timed from start
/// to exit; its stdout, which `--json` makes the result. Its progress goes to stderr only when
/// asked (`BENCH_VERBOSE=1`): it would drown the figures.
fn xtask(workspace: &Workspace, args: &[&str]) -> anyhow::Result<(Duration, Vec<u8>)> {
    let sh = Shell::new()?;
    let exe = std::env::current_exe()?;
    let manifest = workspace.root.join("Cargo.toml");
    let mut command = cmd!(sh, "{exe} --manifest-path {manifest} {args...}").quiet();
    if std::env::var_os("BENCH_VERBOSE").is_none() {
        command = command.ignore_stderr();
    }
    let started = Instant::now();
    let stdout = command.read().map_err(|_| {
        anyhow::anyhow!(
            "`cargo xtask {}` failed during the benchmark; run it alone to see why",
            args.join(" ")
        )
    })?;
    Ok((started.elapsed(), stdout.into_bytes()))
}

/// Runs `once` `runs` times as one progress step named `what`; the durations in seconds.
fn measure(
    progress: Progress,
    what: &str,
    runs: usize,
    mut once: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Vec<f64>> {
    let step = progress.step(&format!("{what} ({runs} runs)"));
    let seconds = (0..runs)
        .map(|_| once().map(|d| d.as_secs_f64()))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    step.done(&format!("{what}: median {:.2}s", median(&seconds)));
    Ok(seconds)
}

/// The value below which `fraction` of `values` fall (nearest rank); `values` need not be sorted.
fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Seconds to two decimals, space-separated, for the tables.
fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::min)
}

/// Ends a benchmark: `figures` written as pretty JSON to `output` (default
/// `target/bench/<name>.json`), then printed as JSON with `json`, else by `print`.
fn report<F: serde::Serialize>(
    workspace: &Workspace,
    progress: Progress,
    (name, output, json): (&str, Option<std::path::PathBuf>, bool),
    figures: &F,
    print: impl FnOnce(&F),
) -> anyhow::Result<()> {
    let output = output.unwrap_or_else(|| workspace.target_dir.join(format!("bench/{name}.json")));
    let bytes = serde_json::to_vec_pretty(figures)?;
    crate::release::artifact::write_atomically(&output, &bytes)?;
    progress.note(&format!("figures written to {}", output.display()));
    if json {
        return crate::progress::print_json(figures);
    }
    print(figures);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0]), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
        assert_eq!((min(&[2.0, 1.0]), max(&[2.0, 1.0])), (1.0, 2.0));
    }
}
