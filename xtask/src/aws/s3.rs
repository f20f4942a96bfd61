//! The S3 queries the release tool makes: an object's bytes or its head, the keys and versions under
//! a prefix, deleting exact versions, and whether the artifact bucket can be reached. A missing key or bucket is an answer (`None`, or a message saying what to
//! do), never a raw SDK error.

use anyhow::{Context, bail};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumMode;

/// The bytes at `key`; `None` when there is no such key.
pub async fn read_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(read_object_with_etag(s3, bucket, key)
        .await?
        .map(|(bytes, _)| bytes))
}

/// The bytes at `key` and the ETag they were read at, for a write conditional on it; `None` when
/// there is no such key.
pub async fn read_object_with_etag(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<(Vec<u8>, Option<String>)>> {
    Ok(read_object_version(s3, bucket, key)
        .await?
        .map(|object| (object.bytes, object.etag)))
}

/// An object as one GET returned it: its bytes, and the ETag and version they are.
#[derive(Debug)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
    /// `None` where the bucket keeps no versions.
    pub version_id: Option<String>,
}

/// The object at `key`, with the version its bytes are (read in the same request, so that the
/// two cannot disagree); `None` when there is no such key.
pub async fn read_object_version(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<Object>> {
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
    let etag = object.e_tag().map(str::to_owned);
    let version_id = object
        .version_id()
        .filter(|v| *v != "null")
        .map(str::to_owned);
    let bytes = object
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
        .into_bytes();
    Ok(Some(Object {
        bytes: bytes.to_vec(),
        etag,
        version_id,
    }))
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
        Err(error)
            if error
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 403) =>
        {
            bail!(
                "the artifact bucket {bucket} exists, but these credentials may not use it: it belongs \
             to another account, or the role lacks s3:ListBucket on it; pass --bucket with your own"
            )
        }
        Err(error) if error.as_service_error().is_none() => Err(anyhow::anyhow!(
            "{}",
            aws_sdk_s3::error::DisplayErrorContext(&error)
        ))
        .with_context(|| {
            format!(
                "could not reach S3 in {region}: check that {region} is a region your \
                         account uses (like us-west-2), and the network"
            )
        }),
        Err(error) => Err(anyhow::Error::new(error))
            .with_context(|| format!("checking the artifact bucket {bucket} in {region}")),
    }
}

/// True when `bucket` exists and can be reached.
pub async fn bucket_exists(s3: &aws_sdk_s3::Client, bucket: &str) -> bool {
    s3.head_bucket().bucket(bucket).send().await.is_ok()
}

/// Every key under `prefix`, from every page.
pub async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok(keys)
}

/// One stored version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    /// `null` in a bucket that was never versioned, as S3 spells it.
    pub version_id: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
}

/// Every version of every object under `prefix` (delete markers left out), from every page.
pub async fn list_versions(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<Version>> {
    let mut versions = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .with_context(|| format!("listing the versions under s3://{bucket}/{prefix}"))?;
        versions.extend(page.versions().iter().filter_map(|v| {
            Some(Version {
                key: v.key()?.to_owned(),
                version_id: v.version_id().unwrap_or("null").to_owned(),
                size: u64::try_from(v.size().unwrap_or_default()).unwrap_or_default(),
                last_modified: v.last_modified().map_or(0, |t| t.secs()),
            })
        }));
        if page.is_truncated() != Some(true) {
            return Ok(versions);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        if key_marker.is_none() {
            return Ok(versions);
        }
    }
}

/// Deletes exactly these versions (never a newer one of the same key), a thousand a request.
/// The versions S3 could not delete, each with its reason.
/// The most versions one `DeleteObjects` request takes.
pub const DELETE_BATCH: usize = 1000;

pub async fn delete_versions(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    versions: &[Version],
) -> anyhow::Result<Vec<(Version, String)>> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let mut failed = Vec::new();
    for batch in versions.chunks(DELETE_BATCH) {
        let objects = batch
            .iter()
            .map(|v| {
                ObjectIdentifier::builder()
                    .key(&v.key)
                    .version_id(&v.version_id)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()?;
        let output = s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .with_context(|| format!("deleting from s3://{bucket}"))?;
        for error in output.errors() {
            let Some(version) = batch.iter().find(|v| {
                Some(v.key.as_str()) == error.key()
                    && error.version_id().is_none_or(|id| id == v.version_id)
            }) else {
                continue;
            };
            let reason = error.message().or(error.code()).unwrap_or("unknown error");
            failed.push((version.clone(), reason.to_owned()));
        }
    }
    Ok(failed)
}
