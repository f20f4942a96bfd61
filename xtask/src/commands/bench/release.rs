//! `cargo xtask bench release`: the release loop against the local emulator. After a first
//! `deploy --all dev --local`, it times package, publish and deploy with nothing changed, then one
//! service's code change end to end (build, zip, upload, change set, update) and its revert.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{Install, Output};
use crate::environments::Environment;
use crate::environments::Profile;
use crate::progress::{Progress, print_json};
use crate::workspace::Workspace;

use super::package::package_all;
use super::{list, max, measure, median, xtask};

/// The release loop on the local emulator: no-op package, publish and deploy; one service changed.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The service whose code the benchmark changes (default: the first one).
    service: Option<String>,
    /// How many times to repeat each no-op measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// How many code changes to deploy one after another (the figure is their median).
    #[arg(long, default_value_t = 3)]
    changes: usize,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    install: Install,
}

#[derive(Debug, Serialize)]
struct Figures {
    services: Vec<String>,
    first_deploy_seconds: f64,
    noop_package_seconds: Vec<f64>,
    noop_publish_seconds: Vec<f64>,
    noop_publish_requests: u64,
    noop_publish_bytes: u64,
    noop_deploy_seconds: Vec<f64>,
    changed_service: String,
    /// The profile dev builds with, which the changes were built with.
    profile: Profile,
    /// Each change: build, zip, upload, change set, update, and the probes' answers from the new
    /// code (deploy probes what it deployed before it reports).
    change_deploy_seconds: Vec<f64>,
    change_bytes_sent: u64,
    revert_deploy_seconds: f64,
}

/// Marks the temporary change; a run interrupted before restoring the file is cleaned up by the next.
const MARK: &str =
    "// cargo xtask bench release: a temporary change, removed when the benchmark ends";

pub fn run(workspace: &Workspace, progress: Progress, options: Options) -> anyhow::Result<()> {
    let runs = options.runs.max(1);
    let changed = match &options.service {
        Some(name) => workspace.service(name)?,
        None => workspace
            .services
            .first()
            .context("this workspace has no services to measure")?,
    };
    let main = changed.manifest_path.with_file_name("src/main.rs");
    Change::clean_up(&main, progress)?;
    let all = ["deploy", "--all", "dev", "--local", "--json"];

    let step = progress.step("first deploy --all dev --local (builds and creates what is missing)");
    let first_deploy = [&all[..], &["--install-tools"]].concat();
    let (first, _) = xtask(
        workspace,
        if options.install.tools {
            &first_deploy
        } else {
            &all
        },
    )?;
    step.done(&format!("first deploy: {:.1}s", first.as_secs_f64()));

    let noop_package_seconds = measure(progress, "package --all, nothing changed", runs, || {
        package_all(workspace, dev()?.profile())
    })?;

    let (mut requests, mut bytes) = (0, 0);
    let noop_publish_seconds = measure(progress, "publish --all, nothing changed", runs, || {
        let (took, report) = json(xtask(
            workspace,
            &["publish", "--all", "dev", "--local", "--json"],
        )?)?;
        let number = |name: &str| report[name].as_u64().unwrap_or_default();
        if number("put_requests") != 0 {
            bail!("a publish with nothing changed uploaded something: {report}");
        }
        requests = number("head_requests");
        bytes = number("bytes_sent");
        Ok(took)
    })?;
    progress.note(&format!(
        "publish, nothing changed: {requests} requests, {bytes} bytes"
    ));

    let noop_deploy_seconds = measure(progress, "deploy --all, nothing changed", runs, || {
        let (took, report) = json(xtask(workspace, &all)?)?;
        expect_outcome(&report, "unchanged")?;
        Ok(took)
    })?;

    let service = changed.name.clone();
    let one = ["deploy", service.as_str(), "dev", "--local", "--json"];
    let mut change_deploy_seconds = Vec::new();
    let mut change_bytes_sent = 0;
    let mut change = None;
    for run in 1..=options.changes.max(1) {
        let step = progress.step(&format!("deploy {service} after change {run} to its code"));
        // Each change replaces the last, so every deploy ships new code.
        drop(change.take());
        change = Some(Change::apply(&main)?);
        let (took, report) = json(xtask(workspace, &one)?)?;
        expect_outcome(&report, "updated")?;
        expect_probes_passed(&report)?;
        change_bytes_sent = report["bytes_sent"].as_u64().unwrap_or_default();
        step.done(&format!(
            "deploy {service} after change {run}: {:.1}s",
            took.as_secs_f64()
        ));
        change_deploy_seconds.push(took.as_secs_f64());
    }
    let step = progress.step(&format!("deploy {service} after reverting the change"));
    if let Some(change) = change {
        change.revert()?;
    }
    let (revert_deploy, report) = json(xtask(workspace, &one)?)?;
    expect_outcome(&report, "updated")?;
    step.done(&format!(
        "deploy {service} after the revert: {:.1}s",
        revert_deploy.as_secs_f64()
    ));

    let figures = Figures {
        services: workspace.services.iter().map(|s| s.name.clone()).collect(),
        first_deploy_seconds: first.as_secs_f64(),
        noop_package_seconds,
        noop_publish_seconds,
        noop_publish_requests: requests,
        noop_publish_bytes: bytes,
        noop_deploy_seconds,
        changed_service: service,
        profile: dev()?.profile(),
        change_deploy_seconds,
        change_bytes_sent,
        revert_deploy_seconds: revert_deploy.as_secs_f64(),
    };
    if options.output.json {
        return print_json(&figures);
    }
    print(&figures);
    Ok(())
}

