//! `cargo xtask status <service> <env>`: what is deployed. The stack's status and last update,
//! each function's artifact key and the commit its metadata records, whether HEAD would deploy
//! different code, the stack's outputs (its URLs), and the recorded releases.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Serialize;
use xshell::Shell;

use crate::aws::cloudformation;
use crate::cli::{Account, Output, Stack};
use crate::environments::Environment;
use crate::environments::Profile;
use crate::environments::StackName;
use crate::names::short;
use crate::progress::{Progress, print_result};
use crate::release::history::{self, Entry, Outcome};
use crate::release::integrity::{self, RunningTemplate};
use crate::release::manifest::{MANIFEST, Manifest, artifact_key_parameter};
use crate::release::package;
use crate::release::stack::decide::RELEASE_DIGEST;
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
    stack: StackName,
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
    /// The running release's outcome as its history records it: `None` when nothing runs, or the
    /// history does not record it (then it counts as unchecked).
    outcome: Option<Outcome>,
    /// Why the history could not be read, when it could not: what runs is then shown from the
    /// stack alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    history_damaged: Option<String>,
    /// The templates the stack and its nested API stack run, each judged against the key it was
    /// deployed from (the stack's own only once its history records the release).
    templates: Vec<RunningTemplate>,
    /// Newest first.
    history: Vec<Entry>,
}

impl Report {
    /// Why a script should not take what runs as good: it failed, or was never checked.
    fn trouble(&self, service: &str, environment: Environment, flags: &str) -> Option<String> {
        self.status.as_ref()?;
        let stack = &self.stack;
        if let Some(why) = &self.history_damaged {
            return Some(format!(
                "{why}: whether what {stack} runs passed its checks is not known. Move the history \
                 aside and start a new one from what runs with `cargo xtask reset-history \
                 {service} {environment}{flags}`"
            ));
        }
        if let Some(template) = self.templates.iter().find(|t| !t.matches()) {
            return Some(format!(
                "{}: it does not run what was verified. Find who replaced the object \
                 (CloudTrail's S3 data events), then deploy again with `cargo xtask deploy \
                 {service} {environment}{flags}`",
                template.mismatch()
            ));
        }
        match &self.outcome {
            Some(outcome) if outcome.is_good() => None,
            Some(outcome) => Some(format!(
                "{stack} runs a release recorded as {}: deploy a fix, or roll back with `cargo \
                 xtask rollback {service} {environment}{flags}`",
                outcome.describe()
            )),
            None => Some(format!(
                "{stack} runs a release its history does not record, so it was never checked: \
                 `cargo xtask deploy {service} {environment}{flags}` records it and checks it"
            )),
        }
    }
}

#[derive(Debug, Serialize)]
struct Function {
    name: String,
    parameter: String,
    artifact_key: Option<String>,
    /// The commit the artifact's metadata records; `None` when the object is gone or has none.
    commit: Option<String>,
    dirty: Option<bool>,
    /// The cargo profile the artifact was built with, as the release's history entry records it
    /// (read from the profile stamped into its zip, never from the object's metadata).
    profile: Option<Profile>,
    in_bucket: bool,
    /// Whether the bytes at the key hash to what the key names; `None` when they are not there.
    intact: Option<bool>,
    /// The SHA-256 of the code Lambda runs (its `CodeSha256`, in hex).
    running_sha256: Option<String>,
    /// Where the `live` alias (what the API invokes) sends traffic; `None` without one.
    live: Option<Live>,
}

/// The `live` alias: its version, and each additional version's share while a canary or a linear
/// shift is under way (its routing configuration, as CodeDeploy sets it).
#[derive(Debug, Serialize)]
struct Live {
    version: String,
    additional: BTreeMap<String, f64>,
}

