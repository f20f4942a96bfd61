//! Brings a service's stack to a release, the path deploy, rollback and promote share: the
//! stack's lock, the change-set engine, the history entry, and an honest word on Ctrl-C. Driven by
//! a plain [`Options`] struct, so every caller says exactly what it wants. Releases read back from
//! the bucket are in `recorded`, stack deletion in `destroy`.

mod destroy;
mod guard;
mod parameters;
mod recorded;
mod retained;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_sdk_cloudformation::Client;

use super::history::{self, Kind};
use super::integrity;
use super::lock::Lock;
use super::manifest::{
    Manifest, artifact_key_parameter, artifact_version_parameter, code_sha256_parameter,
};
use super::report::StackReport;
use super::stack::decide::STACK_PARAMETERS;
use super::stack::{Applied, Change, Engine, ExecutionFailed, Outcome, Phase, Source, Template};
use super::traffic::{Follower, Shift, Traffic, TurnedAway};
use super::upload;
use crate::aws::cloudformation;
use crate::aws::{Connection, template_url};
use crate::environments::Environment;
use crate::environments::Profile;
use crate::environments::StackName;
use crate::progress::Progress;
use crate::workspace::{APIGATEWAY_TEMPLATE, Probe, Service, Workspace, service_template};

/// The tag naming who created a stack.
pub const CREATED_BY_TAG: &str = "biometrix:created-by";
/// The tag saying when a throwaway environment's stack expires (RFC 3339), for `destroy --expired`.
pub const EXPIRES_TAG: &str = "biometrix:expires-at";

/// How a release is brought to its stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stack parameters the caller sets beyond those the release sets (`--parameter`).
    pub parameters: Vec<(String, String)>,
    /// Parameters set where the template declares them and `parameters` does not: what this
    /// machine gives a local stack (the emulator's secrets, by ARN).
    pub defaults: Vec<(String, String)>,
    /// Create and show the change set, but leave it for review.
    pub no_execute: bool,
    /// Refuse, instead of waiting, when another deploy is changing the stack.
    pub no_wait: bool,
    /// Delete and create again a stack whose first deploy failed.
    pub recreate: bool,
    /// The longest to wait for other deploys and for CloudFormation.
    pub timeout: Duration,
    /// How CodeDeploy moves traffic to the new version (`--traffic`); the environment's default
    /// when `None`. A rollback always moves it all at once.
    pub traffic: Option<Traffic>,
    /// The flags that aim a command where this one aimed (` --local`, ` --region …`,
    /// ` --bucket …`), so that every piece of advice is a command that works as written.
    pub flags: String,
}

/// What a stack is brought to: its templates and each function's artifact, where they came from,
/// and how (the [`Kind`] its history records).
#[derive(Debug)]
pub struct Release {
    pub template: Template,
    /// The nested API Gateway template, whose IAM resources the change set also acknowledges.
    pub nested: Template,
    pub template_key: String,
    pub apigateway_template_key: String,
    /// The S3 versions of the two templates that were verified, where the bucket is versioned:
    /// their URLs name them, so that CloudFormation reads exactly those.
    pub template_versions: TemplateVersions,
    pub artifact_keys: BTreeMap<String, String>,
    /// Artifact key parameter → the S3 version of its object, where the bucket is versioned: what
    /// CloudFormation fetches, so that an overwrite of the key cannot change what is deployed.
    pub artifact_versions: BTreeMap<String, String>,
    /// The profile every artifact was built with: what this tool built, or what it read stamped
    /// into the zips' verified bytes; `None` when that is not known (or they differ).
    pub profile: Option<Profile>,
    /// What it is checked with: the gate's `Probes` parameter and the release tool's own check.
    pub probes: Vec<Probe>,
    /// Recorded in the stack's history.
    pub commit: String,
    pub dirty: bool,
    pub kind: Kind,
    /// The environment a promoted release was taken from.
    pub promoted_from: Option<Environment>,
}

/// The S3 versions of a release's two templates (`None` where the bucket keeps no versions).
#[derive(Debug, Clone, Default)]
pub struct TemplateVersions {
    pub template: Option<String>,
    pub apigateway: Option<String>,
}