fn json((took, stdout): (Duration, Vec<u8>)) -> anyhow::Result<(Duration, Value)> {
    let report = serde_json::from_slice(&stdout).context("a --json report that is not JSON")?;
    Ok((took, report))
}

/// Every stack in a deploy report was probed, and its new code answered every probe.
fn expect_probes_passed(report: &Value) -> anyhow::Result<()> {
    for stack in report["stacks"].as_array().into_iter().flatten() {
        if stack["probes"]["result"] != "passed" {
            bail!(
                "{} was deployed but its probes did not pass: {}",
                stack["stack"],
                stack["probes"]
            );
        }
    }
    Ok(())
}

/// Every stack in a deploy report ended with `outcome`.
fn expect_outcome(report: &Value, outcome: &str) -> anyhow::Result<()> {
    let stacks = report["stacks"]
        .as_array()
        .context("a deploy report without stacks")?;
    for stack in stacks {
        if stack["outcome"] != outcome {
            bail!(
                "{} reported `{}` where the benchmark expects `{outcome}`",
                stack["stack"],
                stack["outcome"]
            );
        }
    }
    Ok(())
}

fn print(figures: &Figures) {
    println!(
        "| measurement ({}) | seconds |",
        figures.services.join(", ")
    );
    println!("|---|---|");
    println!(
        "| first `deploy --all dev --local` | {:.2} |",
        figures.first_deploy_seconds
    );
    for (what, values) in [
        ("`package --all dev`", &figures.noop_package_seconds),
        ("`publish --all dev --local`", &figures.noop_publish_seconds),
        ("`deploy --all dev --local`", &figures.noop_deploy_seconds),
    ] {
        println!(
            "| {what}, nothing changed (median of {}; max) | {:.2} ({:.2}; {}) |",
            values.len(),
            median(values),
            max(values),
            list(values)
        );
    }
    println!(
        "| publish, nothing changed: requests, bytes sent | {} requests, {} bytes |",
        figures.noop_publish_requests, figures.noop_publish_bytes
    );
    let changes = &figures.change_deploy_seconds;
    println!(
        "| `deploy {} dev --local` after a code change, {} profile, probes answered (median of {}; max) ({} bytes uploaded) | {:.2} ({:.2}; {}) |",
        figures.changed_service,
        figures.profile,
        changes.len(),
        figures.change_bytes_sent,
        median(changes),
        max(changes),
        list(changes)
    );
    println!(
        "| `deploy {} dev --local` after reverting it | {:.2} |",
        figures.changed_service, figures.revert_deploy_seconds
    );
}

/// A change to a service's `main.rs` that changes its binary: a kept static holding the time.
/// Reverted on drop, so a failed deploy leaves the source as it was.
#[derive(Debug)]
struct Change {
    path: PathBuf,
    original: Vec<u8>,
    reverted: bool,
}

impl Change {
    fn apply(path: &Path) -> anyhow::Result<Change> {
        let original =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut changed = original.clone();
        changed.extend_from_slice(
            format!(
                "\n{MARK}\n#[used]\nstatic BENCH_RELEASE_CHANGE: [u8; 32] = *b\"{nanos:032}\";\n"
            )
            .as_bytes(),
        );
        std::fs::write(path, changed).with_context(|| format!("changing {}", path.display()))?;
        Ok(Change {
            path: path.to_owned(),
            original,
            reverted: false,
        })
    }

    fn revert(mut self) -> anyhow::Result<()> {
        self.reverted = true;
        std::fs::write(&self.path, &self.original)
            .with_context(|| format!("restoring {}", self.path.display()))
    }

    /// Removes what an interrupted run left behind.
    fn clean_up(path: &Path, progress: Progress) -> anyhow::Result<()> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(at) = text.find(MARK) {
            progress.note(&format!(
                "removing the temporary change an interrupted benchmark left in {}",
                path.display()
            ));
            std::fs::write(path, text[..at].trim_end_matches('\n').to_owned() + "\n")
                .with_context(|| format!("restoring {}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Change {
    fn drop(&mut self) {
        if !self.reverted {
            let _ = std::fs::write(&self.path, &self.original);
        }
    }
}

/// The environment the benchmarks deploy to, as the workspace declares it.
fn dev() -> anyhow::Result<Environment> {
    "dev".parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_reverted_and_an_interrupted_one_cleaned_up() {
        let dir = std::env::temp_dir().join(format!("bench-change-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let main = dir.join("main.rs");
        let source = "fn main() {}\n";
        std::fs::write(&main, source).unwrap();

        let change = Change::apply(&main).unwrap();
        let changed = std::fs::read_to_string(&main).unwrap();
        assert!(
            changed.starts_with(source) && changed.contains("#[used]"),
            "{changed}"
        );
        drop(change);
        assert_eq!(std::fs::read_to_string(&main).unwrap(), source);

        let change = Change::apply(&main).unwrap();
        std::mem::forget(change); // as if the process were killed
        assert_ne!(std::fs::read_to_string(&main).unwrap(), source);
        Change::clean_up(&main, Progress::detect()).unwrap();
        assert_eq!(std::fs::read_to_string(&main).unwrap(), source);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
