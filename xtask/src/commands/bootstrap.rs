//! `cargo xtask bootstrap`: create or update a region's infrastructure stack, which holds the
//! artifact bucket that `publish` uploads to.

use std::time::Duration;

use crate::aws::{check_credentials, region_of, sdk_config};
use crate::progress::Progress;
use crate::release::bootstrap::{self, STACK};
use crate::workspace::Workspace;

/// Create or update the region's artifact bucket (cloudformation/infrastructure.yaml).
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  cargo xtask bootstrap --region eu-west-1")]
pub struct Bootstrap {
    /// The AWS region (default: the standard AWS configuration, else us-west-2).
    #[arg(long)]
    region: Option<String>,
    /// The bucket's name, for organisations other than biometrix (default: biometrix-infrastructure-<region>).
    #[arg(long)]
    bucket: Option<String>,
    /// The stack's name.
    #[arg(long, default_value = STACK)]
    stack: String,
    /// How long to wait for CloudFormation, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

impl Bootstrap {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let sdk = sdk_config(self.region.as_deref()).await;
            check_credentials(&sdk).await?;
            let done = bootstrap::apply(
                &sdk,
                workspace,
                &self.stack,
                self.bucket.as_deref(),
                Duration::from_secs(self.timeout),
                progress,
            )
            .await?;
            println!(
                "stack {} in {}: {}",
                self.stack,
                region_of(&sdk),
                done.outcome
            );
            println!("artifact bucket: {}", done.bucket);
            Ok(())
        })
    }
}