/// Where the stack already runs a key `set` names, the S3 version it runs, instead of the one just
/// uploaded or read: a key names its bytes and a version never changes, so another upload of the
/// same bytes (two deploys racing to publish them) does not make the same release a different one.
fn keep_running_versions(
    set: &mut BTreeMap<String, String>,
    running: &BTreeMap<String, String>,
    bucket: &str,
) {
    let artifacts: Vec<(String, String)> = set
        .iter()
        .filter(|(parameter, _)| parameter.ends_with("ArtifactKey"))
        .map(|(parameter, key)| (parameter.clone(), key.clone()))
        .collect();
    for (parameter, key) in artifacts {
        let version = artifact_version_parameter(&parameter);
        let runs = running.get(&version).filter(|v| !v.is_empty());
        if running.get(&parameter) == Some(&key)
            && let (Some(runs), Some(chosen)) = (runs, set.get_mut(&version))
        {
            chosen.clone_from(runs);
        }
    }
    let url = "ApiGatewayTemplateUrl";
    if let (Some(runs), Some(chosen)) = (running.get(url), set.get(url))
        && crate::aws::template_key_of(runs, bucket) == crate::aws::template_key_of(chosen, bucket)
        && runs.contains("?versionId=")
    {
        set.insert(url.to_owned(), runs.clone());
    }
}

/// Brings the stacks of one environment to their releases.
pub struct Deployer<'a> {
    cloudformation: Client,
    pub(in crate::release) s3: aws_sdk_s3::Client,
    sdk: aws_config::SdkConfig,
    workspace: &'a Workspace,
    pub(in crate::release) region: String,
    pub(in crate::release) bucket: String,
    pub(in crate::release) environment: Environment,
    pub(in crate::release) options: Options,
    pub(in crate::release) progress: Progress,
}

