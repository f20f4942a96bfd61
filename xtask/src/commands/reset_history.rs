//! `cargo xtask reset-history <service> <env>`: the way out of a release history that cannot be
//! read. It is copied aside (`deployments/<stack>.json.damaged-<time>`, nothing is lost), and a
//! new history starts with what the stack runs, recorded as recovered and unchecked, so that
//! deploy, rollback, promote, status and gc work again and the next deploy checks what runs.

use std::time::Duration;

use crate::cli::{Account, Stack};
use crate::progress::Progress;
use crate::release::deployer::{Deployer, Options};
use crate::workspace::Workspace;

/// Move a damaged release history aside and start a new one from what the stack runs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask reset-history hardware dev --local\n  \
    cargo xtask reset-history users production\n\n\
    Refused while the history reads fine. The damaged copy stays in the bucket beside it.")]
pub struct ResetHistory {
    #[command(flatten)]
    stack: Stack,
    #[command(flatten)]
    account: Account,
    /// The longest to wait for a deploy that holds the stack's lock, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = crate::cli::timeout_seconds())]
    timeout: u64,
}

impl ResetHistory {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (service, environment) = self.stack.resolve(workspace)?;
        let session = self
            .account
            .connect(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        session.require_bucket()?;
        let options = Options {
            parameters: Vec::new(),
            defaults: Vec::new(),
            no_execute: false,
            no_wait: false,
            recreate: false,
            timeout: Duration::from_secs(self.timeout),
            traffic: None,
            flags: self.account.flags(),
        };
        let deployer = Deployer::new(aws, workspace, environment, options, progress);
        let done = aws.runtime.block_on(deployer.reset_history(service))?;
        println!("{done}");
        Ok(())
    }
}
