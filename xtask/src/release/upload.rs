//! Uploading a release to the artifact bucket: each function zip and the templates its stack needs,
//! content-addressed, skipping what is already there with the same SHA-256 (S3's checksum, or the
//! bytes hashed: never the metadata) and refusing what is there with another.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::artifact::sha256_hex;
use super::integrity;
use super::manifest::Manifest;
use super::package;
use crate::aws::{self, check_credentials, s3_client};
use crate::environments::Environment;
use crate::environments::Profile;
use crate::progress::Progress;
use crate::workspace::{APIGATEWAY_TEMPLATE, Service, Workspace, service_template};

/// The metadata key holding an object's SHA-256, for people and `status`; publish never trusts it
/// (`integrity` says why).
const SHA256_METADATA: &str = "sha256";

/// One object to publish.
#[derive(Debug, Clone, Serialize)]
pub struct Object {
    pub key: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub outcome: Outcome,
    /// The S3 version published or found, where the bucket is versioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip)]
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Uploaded,
    Unchanged,
    Planned,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub region: String,
    pub bucket: String,
    pub objects: Vec<Object>,
    pub head_requests: usize,
    pub put_requests: usize,
    pub bytes_sent: u64,
}

/// Where the zips come from.
#[derive(Debug, Clone, Copy)]
pub enum Packaging {
    /// Built now with `profile` (a no-op when nothing changed), installing missing build tools
    /// if asked.
    Build {
        install_tools: bool,
        profile: Profile,
    },
    /// What `package` left, checked against HEAD and the zips' hashes; nothing is compiled.
    Prebuilt,
}

/// Packages `services` and uploads what the bucket lacks: the half of a release that `deploy`
/// shares with `publish`.
pub fn publish(
    workspace: &Workspace,
    services: &[&Service],
    environment: Environment,
    target: &Target,
    runtime: &tokio::runtime::Runtime,
    packaging: Packaging,
    progress: Progress,
) -> anyhow::Result<(Manifest, Report)> {
    // A template CloudFormation would refuse to read is refused before the build, and never
    // uploaded.
    for service in services {
        for file in [
            service_template(&service.name),
            APIGATEWAY_TEMPLATE.to_owned(),
        ] {
            super::stack::Template::parse(&file, workspace.template(&file)?)?;
        }
    }
    let manifest = zips(workspace, services, environment, packaging, progress)?;
    let objects = objects(workspace, &manifest)?;
    let total = objects.len();
    let done = std::cell::RefCell::new(Vec::new());
    let report = runtime.block_on(async {
        tokio::select! {
            report = target.upload(objects, &done, progress) => report,
            _ = tokio::signal::ctrl_c() => {
                let done = done.borrow();
                anyhow::bail!(
                    "interrupted while publishing: {} of {total} objects are in s3://{} ({}); S3 \
                     keeps an object only once it has all of it, so nothing partial is left, and \
                     publishing again resumes, skipping what is there",
                    done.len(),
                    target.bucket,
                    if done.is_empty() { "none yet".to_owned() } else { done.join(", ") }
                )
            }
        }
    })?;
    Ok((manifest, report))
}

/// The packaged plan of `services`, built or prebuilt as `packaging` says.
pub fn zips(
    workspace: &Workspace,
    services: &[&Service],
    environment: Environment,
    packaging: Packaging,
    progress: Progress,
) -> anyhow::Result<Manifest> {
    match packaging {
        Packaging::Build {
            install_tools,
            profile,
        } => package::build(
            workspace,
            services,
            environment,
            profile,
            install_tools,
            progress,
        ),
        Packaging::Prebuilt => package::prebuilt(workspace, services, environment),
    }
}

/// Every zip in the manifest and, per service, its stack template and the shared nested one.
pub fn objects(workspace: &Workspace, manifest: &Manifest) -> anyhow::Result<Vec<Object>> {
    let source = &manifest.source;
    let provenance = |sha256: &str| {
        HashMap::from([
            (SHA256_METADATA.to_owned(), sha256.to_owned()),
            ("git-commit".to_owned(), source.commit.clone()),
            ("git-dirty".to_owned(), source.dirty.to_string()),
        ])
    };
    let mut objects = Vec::new();
    for artifact in &manifest.functions {
        let sha256 = &artifact.sha256;
        let mut metadata = provenance(sha256);
        metadata.insert("toolchain".into(), source.toolchain.clone());
        metadata.insert("target".into(), artifact.target.clone());
        metadata.insert("profile".into(), manifest.profile.as_str().to_owned());
        objects.push(Object {
            key: artifact.key.clone(),
            path: artifact.zip.clone(),
            sha256: sha256.clone(),
            size: artifact.size,
            outcome: Outcome::Planned,
            version_id: None,
            metadata,
        });
    }
    for service in manifest.services() {
        for file in [service_template(service), APIGATEWAY_TEMPLATE.to_owned()] {
            // As the environment deploys it, written where the upload reads it from.
            let bytes = workspace
                .template_for(&file, manifest.environment)
                .with_context(|| format!("the template {service}'s stack needs"))?
                .into_bytes();
            let sha256 = sha256_hex(&bytes);
            let path = workspace
                .lambda_dir(service)
                .join("templates")
                .join(&sha256)
                .join(&file);
            super::artifact::write_atomically(&path, &bytes)?;
            objects.push(Object {
                key: template_key(service, &sha256, &file),
                path,
                size: bytes.len() as u64,
                outcome: Outcome::Planned,
                version_id: None,
                metadata: provenance(&sha256),
                sha256,
            });
        }
    }
    Ok(objects)
}

