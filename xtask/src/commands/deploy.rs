//! `cargo xtask deploy <service>... <env>`: package and publish (each a no-op when nothing
//! changed), then bring stack `<service>-<env>` to the published template and artifact keys
//! through a change set, following its events to the end. `--local` does all of it against the
//! AWS emulator.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{ChangeSetStatus, ChangeSetType, Parameter, TemplateStage};
use serde::Serialize;

use crate::aws::{Account, Connection, s3_client, template_url};
use crate::history;
use crate::local::Emulator;
use crate::lock::{Contention, Lock};
use crate::manifest::{Plan, artifact_key_parameter};
use crate::names::{Environment, parse_key_value};
use crate::package;
use crate::progress::{Progress, print_json};
use crate::publish::{self, APIGATEWAY_TEMPLATE, Target};
use crate::stack::{self, Next, STACK_PARAMETERS, Template, Value};
use crate::watch::{self, Failure, Watch};
use crate::workspace::{Service, Workspace};

/// Package, publish and deploy services: one change set per stack, followed to the end.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask deploy hardware dev --local --install-tools   # all of it on the local AWS emulator\n  \
    cargo xtask deploy hardware qa --no-execute               # make the change set, leave it for review\n  \
    cargo xtask deploy --all production --parameter DomainName=biometrix.io --json\n\n\
    A stack another deploy is changing is waited for (or refused with --no-wait). A stack whose first\n\
    deploy failed (ROLLBACK_COMPLETE) is only replaced when --recreate is given.")]
pub struct Deploy {
    /// The services to deploy, then the environment (dev, qa or production).
    #[arg(value_name = "SERVICE... ENV", required = true)]
    pub names: Vec<String>,
    /// Deploy every service; then only the environment is given.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub account: Account,
    /// A stack parameter that deploy does not set itself, like DomainName=example.com; others keep
    /// their previous values (repeatable).
    #[arg(long = "parameter", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub parameters: Vec<(String, String)>,
    /// Create and show the change set, but leave it for review instead of executing it.
    #[arg(long)]
    pub no_execute: bool,
    /// Fail at once, instead of waiting, when another deploy is changing the stack.
    #[arg(long)]
    pub no_wait: bool,
    /// Delete and create again a stack whose first deploy failed (ROLLBACK_COMPLETE).
    #[arg(long)]
    pub recreate: bool,
    /// The longest to wait for other deploys and for CloudFormation, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub timeout: u64,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Install missing build tools (cargo-zigbuild into .venv, Rust targets with rustup).
    #[arg(long)]
    pub install_tools: bool,
}

/// How a stack's deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// `--no-execute`: the change set waits for review.
    Review,
}

#[derive(Debug, Serialize)]
pub struct StackReport {
    pub stack: String,
    pub status: String,
    pub outcome: Outcome,
    pub change_set_id: Option<String>,
    pub template_url: String,
    pub artifact_keys: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub resources: Vec<Resource>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Resource {
    pub logical_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub physical_id: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub region: String,
    pub bucket: String,
    /// Set with `--local`: where the emulator listens.
    pub endpoint: Option<String>,
    pub uploaded: usize,
    pub bytes_sent: u64,
    pub stacks: Vec<StackReport>,
}

impl Deploy {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (services, environment) = package::select(workspace, &self.names, self.all)?;
        if self.no_execute && self.recreate {
            bail!(
                "--recreate deletes the stack, which --no-execute promises not to change; pick one"
            );
        }
        let Connection {
            runtime,
            sdk,
            region,
            bucket,
            emulator,
        } = self.account.connect(workspace, progress)?;
        // Checked before packaging, which can take minutes.
        let target = runtime.block_on(Target::check(&sdk, &region, &bucket))?;
        let deployer = Deployer::new(
            &sdk,
            &region,
            &bucket,
            workspace,
            environment,
            &self,
            progress,
        );
        for service in &services {
            runtime.block_on(deployer.precheck(service))?;
        }

