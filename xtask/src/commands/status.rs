//! `cargo xtask status <service> <env>`: what is deployed. The stack's status and last update,
//! each function's artifact key and the commit its metadata records, whether HEAD would deploy
//! different code, the stack's outputs (its URLs), and the recorded releases.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Serialize;
use xshell::Shell;

use crate::aws::cloudformation;
use crate::cli::{Account, Output, Stack};
use crate::names::{Environment, Profile, short};
use crate::progress::{Progress, print_result};
use crate::release::history::{self, Entry};
use crate::release::integrity;
use crate::release::manifest::{MANIFEST, Plan, artifact_key_parameter};
use crate::release::package;
use crate::workspace::Workspace;

/// Show what is deployed, where it came from, and whether HEAD differs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  cargo xtask status hardware dev\n  \
                        cargo xtask status hardware dev --local --json")]
pub struct Status {
    #[command(flatten)]
    stack: Stack,
    #[command(flatten)]
    account: Account,
    /// How many recorded releases to list.
    #[arg(long, default_value_t = 5)]
    history: usize,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct Report {
    stack: String,
    region: String,
    /// `None` when the stack does not exist.
    status: Option<String>,
    last_updated: Option<String>,
    functions: Vec<Function>,
    head: Head,
    outputs: BTreeMap<String, String>,
    /// The environment the running release was promoted from, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    promoted_from: Option<String>,
    /// Whether the history records the release that runs (a deploy interrupted after it executed,
    /// or one made by another tool, is not until the next deploy records it as recovered).
    recorded: bool,
    /// Newest first.
    history: Vec<Entry>,
}

#[derive(Debug, Serialize)]
struct Function {
    name: String,
    parameter: String,
    artifact_key: Option<String>,
    /// The commit the artifact's metadata records; `None` when the object is gone or has none.
    commit: Option<String>,
    dirty: Option<bool>,
    /// The cargo profile the artifact was built with, as its metadata records it.
    profile: Option<Profile>,
    in_bucket: bool,
    /// Whether the bytes at the key hash to what the key names; `None` when they are not there.
    intact: Option<bool>,
    /// The SHA-256 of the code Lambda runs (its `CodeSha256`, in hex).
    running_sha256: Option<String>,
}

impl Function {
    /// True when Lambda runs other code than the key names.
    fn mismatched(&self) -> bool {
        let named = self
            .artifact_key
            .as_deref()
            .and_then(integrity::named_sha256);
        named.is_some() && self.running_sha256.as_deref() != named
    }
}

#[derive(Debug, Serialize)]
struct Head {
    commit: String,
    dirty: bool,
    /// `Some(true)`: deploying HEAD would change the code; `Some(false)`: it would not; `None`:
    /// unknown until HEAD is packaged.
    would_change_code: Option<bool>,
    reason: String,
}

impl Status {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (service, environment) = self.stack.resolve(workspace)?;
        let session = self.account.read(workspace, progress)?;
        let aws = &session.aws;
        let stack = format!("{}-{environment}", service.name);
        let (s3, bucket) = (aws.s3(), aws.bucket.as_str());

