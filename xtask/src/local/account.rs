//! Where a command's AWS requests go: an account's region and bucket from the standard AWS
//! configuration, or, with `--local`, the emulator, started if needed and its artifact bucket
//! bootstrapped from the real infrastructure template the first time.

use std::time::Duration;

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
        use anyhow::Context as _;
        self.emulator
            .as_ref()
            .map(|e| e.endpoint.clone())
            .context("the local emulator is not running")
    }

    /// What a command says last when it used the emulator: that it keeps running, and how to
    /// look at it and stop it. Empty for an AWS account.
    pub fn note(&self) -> String {
        self.emulator
            .as_ref()
            .map_or_else(String::new, Emulator::note)
    }
}

/// Connects to `region` (default: the AWS configuration's) and `bucket` (default: the region's),
/// in the emulator when `local`.
pub fn connect(
    region: Option<&str>,
    bucket: Option<&str>,
    local: bool,
    workspace: &Workspace,
    progress: Progress,
) -> anyhow::Result<Session> {
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
    if emulator.is_some() {
        let (sdk, bucket) = (&connection.sdk, connection.bucket.as_str());
        connection.runtime.block_on(async {
            if aws::s3::bucket_exists(&connection.s3(), bucket).await {
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