/// `cloudformation/<service>/<sha256>/<file>`: a template's content-addressed key.
pub fn template_key(service: &str, sha256: &str, file: &str) -> String {
    format!("cloudformation/{service}/{sha256}/{file}")
}

impl Report {
    /// The key `file` was published under for `service`.
    pub fn template_key(&self, service: &str, file: &str) -> &str {
        let prefix = format!("cloudformation/{service}/");
        let suffix = format!("/{file}");
        self.objects
            .iter()
            .map(|object| object.key.as_str())
            .find(|key| key.starts_with(&prefix) && key.ends_with(&suffix))
            .expect("a published service always has both of its templates among the objects")
    }
}

/// A bucket that exists and that the credentials can reach.
#[derive(Debug)]
pub struct Target {
    s3: aws_sdk_s3::Client,
    region: String,
    bucket: String,
}

impl Target {
    /// Checks the credentials and the bucket, saying what to do when either is missing.
    pub async fn check(
        sdk: &aws_config::SdkConfig,
        region: &str,
        bucket: &str,
    ) -> anyhow::Result<Target> {
        check_credentials(sdk).await?;
        let s3 = s3_client(sdk);
        aws::s3::check_bucket(&s3, region, bucket).await?;
        Ok(Target {
            s3,
            region: region.to_owned(),
            bucket: bucket.to_owned(),
        })
    }

    /// Uploads what is not there yet; what is there must have the same SHA-256.
    /// Uploads what is missing of `objects`; each key found or uploaded whole is pushed onto
    /// `done` as it is, so that an interrupt can say what is in the bucket.
    pub async fn upload(
        &self,
        objects: Vec<Object>,
        done: &std::cell::RefCell<Vec<String>>,
        progress: Progress,
    ) -> anyhow::Result<Report> {
        let (s3, bucket) = (&self.s3, self.bucket.as_str());
        let mut report = Report {
            region: self.region.clone(),
            bucket: bucket.to_owned(),
            objects: Vec::new(),
            head_requests: 1,
            put_requests: 0,
            bytes_sent: 0,
        };
        for mut object in objects {
            let step = progress.step(&format!("publishing {}", object.key));
            report.head_requests += 1;
            let stored = integrity::stored(s3, bucket, &object.key).await?;
            object.version_id = stored.as_ref().and_then(|s| s.version_id.clone());
            let outcome = match stored.map(|s| s.sha256) {
                Some(stored) if stored == object.sha256 => Outcome::Unchanged,
                Some(stored) => bail!(
                    "s3://{bucket}/{} already exists with SHA-256 {stored}, not {}: the object is corrupt or \
                 was written by something else; delete it (aws s3 rm s3://{bucket}/{}) and publish again",
                    object.key,
                    object.sha256,
                    object.key
                ),
                None => {
                    crate::wait::pause_point("upload").await;
                    let body = std::fs::read(&object.path)
                        .with_context(|| format!("reading {}", object.path.display()))?;
                    if sha256_hex(&body) != object.sha256 {
                        bail!(
                            "{} changed since it was packaged; package again",
                            object.path.display()
                        );
                    }
                    let checksum =
                        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
                    report.put_requests += 1;
                    let put = s3.put_object()
                    .bucket(bucket)
                    .key(&object.key)
                    .body(ByteStream::from(body))
                    .checksum_sha256(checksum)
                    .set_metadata(Some(object.metadata.clone()))
                    .send()
                    .await
                    .with_context(|| {
                        format!(
                            "uploading s3://{bucket}/{}; S3 stores an object only once it has all of it, \
                             so nothing partial is left: publish again",
                            object.key
                        )
                    })?;
                    object.version_id =
                        put.version_id().filter(|v| *v != "null").map(str::to_owned);
                    report.bytes_sent += object.size;
                    Outcome::Uploaded
                }
            };
            done.borrow_mut().push(object.key.clone());
            step.done(&format!(
                "{} {}",
                if outcome == Outcome::Uploaded {
                    "uploaded"
                } else {
                    "unchanged"
                },
                object.key
            ));
            object.outcome = outcome;
            report.objects.push(object);
        }
        Ok(report)
    }
}

/// Brings the object `key` (at `version`, where the source keeps versions) from `source`'s bucket
/// into `target`'s, for a promotion between accounts: the bytes are read, checked against the
/// SHA-256 the key names, and put with S3's checksum, unless the target already holds the key's
/// bytes. The target's version of it is returned: what its stack is to fetch.
pub async fn carry(
    source: (&aws_sdk_s3::Client, &str),
    target: (&aws_sdk_s3::Client, &str),
    key: &str,
    version: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let ((from, from_bucket), (to, to_bucket)) = (source, target);
    if integrity::stored(to, to_bucket, key).await?.is_some() {
        let then = "Delete it there, then promote again";
        return Ok(integrity::verify(to, to_bucket, key, then)
            .await?
            .version_id);
    }
    let object = from
        .get_object()
        .bucket(from_bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .with_context(|| format!("reading s3://{from_bucket}/{key} to carry it across"))?;
    let bytes = object
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{from_bucket}/{key} to carry it across"))?
        .into_bytes();
    integrity::check_bytes(from_bucket, key, &bytes)?;
    let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
    let put = to
        .put_object()
        .bucket(to_bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .checksum_sha256(checksum)
        .send()
        .await
        .with_context(|| {
            format!(
                "putting s3://{to_bucket}/{key}; S3 stores an object only once it has all of it, \
                 so nothing partial is left: promote again"
            )
        })?;
    Ok(put.version_id().filter(|v| *v != "null").map(str::to_owned))
}
