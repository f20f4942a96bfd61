//! `cargo xtask destroy <service> <env>`: delete stack `<service>-<env>` through its lock,
//! following its events, after saying what CloudFormation keeps (the stores marked
//! `DeletionPolicy: Retain`) and how to remove each. The stack's deploy history stays in the
//! bucket. Idempotent: a stack that does not exist is said, and is a success.

use std::time::Duration;

use anyhow::bail;

use crate::cli::{Account, Output, Stack};
use crate::names::Environment;
use crate::progress::{Progress, print_result};
use crate::release::deployer::{Deployer, Options};
use crate::workspace::Workspace;

/// Delete a service's stack in one environment; its retained stores and its history stay.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask destroy hardware dev --local       # the emulator's hardware-dev\n  \
    cargo xtask destroy users qa --json\n  \
    cargo xtask destroy alerts production --confirm production\n\n\
    Destroy is idempotent: a stack that does not exist is said, and exits 0. Before deleting, it lists\n\
    what CloudFormation keeps (tables, buckets and user pools marked DeletionPolicy: Retain) with the\n\
    command that removes each. A stack whose deletion fails (DELETE_FAILED) gets each resource that\n\
    could not be deleted, with its reason, and the way out. production is only destroyed with\n\
    --confirm production.")]
pub struct Destroy {
    #[command(flatten)]
    stack: Stack,
    /// The environment again, to destroy production (`--confirm production`).
    #[arg(long, value_name = "ENV")]
    confirm: Option<String>,
    #[command(flatten)]
    account: Account,
    /// Fail at once, instead of waiting, when a deploy holds the stack or it is changing.
    #[arg(long)]
    no_wait: bool,
    /// The longest to wait for other deploys and for CloudFormation, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = crate::cli::timeout_seconds())]
    timeout: u64,
    #[command(flatten)]
    output: Output,
}

impl Destroy {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (service, environment) = self.stack.resolve(workspace)?;
        if environment == Environment::Production && self.confirm.as_deref() != Some("production") {
            bail!(
                "destroying {}-production deletes the API that production's callers use; if that \
                 is what you want, add --confirm production",
                service.name
            );
        }
        if let Some(confirm) = &self.confirm
            && confirm != environment.as_str()
        {
            bail!(
                "--confirm {confirm} does not name the environment being destroyed ({environment})"
            );
        }
        let session = self.account.read(workspace, progress)?;
        let aws = &session.aws;
        let options = Options {
            parameters: Vec::new(),
            defaults: Vec::new(),
            no_execute: false,
            no_wait: self.no_wait,
            recreate: false,
            timeout: Duration::from_secs(self.timeout),
            traffic: None,
            flags: self.account.flags(),
        };
        let deployer = Deployer::new(aws, workspace, environment, options, progress);
        let destroyed = aws.runtime.block_on(deployer.destroy(&service.name))?;
        print_result(&destroyed, self.output.json, |d| d.text() + &session.note())
    }
}
