//! `cargo xtask`: the build-and-release tool. This file parses flags and dispatches; each command
//! lives in a file of its own under `commands/`. ARCHITECTURE.md has the map of the layers.

mod aws;
mod cli;
mod commands;
mod environments;
mod local;
mod names;
mod progress;
mod release;
#[cfg(test)]
mod tidy;
mod wait;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{
    bench, bootstrap, deploy, destroy, gc, invoke, lambda_run, logs, package, promote, publish,
    reset_history, rollback, serve, status, stop, up,
};
use crate::progress::Progress;
use crate::workspace::Workspace;

/// Build and release the biometrix HTTP APIs.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    /// The workspace to work on (default: this one).
    #[arg(long, global = true, value_name = "PATH")]
    manifest_path: Option<PathBuf>,
    /// Read the workspace from this output of `cargo metadata --no-deps --format-version 1`
    /// instead of running cargo (the release workflow's deploy job, where nothing may compile).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "manifest_path"
    )]
    cargo_metadata: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Package(package::Package),
    Publish(publish::Publish),
    Deploy(deploy::Deploy),
    Serve(serve::Serve),
    Status(status::Status),
    Rollback(rollback::Rollback),
    ResetHistory(reset_history::ResetHistory),
    Promote(promote::Promote),
    Destroy(destroy::Destroy),
    Gc(gc::Gc),
    Invoke(invoke::Invoke),
    Logs(logs::Logs),
    Bootstrap(bootstrap::Bootstrap),
    Bench(bench::Bench),
    Up(up::Up),
    Stop(stop::Stop),
    #[command(hide = true)]
    LambdaRun(lambda_run::LambdaRun),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The emulator's runner needs no workspace, and runs where there may be none.
    if let Command::LambdaRun(run) = &cli.command {
        return run.run();
    }
    let workspace = match &cli.cargo_metadata {
        Some(file) => Workspace::from_file(file)?,
        None => local::metadata::workspace(cli.manifest_path.as_deref())?,
    };
    let progress = Progress::detect();
    match cli.command {
        Command::Package(package) => package.run(&workspace, progress),
        Command::Publish(publish) => publish.run(&workspace, progress),
        Command::Deploy(deploy) => deploy.run(&workspace, progress),
        Command::Serve(serve) => serve.run(&workspace, progress),
        Command::Status(status) => status.run(&workspace, progress),
        Command::Rollback(rollback) => rollback.run(&workspace, progress),
        Command::ResetHistory(reset) => reset.run(&workspace, progress),
        Command::Stop(stop) => stop.run(&workspace, progress),
        Command::Promote(promote) => promote.run(&workspace, progress),
        Command::Destroy(destroy) => destroy.run(&workspace, progress),
        Command::Gc(gc) => gc.run(&workspace, progress),
        Command::Invoke(invoke) => invoke.run(&workspace, progress),
        Command::Logs(logs) => logs.run(&workspace, progress),
        Command::Bootstrap(bootstrap) => bootstrap.run(&workspace, progress),
        Command::Bench(bench) => bench.run(&workspace, progress),
        Command::Up(up) => up.run(&workspace, progress),
        Command::LambdaRun(_) => unreachable!("run above, before the workspace is read"),
    }
}
