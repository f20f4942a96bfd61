//! `cargo xtask`: the build-and-release tool. This file parses flags and dispatches; each command
//! lives in a file of its own.

use clap::Parser;

/// Build and release the biometrix HTTP APIs.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    Cli::parse();
    Ok(())
}
