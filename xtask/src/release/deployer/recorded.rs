//! Releases read back from the bucket rather than built: an earlier release of a stack (what
//! `rollback` deploys, and what a release that fails its probes goes back to), and the release
//! another environment runs (what `promote` deploys). Either is taken from a stack's recorded
//! history, and refused when any of its objects is gone from the bucket.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};

use super::{Deployer, Release};
use crate::aws::cloudformation::{self, Current};
use crate::names::{Environment, Profile};
use crate::release::history::{self, Entry, Target};
use crate::release::integrity;
use crate::release::manifest::artifact_key_parameter;
use crate::release::stack::Template;
use crate::release::stack::decide::is_settled;
use crate::workspace::{APIGATEWAY_TEMPLATE, Service, service_template};

impl Deployer<'_> {
    /// The artifacts of `release` that were built with the fast profile, as their metadata
    /// records it.
    pub fn fast_artifacts(release: &Release) -> anyhow::Result<Vec<String>> {
        let mut fast = Vec::new();
        for key in release.artifact_keys.values() {
            let recorded = release.profiles.get(key).cloned();
            match Profile::from_metadata(recorded.as_deref()) {
                Some(Profile::Fast) => fast.push(key.clone()),
                Some(Profile::Release) => {}
                None => bail!(
                    "{key} records the build profile `{}`, which this xtask does not know: \
                     update the xtask, or deploy from source",
                    recorded.unwrap_or_default()
                ),
            }
        }
        Ok(fast)
    }

    /// The earlier release `target` names in the stack's history.
    pub async fn earlier(&self, service: &Service, target: &Target) -> anyhow::Result<Release> {
        let stack = self.stack_name(&service.name);
        let Some((_, running)) = self.running(service, &stack).await? else {
            bail!(
                "stack {stack} does not exist in {}: there is nothing to roll back; deploy it with \
                 `cargo xtask deploy {} {}`",
                self.region,
                service.name,
                self.environment
            );
        };
        if let Target::Key(key) = target {
            let owner = key.split('/').nth(1).unwrap_or_default();
            if owner != service.name {
                bail!(
                    "{key} is an artifact of service {owner}, not of {}: rollback --to takes only \
                     the keys of {}'s own functions (`cargo xtask status {} {}` lists its releases)",
                    service.name,
                    service.name,
                    service.name,
                    self.environment
                );
            }
        }
        let history = history::read(&self.s3, &self.bucket, &stack).await?;
        let entry = history::pick(&history, &running, target, &stack)?;
        self.progress.note(&format!(
            "rolling {stack} back to the release from commit {} (deployed {} by {})",
            crate::names::short(&entry.commit),
            entry.deployed_at,
            entry.command
        ));
        let advice = "Pick another with --to (`cargo xtask status` lists the releases)";
        self.recorded(service, entry, "rollback", None, advice)
            .await
    }

    /// The release that `service`'s stack in `from` runs, exactly: its artifact keys from the
    /// stack's parameters, its templates from the history entry that deployed those keys.
    pub async fn promoted(&self, service: &Service, from: Environment) -> anyhow::Result<Release> {
        let stack = format!("{}-{from}", service.name);
        let deploy = format!("`cargo xtask deploy {} {from}`", service.name);
        let Some((current, running)) = self.running(service, &stack).await? else {
            bail!(
                "nothing is deployed to {from}: stack {stack} does not exist in {}; deploy it first \
                 with {deploy}",
                self.region
            );
        };
        if !is_settled(&current.status) {
            bail!(
                "stack {stack} is in {}, not settled: promote takes only what a stack runs when \
                 nothing is changing it; wait for it (`cargo xtask status {} {from}`), then promote \
                 again",
                current.status,
                service.name
            );
        }
        for function in self.workspace.released_functions(service) {
            let parameter = artifact_key_parameter(&function.name);
            if !running.contains_key(&parameter) {
                bail!(
                    "stack {stack} has no {parameter}: it was deployed before function {} existed, \
                     so it does not run a whole release of this workspace; deploy {from} again with \
                     {deploy}, then promote",
                    function.name
                );
            }
        }
        let history = history::read(&self.s3, &self.bucket, &stack).await?;
        let Some(entry) = history
            .into_iter()
            .rev()
            .find(|entry| entry.artifact_keys == running)
        else {
            bail!(
                "the release stack {stack} runs is not in its recorded history \
                 (s3://{}/{}), so its templates are not known: promote moves only releases this \
                 tool deployed; deploy {from} again with {deploy}, then promote",
                self.bucket,
                history::key(&stack)
            );
        };
        self.progress.note(&format!(
            "promoting what {stack} runs: the release from commit {} (deployed {} by {})",
            crate::names::short(&entry.commit),
            entry.deployed_at,
            entry.command
        ));
        let advice = format!("Deploy {from} again with {deploy} to upload it, then promote");
        self.recorded(service, entry, "promote", Some(from), &advice)
            .await
    }

    /// Records the release `stack` runs when its history does not know it (a deploy interrupted
    /// after its change set was executed, or one made by another tool), as `recovered`, so that
    /// status and rollback know it. Its template's key is found by hashing the template the stack
    /// runs. A failure is said, never fatal: the deploy goes on either way.
    pub(super) async fn recover(&self, service: &str, stack: &str) {
        if let Err(error) = self.try_recover(service, stack).await {
            self.progress.note(&format!(
                "warning: could not check that {stack}'s history records what it runs ({error:#})"
            ));
        }
    }

    async fn try_recover(&self, service: &str, stack: &str) -> anyhow::Result<()> {
        let service = self.workspace.service(service)?;
        let Some((current, running)) = self.running(service, stack).await? else {
            return Ok(());
        };
        let whole = running.len() == self.workspace.released_functions(service).len();
        if !is_settled(&current.status) || !whole {
            return Ok(());
        }
        let history = history::read(&self.s3, &self.bucket, stack).await?;
        if history.iter().any(|entry| entry.artifact_keys == running) {
            return Ok(());
        }
        let body = cloudformation::template_body(&self.cloudformation, &current.id).await?;
        let template_key = crate::release::upload::template_key(
            &service.name,
            &crate::release::artifact::sha256_hex(body.as_bytes()),
            &service_template(&service.name),
        );
        let apigateway_template_key = current
            .parameters
            .get("ApiGatewayTemplateUrl")
            .and_then(|url| url.split_once(&format!("/{}/", self.bucket)))
            .map(|(_, key)| key.to_owned())
            .unwrap_or_default();
        // The commit is the artifacts' word, believed only of bytes that are their key's.
        let mut commit = "unknown".to_owned();
        if let Some(key) = running.values().next()
            && let Ok(stored) = integrity::verify(&self.s3, &self.bucket, key, "").await
            && let Some(recorded) = stored.metadata.get("git-commit")
        {
            commit = recorded.clone();
        }
        let entry = Entry {
            deployed_at: crate::progress::now_rfc3339(),
            command: "recovered".to_owned(),
            commit,
            dirty: false,
            artifact_keys: running,
            template_key,
            apigateway_template_key,
            rolled_back: None,
            promoted_from: None,
        };
        history::append(&self.s3, &self.bucket, stack, entry).await?;
        self.progress.note(&format!(
            "{stack} runs a release its history did not record (a deploy interrupted after it \
             executed, or one made by another tool): recorded it, as recovered"
        ));
        Ok(())
    }

    /// `stack` as it is and the artifact key it runs for each function `service` releases;
    /// `None` when there is no such stack.
    async fn running(
        &self,
        service: &Service,
        stack: &str,
    ) -> anyhow::Result<Option<(Current, BTreeMap<String, String>)>> {
        let Some(current) = cloudformation::describe(&self.cloudformation, stack).await? else {
            return Ok(None);
        };
        let running = self
            .workspace
            .released_functions(service)
            .iter()
            .map(|f| artifact_key_parameter(&f.name))
            .filter_map(|p| Some((p.clone(), current.parameters.get(&p)?.clone())))
            .collect();
        Ok(Some((current, running)))
    }

    /// The release `entry` recorded, once every object it needs is found in the bucket, with its
    /// templates read back from there. `advice` says what to do when one is missing.
    async fn recorded(
        &self,
        service: &Service,
        entry: Entry,
        command: &'static str,
        promoted_from: Option<Environment>,
        advice: &str,
    ) -> anyhow::Result<Release> {
        let (s3, bucket) = (&self.s3, self.bucket.as_str());
        // Each zip and template is what its key names, or the release is refused before any change.
        let then = format!("That release cannot be deployed; nothing was changed. {advice}");
        let (mut artifact_versions, mut profiles) = (BTreeMap::new(), BTreeMap::new());
        for (parameter, key) in &entry.artifact_keys {
            let stored = integrity::verify(s3, bucket, key, &then).await?;
            if let Some(version) = stored.version_id {
                artifact_versions.insert(parameter.clone(), version);
            }
            if let Some(profile) = stored.metadata.get("profile") {
                profiles.insert(key.clone(), profile.clone());
            }
        }
        let template = self
            .read_template(&entry.template_key, &service_template(&service.name))
            .await?;
        let nested = self
            .read_template(&entry.apigateway_template_key, APIGATEWAY_TEMPLATE)
            .await?;
        Ok(Release {
            template,
            nested,
            template_key: entry.template_key,
            apigateway_template_key: entry.apigateway_template_key,
            artifact_keys: entry.artifact_keys,
            artifact_versions,
            profiles,
            commit: entry.commit,
            dirty: entry.dirty,
            command,
            promoted_from,
        })
    }

    /// Records in the stack's history that the release running `artifact_keys` was rolled back
    /// by the tool, and why; a failure to record is said, not fatal (the stack is what matters).
    pub async fn mark_rolled_back(
        &self,
        service: &str,
        artifact_keys: &BTreeMap<String, String>,
        reason: &str,
    ) {
        let stack = self.stack_name(service);
        let marked =
            history::mark_rolled_back(&self.s3, &self.bucket, &stack, artifact_keys, reason).await;
        if let Err(error) = marked {
            self.progress.note(&format!(
                "warning: the rollback of {stack} was not recorded in its history ({error:#})"
            ));
        }
    }

    /// A release's template, read back from the bucket and checked against its key.
    async fn read_template(&self, key: &str, name: &str) -> anyhow::Result<Template> {
        let bucket = &self.bucket;
        let bytes = crate::aws::s3::read_object(&self.s3, bucket, key)
            .await?
            .with_context(|| {
                format!(
                    "s3://{bucket}/{key} does not exist, so that release cannot be deployed; \
                     nothing was changed"
                )
            })?;
        integrity::check_bytes(bucket, key, &bytes)?;
        let body =
            String::from_utf8(bytes).with_context(|| format!("s3://{bucket}/{key} is not text"))?;
        Template::parse(name, body)
    }
}