        let (plan, published) = publish::release(
            workspace,
            &services,
            environment,
            &target,
            &runtime,
            self.install_tools,
            progress,
        )?;
        let mut report = Report {
            region,
            bucket,
            endpoint: emulator.as_ref().map(|e| e.endpoint.clone()),
            uploaded: published
                .objects
                .iter()
                .filter(|o| o.outcome == publish::Outcome::Uploaded)
                .count(),
            bytes_sent: published.bytes_sent,
            stacks: Vec::new(),
        };
        for service in plan.services() {
            let stack = runtime.block_on(deployer.deploy(service, &plan, &published))?;
            report.stacks.push(stack);
        }
        if self.json {
            return print_json(&report);
        }
        print(&report, emulator.as_ref())
    }
}

/// What deploy knows about an existing stack.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: String,
    pub status: String,
    /// When the stack was last updated (or created), RFC 3339.
    pub updated: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
}

/// The stack named `stack`, or `None` when there is none.
pub async fn describe(cloudformation: &Client, stack: &str) -> anyhow::Result<Option<Current>> {
    let output = match cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
    {
        Ok(output) => output,
        Err(error)
            if error
                .as_service_error()
                .and_then(ProvideErrorMetadata::message)
                .is_some_and(|m| m.contains("does not exist")) =>
        {
            return Ok(None);
        }
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("looking up stack {stack}"));
        }
    };
    let Some(found) = output.stacks().first() else {
        return Ok(None);
    };
    let pairs = |items: Vec<(Option<&str>, Option<&str>)>| -> BTreeMap<String, String> {
        items
            .into_iter()
            .filter_map(|(k, v)| Some((k?.to_owned(), v.unwrap_or_default().to_owned())))
            .collect()
    };
    Ok(Some(Current {
        id: found.stack_id().unwrap_or(stack).to_owned(),
        updated: found
            .last_updated_time()
            .or(found.creation_time())
            .and_then(|t| {
                t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime)
                    .ok()
            }),
        status: found
            .stack_status()
            .map_or("UNKNOWN", |s| s.as_str())
            .to_owned(),
        parameters: pairs(
            found
                .parameters()
                .iter()
                .map(|p| (p.parameter_key(), p.parameter_value()))
                .collect(),
        ),
        outputs: pairs(
            found
                .outputs()
                .iter()
                .map(|o| (o.output_key(), o.output_value()))
                .collect(),
        ),
    }))
}

/// Where the deploy of one stack is, so that Ctrl-C can say what it leaves behind.
#[derive(Debug, Clone)]
enum Phase {
    Preparing,
    Reviewing { change_set: String },
    Executing,
}

/// Brings one stack to a release: the change-set path that deploy and rollback share.
pub struct Deployer<'a> {
    cloudformation: Client,
    s3: aws_sdk_s3::Client,
    workspace: &'a Workspace,
    region: String,
    bucket: String,
    environment: Environment,
    options: &'a Deploy,
    progress: Progress,
}

/// What a stack is brought to: its templates and each function's artifact.
#[derive(Debug)]
pub struct Release {
    pub template: Template,
    pub template_key: String,
    pub apigateway_template_key: String,
    pub artifact_keys: BTreeMap<String, String>,
    /// Recorded in the stack's history.
    pub commit: String,
    pub dirty: bool,
    /// `deploy` or `rollback`, recorded in the history.
    pub command: &'static str,
}