impl Live {
    /// `version 4`, or `version 3 90%, version 4 10%`.
    fn split(&self) -> String {
        if self.additional.is_empty() {
            return format!("version {}", self.version);
        }
        let rest: f64 = self.additional.values().sum();
        let mut parts = vec![format!(
            "version {} {:.0}%",
            self.version,
            (1.0 - rest) * 100.0
        )];
        for (version, weight) in &self.additional {
            parts.push(format!("version {version} {:.0}%", weight * 100.0));
        }
        parts.join(", ")
    }
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
        let session = self.account.read(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        let stack = StackName::new(&service.name, environment);
        let (s3, bucket) = (aws.s3(), aws.bucket.as_str());

        // A stack that exists needs its bucket; one that does not is simply not deployed.
        let current = aws
            .runtime
            .block_on(cloudformation::describe(&aws.cloudformation(), &stack))?;
        if current.is_some() {
            session.require_bucket()?;
        }
        let (mut functions, history) = aws.runtime.block_on(async {
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
                    live: None,
                };
                let Some(key) = key else {
                    functions.push(found);
                    continue;
                };
                let name = stack.function(&function.name);
                let alias = lambda
                    .get_alias()
                    .function_name(&*name)
                    .name("live")
                    .send()
                    .await;
                found.live = alias.ok().map(|alias| Live {
                    version: alias.function_version().unwrap_or("?").to_owned(),
                    additional: alias
                        .routing_config()
                        .and_then(|r| r.additional_version_weights())
                        .map(|weights| weights.iter().map(|(v, w)| (v.clone(), *w)).collect())
                        .unwrap_or_default(),
                });
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
                    }
                }
                functions.push(found);
            }
            let history = match current.is_some() {
                true => history::read(&s3, bucket, &stack).await,
                false => Ok(Vec::new()),
            };
            anyhow::Ok((functions, history))
        })?;
        // A damaged history does not hide what runs: that comes from the stack alone.
        let (history, history_damaged) = match history {
            Ok(history) => (history, None),
            Err(error) if history::is_damaged(&error) => (Vec::new(), Some(format!("{error:#}"))),
            Err(error) => return Err(error),
        };

        let head = head(workspace, &service.name, &functions)?;
        // The newest recorded release that is what runs now (its digest, else its keys).
        let running = current.as_ref().and_then(|c| {
            let running = history::Running {
                digest: c.parameters.get(RELEASE_DIGEST).cloned(),
                artifact_keys: c
                    .parameters
                    .iter()
                    .filter(|(p, _)| functions.iter().any(|f| f.parameter == **p))
                    .map(|(p, k)| (p.clone(), k.clone()))
                    .collect(),
                apigateway_template_key: None,
            };
            history::find_running(&history, &running).map(|at| &history[at])
        });
        let promoted_from = running.and_then(|entry| entry.promoted_from.clone());
        let outcome = running.map(|entry| entry.outcome.clone());
        // The profile is what the tool that packaged the release stamped into its zips.
        for function in &mut functions {
            function.profile = running.and_then(|entry| entry.profile);
        }
        // Said, not recorded: status changes nothing; the next deploy records it.
        let recorded = current.is_none() || running.is_some();
        let templates = match &current {
            Some(current) => {
                let apigateway_key = current
                    .parameters
                    .get("ApiGatewayTemplateUrl")
                    .and_then(|url| crate::aws::template_key_of(url, bucket));
                let cloudformation = aws.cloudformation();
                aws.runtime.block_on(async {
                    // Listed only to find the nested stack whose template is judged.
                    let resources = match &apigateway_key {
                        Some(_) => cloudformation::resources(&cloudformation, &current.id).await?,
                        None => Vec::new(),
                    };
                    integrity::running_templates(
                        &cloudformation,
                        &current.id,
                        &resources,
                        running.map(|entry| entry.template_key.as_str()),
                        apigateway_key.as_deref(),
                    )
                    .await
                })?
            }
            None => Vec::new(),
        };
        let report = Report {
            stack,
            region: aws.region.clone(),
            status: current.as_ref().map(|c| c.status.as_str().to_owned()),
            last_updated: current.as_ref().and_then(|c| c.updated.clone()),
            functions,
            head,
            outputs: current.map(|c| c.outputs).unwrap_or_default(),
            promoted_from,
            recorded,
            outcome,
            history_damaged,
            templates,
            history: history.into_iter().rev().take(self.history).collect(),
        };
        let flags = self.account.flags();
        print_result(&report, self.output.json, |report| {
            let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
            text(report, &service.name, environment, colour, &flags)
        })?;
        match report.trouble(&service.name, environment, &flags) {
            Some(trouble) => bail!("{trouble}"),
            None => Ok(()),
        }
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
    let manifest = Manifest::read(&workspace.lambda_dir(service).join(MANIFEST)).ok();
    if let Some(manifest) =
        manifest.filter(|m| m.source.commit == commit && !m.source.dirty && !dirty)
    {
        let differs = functions.iter().any(|f| {
            manifest
                .functions
                .iter()
                .find(|a| a.parameter == f.parameter)
                .map(|a| &a.key)
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
fn text(
    report: &Report,
    service: &str,
    environment: Environment,
    colour: bool,
    flags: &str,
) -> String {
    let Some(status) = &report.status else {
        return format!(
            "{}: not deployed in {}. Deploy it with `cargo xtask deploy {service} \
             {environment}{flags}`.\n",
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
        if let Some(live) = &f.live {
            out.push_str(&format!("    live: {}\n", live.split()));
        }
        if f.mismatched() {
            out.push_str(&red(format!(
                "  MISMATCH: {} runs code whose SHA-256 is {}, not the one its key names",
                f.name,
                f.running_sha256.as_deref().unwrap_or("unknown")
            )));
            out.push('\n');
        }
    }
    for template in report.templates.iter().filter(|t| !t.matches()) {
        out.push_str(&red(format!(
            "  TEMPLATE MISMATCH: {}",
            template.mismatch()
        )));
        out.push('\n');
    }
    if let Some(why) = &report.history_damaged {
        out.push_str(&red(format!(
            "  HISTORY UNREADABLE: {why}; what runs is shown from the stack alone"
        )));
        out.push('\n');
    } else if !report.recorded {
        out.push_str(&red(
            "  UNCHECKED: the release it runs is not in its history (a deploy interrupted after it \
             executed, or one made by another tool): the next deploy records it, as recovered, \
             and checks it"
                .to_owned(),
        ));
        out.push('\n');
    }
    match &report.outcome {
        Some(outcome) if outcome.is_good() => {
            out.push_str(&format!("  release: {}\n", outcome.describe()));
        }
        Some(outcome) => {
            out.push_str(&red(format!(
                "  release: {}",
                outcome.describe().to_uppercase()
            )));
            out.push('\n');
        }
        None => {}
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
                "    {}  {:<9}  {}{}  {}  {}\n",
                entry.deployed_at,
                entry.kind.as_str(),
                short(&entry.commit),
                if entry.dirty { "+dirty" } else { "" },
                keys.join(" "),
                match &entry.outcome {
                    Outcome::Failed { .. } | Outcome::RolledBack { .. } => "FAILED",
                    Outcome::Unchecked => "unchecked",
                    Outcome::Live => "live",
                    Outcome::Superseded => "",
                }
            ));
            if let Some(from) = &entry.promoted_from {
                out.push_str(&format!("      promoted from {from}\n"));
            }
            if entry.outcome.is_failure() {
                out.push_str(&format!("      {}\n", entry.outcome.describe()));
            }
        }
    }
    out
}
