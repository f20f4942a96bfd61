//! `cargo xtask publish <service>... <env>`: upload each function zip and the templates its stack
//! needs to the artifact bucket, content-addressed, skipping what is already there.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use xshell::Shell;

use crate::artifact::sha256_hex;
use crate::aws::{Account, Connection, check_credentials, s3_client};
use crate::compile::Tools;
use crate::manifest::Plan;
use crate::names::Environment;
use crate::package;
use crate::progress::{Progress, print_json};
use crate::workspace::{Service, Workspace};

/// The nested template every service stack uses.
pub const APIGATEWAY_TEMPLATE: &str = "apigateway.yaml";
/// The metadata key holding an object's SHA-256, which publish checks before reusing it.
const SHA256_METADATA: &str = "sha256";

/// Upload packaged services and their templates to the artifact bucket.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  cargo xtask publish hardware dev\n  \
                        cargo xtask publish --all qa --region eu-west-1 --json")]
pub struct Publish {
    /// The services to publish, then the environment (dev, qa or production).
    #[arg(value_name = "SERVICE... ENV", required = true)]
    pub names: Vec<String>,
    /// Publish every service; then only the environment is given.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub account: Account,
    /// Package, then print what would be uploaded; nothing is sent.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Install missing build tools (cargo-zigbuild into .venv, Rust targets with rustup).
    #[arg(long)]
    pub install_tools: bool,
}

/// One object to publish.
#[derive(Debug, Clone, Serialize)]
pub struct Object {
    pub key: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub outcome: Outcome,
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

impl Publish {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (services, environment) = package::select(workspace, &self.names, self.all)?;
        let Connection {
            runtime,
            sdk,
            region,
            bucket,
            ..
        } = self.account.connect(workspace, progress)?;
        let target = if self.dry_run {
            None
        } else {
            // Before packaging, which can take minutes: a missing bucket should not wait for a build.
            Some(runtime.block_on(Target::check(&sdk, &region, &bucket))?)
        };
        let (_, report) = match &target {
            Some(target) => release(
                workspace,
                &services,
                environment,
                target,
                &runtime,
                self.install_tools,
                progress,
            )?,
            None => {
                let plan = build(
                    workspace,
                    &services,
                    environment,
                    self.install_tools,
                    progress,
                )?;
                let objects = objects(workspace, &plan)?;
                let report = Report {
                    region,
                    bucket,
                    objects,
                    head_requests: 0,
                    put_requests: 0,
                    bytes_sent: 0,
                };
                (plan, report)
            }
        };
        print(&report, self.json)
    }
}

/// Packages `services` (a no-op when nothing changed) and uploads what the bucket lacks: the
/// half of a release that `deploy` shares with `publish`.
pub fn release(
    workspace: &Workspace,
    services: &[&Service],
    environment: Environment,
    target: &Target,
    runtime: &tokio::runtime::Runtime,
    install_tools: bool,
    progress: Progress,
) -> anyhow::Result<(Plan, Report)> {
    let plan = build(workspace, services, environment, install_tools, progress)?;
    let objects = objects(workspace, &plan)?;
    let report = runtime.block_on(target.upload(objects, progress))?;
    Ok((plan, report))
}

fn build(
    workspace: &Workspace,
    services: &[&Service],
    environment: Environment,
    install_tools: bool,
    progress: Progress,
) -> anyhow::Result<Plan> {
    let sh = Shell::new()?;
    let mut tools = Tools::detect(&sh, &workspace.root)?;
    let plan = package::plan(workspace, services, environment, &tools, install_tools)?;
    package::execute(&sh, workspace, plan, &mut tools, install_tools, progress)
}