        // A stack that exists needs its bucket; one that does not is simply not deployed.
        let current = aws
            .runtime
            .block_on(cloudformation::describe(&aws.cloudformation(), &stack))?;
        if current.is_some() {
            session.require_bucket()?;
        }
        let (functions, history) = aws.runtime.block_on(async {
            let lambda = aws_sdk_lambda::Client::new(&aws.sdk);
            let mut functions = Vec::new();
            for function in &service.functions {
                let parameter = artifact_key_parameter(&function.name);
                let key = current
                    .as_ref()
                    .and_then(|c| c.parameters.get(&parameter))
                    .cloned();
                let mut found = Function {
                    name: function.name.clone(),
                    parameter,
                    artifact_key: key.clone(),
                    commit: None,
                    dirty: None,
                    profile: None,
                    in_bucket: false,
                    intact: None,
                    running_sha256: None,
                };
                let Some(key) = key else {
                    functions.push(found);
                    continue;
                };
                let name = format!("{stack}-{}", function.name);
                found.running_sha256 = crate::aws::lambda::code_sha256(&lambda, &name)
                    .await?
                    .as_deref()
                    .and_then(integrity::from_base64);
                if let Some(stored) = integrity::stored(&s3, bucket, &key).await? {
                    found.in_bucket = true;
                    found.intact =
                        Some(Some(stored.sha256.as_str()) == integrity::named_sha256(&key));
                    // The metadata is the writer's word: believed only of bytes that are the key's.
                    if found.intact == Some(true) {
                        let metadata = &stored.metadata;
                        found.commit = metadata.get("git-commit").cloned();
                        found.dirty = metadata.get("git-dirty").map(|d| d == "true");
                        found.profile =
                            Profile::from_metadata(metadata.get("profile").map(String::as_str));
                    }
                }
                functions.push(found);
            }
            let history = if current.is_some() {
                history::read(&s3, bucket, &stack).await?
            } else {
                Vec::new()
            };
            anyhow::Ok((functions, history))
        })?;

        let head = head(workspace, &service.name, &functions)?;
        // The newest recorded release with the keys that run now is the one running.
        let running = current.as_ref().and_then(|c| {
            history.iter().rev().find(|entry| {
                entry
                    .artifact_keys
                    .iter()
                    .all(|(parameter, key)| c.parameters.get(parameter) == Some(key))
            })
        });
        let promoted_from = running.and_then(|entry| entry.promoted_from.clone());
        // Said, not recorded: status changes nothing; the next deploy records it.
        let recorded = current.is_none() || running.is_some();
        let report = Report {
            stack,
            region: aws.region.clone(),
            status: current.as_ref().map(|c| c.status.clone()),
            last_updated: current.as_ref().and_then(|c| c.updated.clone()),
            functions,
            head,
            outputs: current.map(|c| c.outputs).unwrap_or_default(),
            promoted_from,
            recorded,
            history: history.into_iter().rev().take(self.history).collect(),
        };
        print_result(&report, self.output.json, |report| {
            let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
            text(report, &service.name, environment, colour)
        })
    }
}

/// HEAD's commit, and whether deploying it would change each function's code: exact when the
/// last `package` was of HEAD (its manifest has the keys), else from the recorded commits.
fn head(workspace: &Workspace, service: &str, functions: &[Function]) -> anyhow::Result<Head> {
    let source = package::source(&Shell::new()?, &workspace.root, "");
    if source.commit == "unknown" {
        bail!("reading HEAD with git failed: is this a git checkout?");
    }
    let (commit, dirty) = (source.commit, source.dirty);
    if functions
        .iter()
        .any(|f| f.mismatched() || f.intact == Some(false))
    {
        return Ok(Head {
            commit,
            dirty,
            would_change_code: None,
            reason: "what runs, or what the bucket holds, is not what its key names (see above); \
                     deploy a new release, or roll back to one that is intact"
                .into(),
        });
    }
    if functions.iter().any(|f| f.artifact_key.is_none()) {
        return Ok(Head {
            commit,
            dirty,
            would_change_code: Some(true),
            reason: "not every function is deployed".into(),
        });
    }
    let manifest = Plan::read(&workspace.lambda_dir(service).join(MANIFEST)).ok();
    if let Some(manifest) = manifest.filter(|m| {
        m.source
            .as_ref()
            .is_some_and(|s| s.commit == commit && !s.dirty && !dirty)
    }) {
        let differs = functions.iter().any(|f| {
            manifest
                .functions
                .iter()
                .find(|a| a.parameter == f.parameter)
                .and_then(|a| a.key.as_ref())
                != f.artifact_key.as_ref()
        });
        return Ok(Head {
            commit,
            dirty,
            would_change_code: Some(differs),
            reason: "compared with the artifacts packaged from HEAD".into(),
        });
    }
    let all_from_head = functions
        .iter()
        .all(|f| f.commit.as_deref() == Some(commit.as_str()) && f.dirty == Some(false));
    if all_from_head && !dirty {
        return Ok(Head {
            commit,
            dirty,
            would_change_code: Some(false),
            reason: "the deployed artifacts were built from HEAD, with no uncommitted changes"
                .into(),
        });
    }
    Ok(Head {
        reason: format!(
            "HEAD{} is not what the deployed artifacts were built from; package it \
             (`cargo xtask package {service} <env>`) and ask again to know whether the code differs",
            if dirty {
                " (with uncommitted changes)"
            } else {
                ""
            }
        ),
        commit,
        dirty,
        would_change_code: None,
    })
}