impl<'a> Deployer<'a> {
    /// Deploys through `aws`: its region, its artifact bucket.
    pub fn new(
        aws: &Connection,
        workspace: &'a Workspace,
        environment: Environment,
        options: Options,
        progress: Progress,
    ) -> Deployer<'a> {
        Deployer {
            cloudformation: aws.cloudformation(),
            s3: aws.s3(),
            sdk: aws.sdk.clone(),
            workspace,
            region: aws.region.clone(),
            bucket: aws.bucket.clone(),
            environment,
            options,
            progress,
        }
    }

    pub fn stack_name(&self, service: &str) -> StackName {
        StackName::new(service, self.environment)
    }

    /// The command that shows `service`'s stack here, as advice: the user's flags carried.
    pub fn status_command(&self, service: &str) -> String {
        format!(
            "`cargo xtask status {service} {}{}`",
            self.environment,
            self.flags()
        )
    }

    fn engine(&self) -> Engine<'_> {
        Engine {
            cloudformation: &self.cloudformation,
            region: &self.region,
            progress: self.progress,
            no_execute: self.options.no_execute,
            no_wait: self.options.no_wait,
            recreate: self.options.recreate,
        }
    }

    /// Fails before any build on what would fail after it: a parameter the template does not take
    /// or that deploy sets itself, a stack in a state deploy refuses, or a stack to create whose
    /// stores an earlier one left behind.
    pub async fn precheck(&self, service: &Service) -> anyhow::Result<()> {
        let (template, _) = self.templates(&service.name)?;
        self.precheck_with(service, &template).await
    }

    /// [`Deployer::precheck`] against `template`, the one that will be deployed.
    pub async fn precheck_with(
        &self,
        service: &Service,
        template: &Template,
    ) -> anyhow::Result<()> {
        for (key, _) in &self.options.parameters {
            let owned = STACK_PARAMETERS.contains(&key.as_str())
                || self.workspace.released_functions(service).iter().any(|f| {
                    let parameter = artifact_key_parameter(&f.name);
                    *key == parameter
                        || *key == code_sha256_parameter(&parameter)
                        || *key == artifact_version_parameter(&parameter)
                });
            if owned {
                bail!("deploy sets the parameter {key} itself; leave out --parameter {key}=…");
            }
        }
        self.check_names_fit(service, template)?;
        let overrides: BTreeMap<String, String> = self.options.parameters.iter().cloned().collect();
        super::stack::decide::check_declared(template, &overrides, &template.name)?;
        self.stack_role().await?;
        let stack = self.stack_name(&service.name);
        self.engine().precheck(&stack).await?;
        if cloudformation::describe(&self.cloudformation, &stack)
            .await?
            .is_none()
        {
            self.refuse_taken_names(&stack, template).await?;
        }
        Ok(())
    }

    /// The role the region's infrastructure stack made for CloudFormation to run service stacks'
    /// change sets as (`CloudFormationRoleArn`); refused, saying how to get it, when that stack
    /// predates it (the service templates also import its permissions boundary).
    async fn stack_role(&self) -> anyhow::Result<String> {
        let infrastructure = super::bootstrap::STACK;
        let current = cloudformation::describe(&self.cloudformation, infrastructure).await?;
        let role = current.and_then(|c| c.outputs.get("CloudFormationRoleArn").cloned());
        role.with_context(|| {
            format!(
                "the infrastructure stack {infrastructure} in {} has no CloudFormationRoleArn: it \
                 predates the role that service stacks' change sets run as. Run `cargo xtask \
                 bootstrap --region {}` once, then deploy again",
                self.region, self.region
            )
        })
    }

    /// A service's stack template from the workspace, and the nested one its change sets cover.
    pub fn templates(&self, service: &str) -> anyhow::Result<(Template, Template)> {
        let file = service_template(service);
        let template =
            Template::parse(&file, self.workspace.template_for(&file, self.environment)?)?;
        let nested = Template::parse(
            APIGATEWAY_TEMPLATE,
            self.workspace
                .template_for(APIGATEWAY_TEMPLATE, self.environment)?,
        )?;
        Ok((template, nested))
    }

    /// The release that `manifest` packaged and `published` uploaded for `service`.
    pub fn packaged(
        &self,
        service: &str,
        manifest: &Manifest,
        published: &upload::Report,
    ) -> anyhow::Result<Release> {
        let artifact_keys: BTreeMap<String, String> = manifest
            .functions
            .iter()
            .filter(|a| a.service == service)
            .map(|a| (a.parameter.clone(), a.key.clone()))
            .collect();
        let artifact_versions = artifact_keys
            .iter()
            .filter_map(|(parameter, key)| {
                let object = published.objects.iter().find(|o| o.key == *key)?;
                Some((parameter.clone(), object.version_id.clone()?))
            })
            .collect();
        let source = &manifest.source;
        let (template, nested) = self.templates(service)?;
        let template_key = published
            .template_key(service, &service_template(service))
            .to_owned();
        let apigateway_template_key = published
            .template_key(service, APIGATEWAY_TEMPLATE)
            .to_owned();
        let version = |key: &str| {
            published
                .objects
                .iter()
                .find(|o| o.key == key)
                .and_then(|o| o.version_id.clone())
        };
        Ok(Release {
            template_versions: TemplateVersions {
                template: version(&template_key),
                apigateway: version(&apigateway_template_key),
            },
            template_key,
            apigateway_template_key,
            template,
            nested,
            profile: Some(manifest.profile),
            probes: self.workspace.service(service)?.probes.clone(),
            artifact_keys,
            artifact_versions,
            commit: source.commit.clone(),
            dirty: source.dirty,
            kind: Kind::Deploy,
            promoted_from: None,
        })
    }

    /// Brings the service's stack to `release`, under `lock`, which the caller holds: the change
    /// set, executed and followed to the end, with CodeDeploy's traffic shift followed while the
    /// stack waits on the live alias. `phase` says, as it goes, what an interrupt would leave.
    pub(in crate::release) async fn apply(
        &self,
        lock: &Lock,
        service: &str,
        release: &Release,
        phase: &RefCell<Phase>,
        deadline: Instant,
    ) -> anyhow::Result<(Applied, Option<Shift>)> {
        let stack = self.stack_name(service);
        let nested_url = template_url(
            &self.region,
            &self.bucket,
            &release.apigateway_template_key,
            release.template_versions.apigateway.as_deref(),
        );
        let mut set = self.parameters(release, nested_url)?;
        match cloudformation::describe(&self.cloudformation, &stack).await? {
            Some(current) => keep_running_versions(&mut set, &current.parameters, &self.bucket),
            None => {
                let borrowed = self.borrowed_secrets(service, release, &set).await?;
                set.extend(borrowed);
            }
        }
        self.fill_defaults(release, &mut set);
        let role = self.stack_role().await?;
        let tags = self.tags();
        let change = Change {
            stack: &stack,
            template: &release.template,
            nested: std::slice::from_ref(&release.nested),
            source: Source::Url(self.template_url(release)),
            set,
            description: "cargo xtask deploy",
            fence: Some(lock),
            role_arn: Some(&role),
            tags: &tags,
        };
        let mut follower = Follower::new(&self.sdk, &stack, self.traffic(release), self.progress);
        let applied = follower
            .during(self.engine().apply(&change, deadline, phase))
            .await;
        match applied {
            Ok(applied) if matches!(applied.outcome, Outcome::Created | Outcome::Updated) => {
                Ok((applied, follower.finish().await))
            }
            Ok(applied) => Ok((applied, None)),
            Err(error) => Err(match follower.finish().await {
                Some(shift) if shift.turned_away().is_some() => {
                    match error.downcast::<ExecutionFailed>() {
                        Ok(failed) => TurnedAway {
                            shift,
                            digest: failed.digest,
                            stack: failed.message,
                        }
                        .into(),
                        Err(error) => error.context(format!("CodeDeploy: {}", shift.sentence())),
                    }
                }
                Some(shift) => error.context(format!("CodeDeploy: {}", shift.sentence())),
                None => error,
            }),
        }
    }

    /// Where CloudFormation reads `release`'s service template.
    fn template_url(&self, release: &Release) -> String {
        template_url(
            &self.region,
            &self.bucket,
            &release.template_key,
            release.template_versions.template.as_deref(),
        )
    }

    /// What the stack is after `applied`: its status, outputs and resources.
    pub(in crate::release) async fn report(
        &self,
        service: &str,
        release: &Release,
        applied: &Applied,
        traffic: Option<Shift>,
        started: Instant,
    ) -> anyhow::Result<StackReport> {
        let stack = self.stack_name(service);
        let current = cloudformation::describe(&self.cloudformation, &stack)
            .await?
            .with_context(|| format!("stack {stack} disappeared"))?;
        Ok(StackReport {
            status: current.status.as_str().to_owned(),
            outcome: applied.outcome,
            change_set_id: applied.change_set.clone(),
            template_url: self.template_url(release),
            artifact_keys: release.artifact_keys.clone(),
            outputs: current.outputs,
            resources: cloudformation::resources(&self.cloudformation, &current.id).await?,
            seconds: started.elapsed().as_secs_f64(),
            probes: None,
            traffic,
            stack,
        })
    }

    /// The history entry of `release` as applied with `digest`.
    pub(in crate::release) fn entry(
        &self,
        release: &Release,
        digest: &str,
        outcome: history::Outcome,
    ) -> history::Entry {
        history::Entry {
            deployed_at: crate::progress::now_rfc3339(),
            kind: release.kind,
            commit: release.commit.clone(),
            dirty: release.dirty,
            artifact_keys: release.artifact_keys.clone(),
            template_key: release.template_key.clone(),
            apigateway_template_key: release.apigateway_template_key.clone(),
            digest: digest.to_owned(),
            profile: release.profile,
            probes: Some(release.probes.clone()),
            outcome,
            promoted_from: release.promoted_from.map(|e| e.to_string()),
        }
    }

    /// Fails unless each function of `service` runs exactly the zip its key names (Lambda's
    /// `CodeSha256` against the key's hash).
    pub(in crate::release) async fn check_running(
        &self,
        service: &str,
        release: &Release,
        report: &StackReport,
    ) -> anyhow::Result<()> {
        let lambda = aws_sdk_lambda::Client::new(&self.sdk);
        let service = self.workspace.service(service)?;
        for function in self.workspace.released_functions(service) {
            let parameter = artifact_key_parameter(&function.name);
            let Some(key) = release.artifact_keys.get(&parameter) else {
                continue;
            };
            let name = self.stack_name(&service.name).function(&function.name);
            let running = crate::aws::lambda::code_sha256(&lambda, &name).await?;
            integrity::check_running(
                &name,
                key,
                running.as_deref(),
                &self.status_command(&service.name),
            )?;
        }
        let stack = self.stack_name(&service.name);
        // The stack as the report just found it: its resources name the nested stack.
        let templates = integrity::running_templates(
            &self.cloudformation,
            &stack,
            &report.resources,
            Some(&release.template_key),
            Some(&release.apigateway_template_key),
        )
        .await?;
        if let Some(template) = templates.iter().find(|t| !t.matches()) {
            bail!(
                "{}: CloudFormation did not deploy what was verified; the release is not counted \
                 as good. Find who replaced the object (CloudTrail's S3 data events), then \
                 deploy again",
                template.mismatch()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_the_stack_runs_keeps_the_version_it_runs() {
        let url = |version: &str| {
            format!(
                "https://s3.us-west-2.amazonaws.com/b/cloudformation/h/ab/apigateway.yaml?versionId={version}"
            )
        };
        let pairs = |pairs: [(&str, String); 5]| -> BTreeMap<String, String> {
            pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
        };
        let running = pairs([
            ("ApiArtifactKey", "lambdas/h/api/aa.zip".into()),
            ("ApiArtifactVersion", "v1".into()),
            ("GateArtifactKey", "lambdas/h/gate/bb.zip".into()),
            ("GateArtifactVersion", "g1".into()),
            ("ApiGatewayTemplateUrl", url("t1")),
        ]);
        let mut set = pairs([
            ("ApiArtifactKey", "lambdas/h/api/aa.zip".into()),
            ("ApiArtifactVersion", "v2".into()),
            ("GateArtifactKey", "lambdas/h/gate/cc.zip".into()),
            ("GateArtifactVersion", "g2".into()),
            ("ApiGatewayTemplateUrl", url("t2")),
        ]);
        keep_running_versions(&mut set, &running, "b");
        assert_eq!(
            set["ApiArtifactVersion"], "v1",
            "the same key: the version it runs"
        );
        assert_eq!(
            set["GateArtifactVersion"], "g2",
            "another key: its own version"
        );
        assert_eq!(set["ApiGatewayTemplateUrl"], url("t1"));
    }
}
