//! The S3 queries the release tool makes: an object's bytes or its head, and whether the artifact
//! bucket can be reached. A missing key or bucket is an answer (`None`, or a message saying what to
//! do), never a raw SDK error.

use anyhow::{Context, bail};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumMode;

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

/// An object's metadata (with S3's SHA-256 checksum where it keeps one); `None` when there is no
/// such key.
pub async fn head_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<HeadObjectOutput>> {
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await;
    match head {
        Ok(head) => Ok(Some(head)),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
        Err(error) => {
            Err(anyhow::Error::new(error)).with_context(|| format!("checking s3://{bucket}/{key}"))
        }
    }
}

/// Fails, saying how to create it, when the artifact bucket does not exist.
pub async fn check_bucket(
    s3: &aws_sdk_s3::Client,
    region: &str,
    bucket: &str,
) -> anyhow::Result<()> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => bail!(
            "the artifact bucket {bucket} does not exist in {region}: create it with \
             `cargo xtask bootstrap --region {region}`, or pass --bucket with an existing one"
        ),
        Err(error) => Err(anyhow::Error::new(error))
            .with_context(|| format!("checking the artifact bucket {bucket} in {region}")),
    }
}

/// True when `bucket` exists and can be reached.
pub async fn bucket_exists(s3: &aws_sdk_s3::Client, bucket: &str) -> bool {
    s3.head_bucket().bucket(bucket).send().await.is_ok()
}
