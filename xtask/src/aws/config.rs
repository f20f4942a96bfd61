//! AWS configuration: the SDK's standard sources with a default region, credentials checked before
//! work starts, the S3 client, and the names the platform gives buckets and template URLs.

use anyhow::Context;

/// The region used when neither --region nor the AWS configuration names one.
pub const DEFAULT_REGION: &str = "us-west-2";

/// The AWS configuration, from the standard sources, with `region` (or the default) filled in.
pub async fn sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    sdk_config_of(region, None).await
}

/// [`sdk_config`] with a named profile of the standard AWS configuration, when one is given.
pub async fn sdk_config_of(region: Option<&str>, profile: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
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

/// A template's address in the form CloudFormation (and the emulator) accepts for nested stacks,
/// pinned to `version` where the bucket keeps versions: CloudFormation then reads the version that
/// was verified, whatever is put at the key after.
pub fn template_url(region: &str, bucket: &str, key: &str, version: Option<&str>) -> String {
    let url = format!("https://s3.{region}.amazonaws.com/{bucket}/{key}");
    match version {
        Some(version) => format!("{url}?versionId={}", percent_encoded(version)),
        None => url,
    }
}

/// The key a [`template_url`] of `bucket` names, without the version it is pinned to.
pub fn template_key_of(url: &str, bucket: &str) -> Option<String> {
    let (_, key) = url.split_once(&format!("/{bucket}/"))?;
    let key = key.split_once('?').map_or(key, |(key, _)| key);
    Some(key.to_owned())
}

/// `text` with everything but RFC 3986's unreserved characters percent-encoded (S3 version ids
/// may hold `+`, `/` and `=`).
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An S3 client; path-style addressing where a custom endpoint is set, and S3's clock read from
/// every response (`clock`).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    // A custom endpoint (the local emulator) has no per-bucket host names.
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .interceptor(super::clock::ServerClock)
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

/// Refuses to act on `environment` from an account or region its table entry says it does not
/// live in: a release for production never lands in a developer's account because of a stale
/// AWS_PROFILE. Only what the entry declares is checked (STS's GetCallerIdentity, which needs no
/// permission).
pub async fn check_home(
    sdk: &aws_config::SdkConfig,
    region: &str,
    environment: crate::environments::Environment,
) -> anyhow::Result<()> {
    let declared = environment.declared();
    if let Some(home) = &declared.region
        && home != region
    {
        anyhow::bail!(
            "{environment} lives in {home} ([workspace.metadata.environments] in Cargo.toml), not \
             {region}: pass --region {home}; nothing was changed"
        );
    }
    if let Some(account) = &declared.account {
        let caller = aws_sdk_sts::Client::new(sdk)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sts::error::DisplayErrorContext(&e)))
            .context("asking STS which account these credentials are of")?;
        let theirs = caller.account().unwrap_or("an unknown account");
        if theirs != account {
            anyhow::bail!(
                "{environment} lives in account {account} ([workspace.metadata.environments] in \
                 Cargo.toml), and these credentials are of account {theirs}: use that account's \
                 profile (AWS_PROFILE) or role; nothing was changed"
            );
        }
    }
    Ok(())
}

/// An AWS configuration to talk to, the artifact bucket in it, and the runtime to talk on. Plain
/// configuration: whoever made it (an account, or the local emulator) is the caller's business.
#[derive(Debug)]
pub struct Connection {
    pub runtime: tokio::runtime::Runtime,
    pub sdk: aws_config::SdkConfig,
    pub region: String,
    pub bucket: String,
}

impl Connection {
    /// A connection to `sdk`'s region and `bucket` (or the region's default one).
    pub fn new(
        runtime: tokio::runtime::Runtime,
        sdk: aws_config::SdkConfig,
        bucket: Option<String>,
    ) -> Connection {
        let region = region_of(&sdk);
        let bucket = bucket.unwrap_or_else(|| default_bucket(&region));
        Connection {
            runtime,
            sdk,
            region,
            bucket,
        }
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.sdk)
    }

    pub fn cloudformation(&self) -> aws_sdk_cloudformation::Client {
        aws_sdk_cloudformation::Client::new(&self.sdk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_urls_are_pinned_to_their_version_and_read_back_without_it() {
        let key = "cloudformation/hardware/ab/apigateway.yaml";
        let plain = template_url("us-west-2", "bucket", key, None);
        assert_eq!(
            plain,
            "https://s3.us-west-2.amazonaws.com/bucket/cloudformation/hardware/ab/apigateway.yaml"
        );
        let pinned = template_url("us-west-2", "bucket", key, Some("3/L4kq+t=Jl"));
        assert_eq!(pinned, format!("{plain}?versionId=3%2FL4kq%2Bt%3DJl"));
        assert_eq!(template_key_of(&pinned, "bucket").as_deref(), Some(key));
        assert_eq!(template_key_of(&plain, "bucket").as_deref(), Some(key));
        assert_eq!(template_key_of(&plain, "other"), None);
    }
}
