//! Where a command's AWS requests go: an account's region and bucket from the standard AWS
//! configuration, or, with `--local`, the emulator, started if needed and its artifact bucket
//! bootstrapped from the real infrastructure template the first time.

use std::time::Duration;

use anyhow::Context as _;

use super::emulator::Emulator;
use crate::aws::{self, Connection};
use crate::progress::Progress;
use crate::release::bootstrap;
use crate::workspace::Workspace;

/// The emulator creates stacks synchronously; this bounds a stuck one.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(600);

/// A connection, and the emulator behind it when there is one.
#[derive(Debug)]
pub struct Session {
    pub aws: Connection,
    pub emulator: Option<Emulator>,
}

impl Session {
    /// The emulator's endpoint, for a command that only runs against it.
    pub fn endpoint(&self) -> anyhow::Result<String> {
        self.emulator
            .as_ref()
            .map(|e| e.endpoint.clone())
            .context("the local emulator is not running")
    }

    /// Fails, saying how to get one, when the artifact bucket does not exist.
    pub fn require_bucket(&self) -> anyhow::Result<()> {
        let (aws, bucket) = (&self.aws, self.aws.bucket.as_str());
        if self.emulator.is_some() {
            if !aws
                .runtime
                .block_on(aws::s3::bucket_exists(&aws.s3(), bucket))
            {
                anyhow::bail!(
                    "the local emulator has no artifact bucket {bucket}: the first `cargo xtask \
                     deploy <service> <env> --local` creates it (or pass the --bucket you deployed \
                     with); nothing was created"
                );
            }
            return Ok(());
        }
        aws.runtime
            .block_on(aws::s3::check_bucket(&aws.s3(), &aws.region, bucket))
    }

    /// What a command says last when it used the emulator: that it keeps running, and how to
    /// look at it and stop it. Empty for an AWS account.
    pub fn note(&self) -> String {
        self.emulator
            .as_ref()
            .map_or_else(String::new, Emulator::note)
    }
}

/// What a command may change where it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It publishes or deploys: on the emulator, a missing artifact bucket is bootstrapped.
    Changes,
    /// It only reads (or deletes what exists): nothing is created, a missing bucket stays missing.
    Reads,
}

/// Connects to `region` (default: the AWS configuration's) and `bucket` (default: the region's),
/// in the emulator when `local`. Names are checked first, and an account's credentials before
/// anything is asked of it, so that every command says the same about them.
pub fn connect(
    region: Option<&str>,
    bucket: Option<&str>,
    local: bool,
    access: Access,
    workspace: &Workspace,
    progress: Progress,
) -> anyhow::Result<Session> {
    if let Some(region) = region {
        crate::names::check_region(region).map_err(anyhow::Error::msg)?;
    }
    if let Some(bucket) = bucket {
        crate::names::check_bucket_name(bucket).map_err(anyhow::Error::msg)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let emulator = local
        .then(|| Emulator::ensure(workspace, progress))
        .transpose()?;
    let sdk = runtime.block_on(async {
        match &emulator {
            Some(emulator) => emulator.sdk_config(region).await,
            None => aws::sdk_config(region).await,
        }
    });
    let connection = Connection::new(runtime, sdk, bucket.map(str::to_owned));
    if emulator.is_none() {
        connection
            .runtime
            .block_on(aws::check_credentials(&connection.sdk))?;
    }
    if emulator.is_some() && access == Access::Changes {
        let (sdk, bucket) = (&connection.sdk, connection.bucket.as_str());
        connection.runtime.block_on(async {
            // Bootstrapped again when the workspace's infrastructure template changed since.
            let cloudformation = connection.cloudformation();
            let current = aws::cloudformation::describe(&cloudformation, bootstrap::STACK).await?;
            let deployed = match &current {
                Some(current) => {
                    aws::cloudformation::template_body(&cloudformation, &current.id).await?
                }
                None => String::new(),
            };
            let path = workspace.root.join(bootstrap::TEMPLATE);
            let wanted = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            if aws::s3::bucket_exists(&connection.s3(), bucket).await && deployed == wanted {
                return anyhow::Ok(());
            }
            progress.note(&format!("bootstrapping the local artifact bucket {bucket}"));
            bootstrap::apply(
                sdk,
                workspace,
                bootstrap::STACK,
                Some(bucket),
                BOOTSTRAP_TIMEOUT,
                progress,
            )
            .await?;
            Ok(())
        })?;
    }
    Ok(Session {
        aws: connection,
        emulator,
    })
}