/// Every zip in the plan and, per service, its stack template and the shared nested one.
pub fn objects(workspace: &Workspace, plan: &Plan) -> anyhow::Result<Vec<Object>> {
    let source = plan
        .source
        .as_ref()
        .context("the plan has not been packaged yet")?;
    let provenance = |sha256: &str| {
        HashMap::from([
            (SHA256_METADATA.to_owned(), sha256.to_owned()),
            ("git-commit".to_owned(), source.commit.clone()),
            ("git-dirty".to_owned(), source.dirty.to_string()),
        ])
    };
    let mut objects = Vec::new();
    for artifact in &plan.functions {
        let (Some(key), Some(zip), Some(sha256), Some(size)) = (
            &artifact.key,
            &artifact.zip,
            &artifact.sha256,
            artifact.size,
        ) else {
            bail!(
                "{}/{} has not been packaged",
                artifact.service,
                artifact.function
            );
        };
        let mut metadata = provenance(sha256);
        metadata.insert("toolchain".into(), source.toolchain.clone());
        metadata.insert("target".into(), artifact.target.clone());
        metadata.insert("profile".into(), plan.profile.clone());
        objects.push(Object {
            key: key.clone(),
            path: zip.clone(),
            sha256: sha256.clone(),
            size,
            outcome: Outcome::Planned,
            metadata,
        });
    }
    for service in plan.services() {
        for file in [
            format!("{service}-environment.yaml"),
            APIGATEWAY_TEMPLATE.to_owned(),
        ] {
            let path = workspace.root.join("cloudformation").join(&file);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "reading {}, the template {service}'s stack needs",
                    path.display()
                )
            })?;
            let sha256 = sha256_hex(&bytes);
            objects.push(Object {
                key: template_key(service, &sha256, &file),
                path,
                size: bytes.len() as u64,
                outcome: Outcome::Planned,
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
    pub fn template_key(&self, service: &str, file: &str) -> anyhow::Result<&str> {
        let prefix = format!("cloudformation/{service}/");
        let suffix = format!("/{file}");
        self.objects
            .iter()
            .map(|object| object.key.as_str())
            .find(|key| key.starts_with(&prefix) && key.ends_with(&suffix))
            .with_context(|| format!("{file} was not published for {service}"))
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
        match s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => bail!(
                "the artifact bucket {bucket} does not exist in {region}: create it with \
             `cargo xtask bootstrap --region {region}`, or pass --bucket with an existing one"
            ),
            Err(error) => {
                return Err(anyhow::Error::new(error))
                    .with_context(|| format!("checking the artifact bucket {bucket} in {region}"));
            }
        }
        Ok(Target {
            s3,
            region: region.to_owned(),
            bucket: bucket.to_owned(),
        })
    }

    /// Uploads what is not there yet; what is there must have the same SHA-256.
    pub async fn upload(&self, objects: Vec<Object>, progress: Progress) -> anyhow::Result<Report> {
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
            let outcome = match stored_sha256(s3, bucket, &object.key).await? {
                Some(stored) if stored == object.sha256 => Outcome::Unchanged,
                Some(stored) => bail!(
                    "s3://{bucket}/{} already exists with SHA-256 {stored}, not {}: the object is corrupt or \
                 was written by something else; delete it (aws s3 rm s3://{bucket}/{}) and publish again",
                    object.key,
                    object.sha256,
                    object.key
                ),
                None => {
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
                    s3.put_object()
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
                    report.bytes_sent += object.size;
                    Outcome::Uploaded
                }
            };
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

/// The SHA-256 of what is stored at `key`, or `None` when nothing is. S3's own checksum is
/// preferred; the metadata publish attaches is the fallback (the emulator keeps only that).
async fn stored_sha256(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<String>> {
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await;
    let head = match head {
        Ok(head) => head,
        Err(SdkError::ServiceError(error)) if error.err().is_not_found() => return Ok(None),
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("checking s3://{bucket}/{key}"));
        }
    };
    if let Some(checksum) = head.checksum_sha256().filter(|c| !c.contains('-')) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(checksum)
            .with_context(|| format!("s3://{bucket}/{key} has a malformed checksum"))?;
        return Ok(Some(bytes.iter().map(|b| format!("{b:02x}")).collect()));
    }
    Ok(Some(
        head.metadata()
            .and_then(|m| m.get(SHA256_METADATA))
            .cloned()
            .unwrap_or_else(|| "unknown (no checksum or sha256 metadata)".to_owned()),
    ))
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    if json {
        return print_json(report);
    }
    let mut out = std::io::stdout().lock();
    for object in &report.objects {
        let verb = match object.outcome {
            Outcome::Uploaded => "uploaded ",
            Outcome::Unchanged => "unchanged",
            Outcome::Planned => "would put",
        };
        writeln!(
            out,
            "{verb} s3://{}/{} ({} bytes)",
            report.bucket, object.key, object.size
        )?;
    }
    writeln!(
        out,
        "{} requests ({} HEAD, {} PUT), {} bytes sent",
        report.head_requests + report.put_requests,
        report.head_requests,
        report.put_requests,
        report.bytes_sent
    )?;
    Ok(())
}