/// What is deployed, as people read it.
fn text(report: &Report, service: &str, environment: Environment, colour: bool) -> String {
    let Some(status) = &report.status else {
        return format!(
            "{}: not deployed in {}. Deploy it with `cargo xtask deploy {service} {environment}`.\n",
            report.stack, report.region
        );
    };
    let mut out = format!(
        "{} ({}): {status}, last updated {}\n",
        report.stack,
        report.region,
        report
            .last_updated
            .as_deref()
            .unwrap_or("at an unknown time")
    );
    let red = |text: String| match colour {
        true => format!("\x1b[31m{text}\x1b[0m"),
        false => text,
    };
    for f in &report.functions {
        let origin = match (&f.commit, f.dirty, f.in_bucket) {
            _ if f.intact == Some(false) => red("TAMPERED in the bucket: its bytes are not what \
                                                 the key names"
                .to_owned()),
            (_, _, false) => "MISSING from the bucket".to_owned(),
            (Some(commit), Some(true), _) => {
                format!("from {} with uncommitted changes", short(commit))
            }
            (Some(commit), _, _) => format!("from {}", short(commit)),
            (None, _, true) => "from an unrecorded commit".to_owned(),
        };
        let origin = match f.profile {
            Some(profile) => format!("{origin}, {profile} profile"),
            None => origin,
        };
        out.push_str(&format!(
            "  {}: {} ({origin})\n",
            f.name,
            f.artifact_key.as_deref().unwrap_or("no artifact")
        ));
        if f.mismatched() {
            out.push_str(&red(format!(
                "  MISMATCH: {} runs code whose SHA-256 is {}, not the one its key names",
                f.name,
                f.running_sha256.as_deref().unwrap_or("unknown")
            )));
            out.push('\n');
        }
    }
    if !report.recorded {
        out.push_str(
            "  the release it runs is not in its history (a deploy interrupted after it executed, \
             or one made by another tool): the next deploy records it, as recovered\n",
        );
    }
    if let Some(from) = &report.promoted_from {
        out.push_str(&format!(
            "  promoted from {from}: the artifacts and templates {from} ran, not rebuilt\n"
        ));
    }
    let verdict = match report.head.would_change_code {
        Some(true) => "deploying HEAD would change the code",
        Some(false) => "deploying HEAD would not change the code",
        None => "whether deploying HEAD would change the code is unknown",
    };
    out.push_str(&format!(
        "  HEAD {}: {verdict} ({})\n",
        short(&report.head.commit),
        report.head.reason
    ));
    for (key, value) in &report.outputs {
        out.push_str(&format!("  {key}: {value}\n"));
    }
    if !report.history.is_empty() {
        out.push_str("  releases, newest first:\n");
        for entry in &report.history {
            let keys: Vec<&str> = entry
                .artifact_keys
                .values()
                .map(|k| k.rsplit('/').next().unwrap_or(k))
                .map(|file| file.get(..12).unwrap_or(file))
                .collect();
            out.push_str(&format!(
                "    {}  {:<8}  {}{}  {}\n",
                entry.deployed_at,
                entry.command,
                short(&entry.commit),
                if entry.dirty { "+dirty" } else { "" },
                keys.join(" ")
            ));
            if let Some(from) = &entry.promoted_from {
                out.push_str(&format!("      promoted from {from}\n"));
            }
            if let Some(reason) = &entry.rolled_back {
                out.push_str(&format!("      rolled back by itself: {reason}\n"));
            }
        }
    }
    out
}
