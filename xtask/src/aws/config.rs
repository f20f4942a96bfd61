//! AWS set-up shared by the commands that talk to AWS: configuration, credentials, clients.

use anyhow::Context;

/// The region used when neither --region nor the AWS configuration names one.
pub const DEFAULT_REGION: &str = "us-west-2";

/// The AWS configuration, from the standard sources, with `region` (or the default) filled in.
pub async fn sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    let sdk = loader.load().await;
    if sdk.region().is_some() {
        return sdk;
    }
    sdk.into_builder()
        .region(aws_config::Region::from_static(DEFAULT_REGION))
        .build()
}

/// The region `sdk` talks to.
pub fn region_of(sdk: &aws_config::SdkConfig) -> String {
    sdk.region()
        .map_or(DEFAULT_REGION.to_owned(), ToString::to_string)
}

/// The artifact bucket of a region, which `cargo xtask bootstrap` creates.
pub fn default_bucket(region: &str) -> String {
    format!("biometrix-infrastructure-{region}")
}

/// A template's address in the form CloudFormation (and the emulator) accepts for nested stacks.
pub fn template_url(region: &str, bucket: &str, key: &str) -> String {
    format!("https://s3.{region}.amazonaws.com/{bucket}/{key}")
}

/// An S3 client; path-style addressing where a custom endpoint is set.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    // A custom endpoint (the local emulator) has no per-bucket host names.
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Fails with what to do when no credentials can be found.
pub async fn check_credentials(sdk: &aws_config::SdkConfig) -> anyhow::Result<()> {
    use aws_credential_types::provider::ProvideCredentials;
    let provider = sdk.credentials_provider().context(
        "no AWS credentials are configured: set AWS_PROFILE (after `aws sso login`) or \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    )?;
    provider.provide_credentials().await.map_err(|error| {
        anyhow::anyhow!(
            "no AWS credentials found ({error}): set AWS_PROFILE (after `aws sso login`) or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    })?;
    Ok(())
}

/// Where a command's AWS requests go; the flags publish, deploy, status and rollback share.
#[derive(Debug, Clone, clap::Args)]
pub struct Account {
    /// The AWS region (default: the standard AWS configuration, else us-west-2).
    #[arg(long)]
    pub region: Option<String>,
    /// The artifact bucket (default: biometrix-infrastructure-<region>).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Use the local AWS emulator (started if needed, its bucket bootstrapped): no AWS account.
    #[arg(long)]
    pub local: bool,
}

/// An AWS configuration to talk to, the artifact bucket in it, and the runtime to talk on.
#[derive(Debug)]
pub struct Connection {
    pub runtime: tokio::runtime::Runtime,
    pub sdk: aws_config::SdkConfig,
    pub region: String,
    pub bucket: String,
    /// Set with `--local`.
    pub emulator: Option<crate::local::Emulator>,
}

impl Account {
    /// The configuration the flags name. With `--local`, the emulator is started if needed and
    /// its artifact bucket created the first time.
    pub fn connect(
        &self,
        workspace: &crate::workspace::Workspace,
        progress: crate::progress::Progress,
    ) -> anyhow::Result<Connection> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let emulator = self
            .local
            .then(|| crate::local::Emulator::ensure(workspace, progress))
            .transpose()?;
        let sdk = runtime.block_on(async {
            match &emulator {
                Some(emulator) => emulator.sdk_config(self.region.as_deref()).await,
                None => sdk_config(self.region.as_deref()).await,
            }
        });
        let region = region_of(&sdk);
        let bucket = self
            .bucket
            .clone()
            .unwrap_or_else(|| default_bucket(&region));
        if let Some(emulator) = &emulator {
            runtime.block_on(emulator.bootstrap(workspace, &sdk, &bucket, progress))?;
        }
        Ok(Connection {
            runtime,
            sdk,
            region,
            bucket,
            emulator,
        })
    }
}

/// An object's bytes; `None` when there is no such key.
pub async fn read_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    let object = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            return Ok(None);
        }
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("reading s3://{bucket}/{key}"));
        }
    };
    let bytes = object
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
        .into_bytes();
    Ok(Some(bytes.to_vec()))
}