impl<'a> Deployer<'a> {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        region: &str,
        bucket: &str,
        workspace: &'a Workspace,
        environment: Environment,
        options: &'a Deploy,
        progress: Progress,
    ) -> Deployer<'a> {
        Deployer {
            cloudformation: Client::new(sdk),
            s3: s3_client(sdk),
            workspace,
            region: region.to_owned(),
            bucket: bucket.to_owned(),
            environment,
            options,
            progress,
        }
    }

    pub fn stack_name(&self, service: &str) -> String {
        format!("{service}-{}", self.environment)
    }

    /// Fails before any build on what would fail after it: a parameter the template does not take
    /// or that deploy sets itself, or a stack in a state deploy refuses.
    pub async fn precheck(&self, service: &Service) -> anyhow::Result<()> {
        let file = format!("{}-environment.yaml", service.name);
        let template = self.template(&file)?;
        for (key, _) in &self.options.parameters {
            let owned = STACK_PARAMETERS.contains(&key.as_str())
                || service
                    .functions
                    .iter()
                    .any(|f| artifact_key_parameter(&f.name) == *key);
            if owned {
                bail!("deploy sets the parameter {key} itself; leave out --parameter {key}=…");
            }
        }
        let overrides: BTreeMap<String, String> = self.options.parameters.iter().cloned().collect();
        stack::check_declared(&template, &overrides, &file)?;

        let stack = self.stack_name(&service.name);
        let current = describe(&self.cloudformation, &stack).await?;
        let status = current.as_ref().map(|c| c.status.as_str());
        match stack::next(status, &stack, &self.region, self.options.recreate) {
            Next::Refuse(message) => bail!(message),
            Next::Wait if self.options.no_wait => bail!(self.busy(&stack, status.unwrap_or("?"))),
            _ => Ok(()),
        }
    }

    /// A service's stack template, with the nested template its change sets also cover.
    pub fn template(&self, file: &str) -> anyhow::Result<Template> {
        let body = read(self.workspace, file)?;
        let nested = read(self.workspace, APIGATEWAY_TEMPLATE)?;
        Template::parse(file, body, &[&nested])
    }

    fn busy(&self, stack: &str, status: &str) -> String {
        format!(
            "stack {stack} is busy ({status}): another deploy, or someone in the console, is changing it; \
             run again without --no-wait to wait for it, or follow it with \
             `aws cloudformation describe-stack-events --stack-name {stack} --region {}`",
            self.region
        )
    }

    async fn deploy(
        &self,
        service: &str,
        plan: &Plan,
        published: &publish::Report,
    ) -> anyhow::Result<StackReport> {
        let file = format!("{service}-environment.yaml");
        let mut artifact_keys = BTreeMap::new();
        for artifact in plan.functions.iter().filter(|a| a.service == service) {
            let key = artifact.key.clone().context("the plan has been packaged")?;
            artifact_keys.insert(artifact.parameter.clone(), key);
        }
        let source = plan.source.as_ref().context("the plan has been packaged")?;
        let release = Release {
            template: self.template(&file)?,
            template_key: published.template_key(service, &file)?.to_owned(),
            apigateway_template_key: published
                .template_key(service, APIGATEWAY_TEMPLATE)?
                .to_owned(),
            artifact_keys,
            commit: source.commit.clone(),
            dirty: source.dirty,
            command: "deploy",
        };
        self.release(service, release).await
    }

    /// Brings the service's stack to `release` under its lock, and records it in the history
    /// when the stack changed.
    pub async fn release(&self, service: &str, release: Release) -> anyhow::Result<StackReport> {
        let stack = self.stack_name(service);
        let started = Instant::now();
        let nested_url = template_url(&self.region, &self.bucket, &release.apigateway_template_key);
        let template_url = template_url(&self.region, &self.bucket, &release.template_key);
        let template = &release.template;
        let artifact_keys = release.artifact_keys.clone();
        let mut set: BTreeMap<String, String> = BTreeMap::from([
            ("Environment".to_owned(), self.environment.to_string()),
            ("ArtifactBucket".to_owned(), self.bucket.clone()),
            ("ApiGatewayTemplateUrl".to_owned(), nested_url),
        ]);
        set.extend(artifact_keys.clone());
        set.extend(self.options.parameters.iter().cloned());

        let deadline = started + Duration::from_secs(self.options.timeout);
        let contention = if self.options.no_wait {
            Contention::Refuse
        } else {
            Contention::Wait { until: deadline }
        };
        // Ctrl-C drops the work wherever it is; the lock is kept outside it, to be released.
        let lock = RefCell::new(None);
        let phase = RefCell::new(Phase::Preparing);
        let work = async {
            let acquired = Lock::acquire(
                &self.s3,
                &self.bucket,
                &stack,
                Duration::from_secs(self.options.timeout),
                contention,
                self.progress,
            )
            .await?;
            *lock.borrow_mut() = Some(acquired);
            let applied = self
                .apply(&stack, template, &set, &template_url, deadline, &phase)
                .await?;
            if matches!(applied.0, Outcome::Created | Outcome::Updated) {
                let entry = history::Entry {
                    deployed_at: crate::progress::now_rfc3339(),
                    command: release.command.to_owned(),
                    commit: release.commit.clone(),
                    dirty: release.dirty,
                    artifact_keys: release.artifact_keys.clone(),
                    template_key: release.template_key.clone(),
                    apigateway_template_key: release.apigateway_template_key.clone(),
                };
                // The stack has changed either way; a missing record must not read as a failed
                // deploy, only be said.
                if let Err(error) = history::append(&self.s3, &self.bucket, &stack, entry).await {
                    self.progress.note(&format!(
                        "warning: {stack} is deployed, but the release was not recorded ({error:#}); \
                         status and rollback will not know it"
                    ));
                }
            }
            Ok(applied)
        };
        let finished = tokio::select! {
            result = work => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        };
        let result = match finished {
            Some(result) => result,
            None => {
                let phase = phase.borrow().clone();
                Err(self.interrupted(&stack, phase).await)
            }
        };
        let released = match lock.into_inner() {
            Some(lock) => lock.release().await,
            None => Ok(()),
        };
        let (outcome, change_set_id) = result?;
        released?;

        let current = describe(&self.cloudformation, &stack)
            .await?
            .with_context(|| format!("stack {stack} disappeared"))?;
        Ok(StackReport {
            status: current.status,
            outcome,
            change_set_id,
            template_url,
            artifact_keys,
            outputs: current.outputs,
            resources: self.resources(&current.id).await?,
            seconds: started.elapsed().as_secs_f64(),
            stack,
        })
    }

    /// Everything done under the stack's lock: decide, plan, change set, execute, follow.
    async fn apply(
        &self,
        stack: &str,
        template: &Template,
        set: &BTreeMap<String, String>,
        template_url: &str,
        deadline: Instant,
        phase: &RefCell<Phase>,
    ) -> anyhow::Result<(Outcome, Option<String>)> {
        let cloudformation = &self.cloudformation;
        let file = format!("{stack} template");
        let current = loop {
            let current = describe(cloudformation, stack).await?;
            let status = current.as_ref().map(|c| c.status.as_str());
            match stack::next(status, stack, &self.region, self.options.recreate) {
                Next::Create => break None,
                Next::Update => break current,
                Next::Refuse(message) => bail!(message),
                Next::Wait if self.options.no_wait => {
                    bail!(self.busy(stack, status.unwrap_or("?")))
                }
                Next::Wait => {
                    let step = self.progress.step(&format!(
                        "waiting: stack {stack} is {}, changed by someone else",
                        status.unwrap_or("?")
                    ));
                    let settled = watch::settle(cloudformation, stack, &step, deadline).await?;
                    step.done(&format!(
                        "stack {stack} is {}",
                        settled.as_deref().unwrap_or("gone")
                    ));
                }
                Next::Recreate | Next::Discard => {
                    let current = current.context("a stack to delete exists")?;
                    self.delete(stack, &current, deadline).await?;
                }
            }
        };

        let values = stack::parameters(
            template,
            set,
            current.as_ref().map(|c| &c.parameters),
            &file,
        )?;
        if let Some(current) = &current {
            let deployed = cloudformation
                .get_template()
                .stack_name(&current.id)
                .template_stage(TemplateStage::Original)
                .send()
                .await
                .with_context(|| format!("reading the template stack {stack} runs"))?;
            if stack::unchanged(
                template,
                &values,
                deployed.template_body().unwrap_or_default(),
                &current.parameters,
            ) {
                self.progress.note(&format!(
                    "stack {stack} already runs this template with these parameters: nothing to deploy"
                ));
                return Ok((Outcome::Unchanged, None));
            }
        }

        let kind = if current.is_some() {
            ChangeSetType::Update
        } else {
            ChangeSetType::Create
        };
        let Some((change_set, stack_id)) = self
            .change_set(stack, kind.clone(), template, &values, template_url)
            .await?
        else {
            return Ok((Outcome::Unchanged, None));
        };
        if self.options.no_execute {
            self.progress.note(&format!(
                "change set left for review; execute it with `aws cloudformation execute-change-set \
                 --change-set-name {change_set} --region {}`, or delete it with \
                 `aws cloudformation delete-change-set --change-set-name {change_set} --region {}`",
                self.region, self.region
            ));
            return Ok((Outcome::Review, Some(change_set)));
        }

        *phase.borrow_mut() = Phase::Reviewing {
            change_set: change_set.clone(),
        };
        let mut watch = Watch::start(cloudformation, &stack_id, stack).await?;
        let step = self.progress.step(&format!("deploying {stack}"));
        if let Err(error) = cloudformation
            .execute_change_set()
            .change_set_name(&change_set)
            .send()
            .await
        {
            let reason = error
                .as_service_error()
                .and_then(ProvideErrorMetadata::message)
                .map_or_else(|| format!("{error}"), str::to_owned);
            let status = describe(cloudformation, stack)
                .await
                .ok()
                .flatten()
                .map_or_else(|| "missing".to_owned(), |c| c.status);
            bail!(
                "CloudFormation did not execute change set {change_set}: {reason}\n\
                 stack {stack} is {status}; nothing was deployed, so the previous version keeps serving"
            );
        }
        *phase.borrow_mut() = Phase::Executing;
        let ended = watch.follow(&step, deadline).await?;
        if stack::succeeded(&ended.status) {
            step.done(&format!("stack {stack} is {}", ended.status));
            let outcome = if kind == ChangeSetType::Create {
                Outcome::Created
            } else {
                Outcome::Updated
            };
            return Ok((outcome, Some(change_set)));
        }
        bail!(failed(stack, &self.region, &ended.status, &ended.failures))
    }

    /// Creates a change set and waits for it; `None` when it holds no changes (it is then
    /// deleted). Returns its id and its stack's id.
    async fn change_set(
        &self,
        stack: &str,
        kind: ChangeSetType,
        template: &Template,
        values: &BTreeMap<String, Value>,
        template_url: &str,
    ) -> anyhow::Result<Option<(String, String)>> {
        let cloudformation = &self.cloudformation;
        let parameters = values
            .iter()
            .map(|(key, value)| match value {
                Value::Set(value) => Parameter::builder()
                    .parameter_key(key)
                    .parameter_value(value)
                    .build(),
                Value::Previous => Parameter::builder()
                    .parameter_key(key)
                    .use_previous_value(true)
                    .build(),
            })
            .collect();
        let name = format!(
            "xtask-deploy-{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            std::process::id()
        );
        let step = self
            .progress
            .step(&format!("creating change set {name} for {stack}"));
        let created = cloudformation
            .create_change_set()
            .stack_name(stack)
            .change_set_name(&name)
            .change_set_type(kind)
            .template_url(template_url)
            .set_parameters(Some(parameters))
            .set_capabilities(Some(template.capabilities.clone()))
            .description("cargo xtask deploy")
            .send()
            .await;
        let created = match created {
            Ok(created) => created,
            Err(error) if is_empty_change(error.message()) => {
                step.done(&format!("no changes to {stack}"));
                return Ok(None);
            }
            Err(error) => {
                return Err(anyhow::Error::new(error))
                    .with_context(|| format!("creating a change set for stack {stack}"));
            }
        };
        let id = created.id().unwrap_or(&name).to_owned();
        let stack_id = created.stack_id().unwrap_or(stack).to_owned();

        let mut interval = Duration::from_millis(500);
        let described = loop {
            let described = cloudformation
                .describe_change_set()
                .change_set_name(&id)
                .send()
                .await
                .with_context(|| format!("reading change set {name}"))?;
            match described.status() {
                Some(ChangeSetStatus::CreateComplete) => break described,
                Some(ChangeSetStatus::Failed) => {
                    let reason = described.status_reason().unwrap_or("no reason given");
                    if is_empty_change(Some(reason)) {
                        cloudformation
                            .delete_change_set()
                            .change_set_name(&id)
                            .send()
                            .await
                            .with_context(|| format!("deleting the empty change set {name}"))?;
                        step.done(&format!("no changes to {stack}"));
                        return Ok(None);
                    }
                    bail!(
                        "CloudFormation could not create change set {name} for stack {stack}: {reason}"
                    );
                }
                _ => {}
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(5));
        };
        step.done(&format!("change set {name} is ready"));
        let mut changes: Vec<aws_sdk_cloudformation::types::Change> = described.changes().to_vec();
        let mut token = described.next_token().map(str::to_owned);
        while let Some(next) = token {
            let page = cloudformation
                .describe_change_set()
                .change_set_name(&id)
                .next_token(next)
                .send()
                .await?;
            changes.extend(page.changes().iter().cloned());
            token = page.next_token().map(str::to_owned);
        }
        eprint!("{}", change_table(stack, &changes));
        Ok(Some((id, stack_id)))
    }

    async fn delete(
        &self,
        stack: &str,
        current: &Current,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        self.progress.note(&format!(
            "deleting stack {stack} ({}, so it has no resources to lose) to create it again",
            current.status
        ));
        let mut watch = Watch::start(&self.cloudformation, &current.id, stack).await?;
        let step = self.progress.step(&format!("deleting {stack}"));
        self.cloudformation
            .delete_stack()
            .stack_name(&current.id)
            .send()
            .await
            .with_context(|| format!("deleting stack {stack}"))?;
        let ended = watch.follow(&step, deadline).await?;
        if ended.status != "DELETE_COMPLETE" {
            bail!(failed(stack, &self.region, &ended.status, &ended.failures));
        }
        step.done(&format!("deleted {stack}"));
        Ok(())
    }

    async fn resources(&self, stack_id: &str) -> anyhow::Result<Vec<Resource>> {
        let listed = self
            .cloudformation
            .list_stack_resources()
            .stack_name(stack_id)
            .send()
            .await
            .context("listing the stack's resources")?;
        Ok(listed
            .stack_resource_summaries()
            .iter()
            .filter_map(|r| {
                Some(Resource {
                    logical_id: r
                        .logical_resource_id()
                        .filter(|id| !id.is_empty())?
                        .to_owned(),
                    kind: r.resource_type().unwrap_or_default().to_owned(),
                    physical_id: r.physical_resource_id().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }

    /// What Ctrl-C leaves behind, and what to do about it.
    async fn interrupted(&self, stack: &str, phase: Phase) -> anyhow::Error {
        let region = &self.region;
        match phase {
            Phase::Preparing => anyhow::anyhow!(
                "interrupted before anything was sent to stack {stack}; it is as it was"
            ),
            Phase::Reviewing { change_set } => {
                let _ = self
                    .cloudformation
                    .delete_change_set()
                    .change_set_name(&change_set)
                    .send()
                    .await;
                anyhow::anyhow!(
                    "interrupted before the change set was executed; it was deleted, and stack {stack} \
                     is as it was"
                )
            }
            Phase::Executing => anyhow::anyhow!(
                "interrupted, but the update of stack {stack} goes on in AWS: follow it with \
                 `aws cloudformation describe-stack-events --stack-name {stack} --region {region}`, \
                 or run the same deploy again, which waits for it to finish"
            ),
        }
    }
}

fn read(workspace: &Workspace, file: &str) -> anyhow::Result<String> {
    let path = workspace.root.join("cloudformation").join(file);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// CloudFormation's two ways of saying a change set would change nothing.
fn is_empty_change(message: Option<&str>) -> bool {
    message.is_some_and(|m| {
        m.contains("didn't contain changes") || m.contains("No updates are to be performed")
    })
}

/// The change set as a table: action, logical id, type, replacement.
pub fn change_table(stack: &str, changes: &[aws_sdk_cloudformation::types::Change]) -> String {
    let rows: Vec<[String; 4]> = changes
        .iter()
        .filter_map(|change| change.resource_change())
        .map(|change| {
            [
                change.action().map_or("?", |a| a.as_str()).to_owned(),
                change.logical_resource_id().unwrap_or("?").to_owned(),
                change.resource_type().unwrap_or("?").to_owned(),
                change.replacement().map_or("-", |r| r.as_str()).to_owned(),
            ]
        })
        .collect();
    table(
        &format!("change set for {stack}:"),
        ["ACTION", "LOGICAL ID", "TYPE", "REPLACEMENT"],
        &rows,
    )
}

fn table(title: &str, header: [&str; 4], rows: &[[String; 4]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = format!("{title}\n");
    let mut line = |cells: [&str; 4]| {
        let mut text = String::from(" ");
        for (cell, width) in cells.iter().zip(widths) {
            text.push_str(&format!(" {cell:<width$}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    if rows.is_empty() {
        out.push_str("  (no resource changes listed)\n");
    }
    out
}

/// The error for a stack operation that ended badly: its final state and every failing resource.
fn failed(stack: &str, region: &str, status: &str, failures: &[Failure]) -> String {
    let mut message = format!("stack {stack} ended in {status}");
    message.push_str(match status {
        "UPDATE_ROLLBACK_COMPLETE" => {
            ": the update failed and was rolled back, so the previous version keeps serving"
        }
        "ROLLBACK_COMPLETE" => {
            ": its first deploy failed; fix the cause, then deploy again with --recreate"
        }
        _ => "",
    });
    if failures.is_empty() {
        message.push_str(&format!(
            "\nno resource reported a failure; see `aws cloudformation describe-stack-events \
             --stack-name {stack} --region {region}`"
        ));
    } else {
        message.push_str("\nfailed resources:");
        for failure in failures {
            message.push_str(&format!(
                "\n  {} ({}) {}: {}",
                failure.resource, failure.kind, failure.status, failure.reason
            ));
        }
    }
    message
}

pub fn print(report: &Report, emulator: Option<&Emulator>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "published to s3://{} in {}: {} new objects, {} bytes",
        report.bucket, report.region, report.uploaded, report.bytes_sent
    )?;
    for stack in &report.stacks {
        let verb = match stack.outcome {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Review => "change set ready for review",
        };
        writeln!(
            out,
            "{}: {verb}, {} ({:.1}s)",
            stack.stack, stack.status, stack.seconds
        )?;
        if let Some(change_set) = &stack.change_set_id {
            writeln!(out, "  change set  {change_set}")?;
        }
        for (parameter, key) in &stack.artifact_keys {
            writeln!(out, "  {parameter}  {key}")?;
        }
        for (output, value) in &stack.outputs {
            writeln!(out, "  output {output}  {value}")?;
        }
        let rows: Vec<[String; 4]> = stack
            .resources
            .iter()
            .map(|r| {
                [
                    String::new(),
                    r.logical_id.clone(),
                    r.kind.clone(),
                    r.physical_id.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            let resources = table(
                "  resources:",
                ["", "LOGICAL ID", "TYPE", "PHYSICAL ID"],
                &rows,
            );
            write!(out, "{resources}")?;
        }
    }
    if let Some(emulator) = emulator {
        writeln!(
            out,
            "\nThe local AWS emulator keeps running at {} (pid {}, log {}).\n\
             Look around with `AWS_ENDPOINT_URL={} aws cloudformation describe-stacks`, \
             stop it with `kill {}`.",
            emulator.endpoint,
            emulator.pid,
            emulator.log.display(),
            emulator.endpoint,
            emulator.pid
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_key_value() {
        assert_eq!(
            parse_key_value("DomainName=example.com"),
            Ok(("DomainName".into(), "example.com".into()))
        );
        assert_eq!(
            parse_key_value("Empty="),
            Ok(("Empty".into(), String::new()))
        );
        assert_eq!(
            parse_key_value("=x"),
            Err("`=x` is not KEY=VALUE".to_owned())
        );
        assert_eq!(
            parse_key_value("nothing"),
            Err("`nothing` is not KEY=VALUE".to_owned())
        );
    }

    #[test]
    fn failures_name_every_resource_and_reason() {
        let message = failed(
            "hardware-dev",
            "us-west-2",
            "UPDATE_ROLLBACK_COMPLETE",
            &[Failure {
                resource: "Api/RestApi".into(),
                kind: "AWS::ApiGateway::RestApi".into(),
                status: "UPDATE_FAILED".into(),
                reason: "Invalid binary media type".into(),
            }],
        );
        assert_eq!(
            message,
            "stack hardware-dev ended in UPDATE_ROLLBACK_COMPLETE: the update failed and was rolled \
             back, so the previous version keeps serving\nfailed resources:\n  Api/RestApi \
             (AWS::ApiGateway::RestApi) UPDATE_FAILED: Invalid binary media type"
        );
    }

    #[test]
    fn change_sets_print_as_aligned_tables() {
        use aws_sdk_cloudformation::types::{Change, ChangeAction, Replacement, ResourceChange};
        let change = |action, id: &str, kind: &str, replacement| {
            Change::builder()
                .resource_change(
                    ResourceChange::builder()
                        .action(action)
                        .logical_resource_id(id)
                        .resource_type(kind)
                        .set_replacement(replacement)
                        .build(),
                )
                .build()
        };
        let table = change_table(
            "hardware-dev",
            &[
                change(
                    ChangeAction::Modify,
                    "Function",
                    "AWS::Lambda::Function",
                    Some(Replacement::False),
                ),
                change(ChangeAction::Add, "Api", "AWS::CloudFormation::Stack", None),
            ],
        );
        assert_eq!(
            table,
            "change set for hardware-dev:\n\
             \x20 ACTION LOGICAL ID TYPE                       REPLACEMENT\n\
             \x20 Modify Function   AWS::Lambda::Function      False\n\
             \x20 Add    Api        AWS::CloudFormation::Stack -\n"
        );
    }
}
