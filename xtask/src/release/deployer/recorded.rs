//! Releases read back rather than built: an earlier release of a stack (what `rollback` deploys,
//! and what a release that fails its probes goes back to), the release another environment runs
//! (what `promote` deploys), and the release a stack runs as its history should record it. A
//! history entry is the bucket's word, so every key it names is checked against the service it is
//! deployed to, every object against its key, and the profile is read from the zips' own bytes.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};

use super::{Deployer, Release, TemplateVersions};
use crate::aws::cloudformation::{self, Current};
use crate::environments::{Environment, Profile, StackName};
use crate::release::history::{self, Entry, Kind, Outcome, Running};
use crate::release::manifest::artifact_key_parameter;
use crate::release::stack::Template;
use crate::release::stack::decide::{RELEASE_DIGEST, is_settled};
use crate::release::{integrity, upload};
use crate::workspace::{APIGATEWAY_TEMPLATE, Service, service_template};

impl Deployer<'_> {
    /// The stack's history; a damaged one is refused with the way out, which works.
    pub async fn history(&self, stack: &str) -> anyhow::Result<Vec<Entry>> {
        history::read(&self.s3, &self.bucket, stack)
            .await
            .map_err(|error| {
                if !history::is_damaged(&error) {
                    return error;
                }
                let service = stack
                    .strip_suffix(&format!("-{}", self.environment))
                    .unwrap_or(stack);
                error.context(format!(
                    "the history of {stack} cannot be read, so nothing that changes the stack \
                     trusts it; nothing was changed. Move it aside and start a new one from what \
                     runs with `cargo xtask reset-history {service} {}{}`, then try again",
                    self.environment,
                    self.flags()
                ))
            })
    }

    /// The flags that aim a command where this deployer is aimed, for advice.
    pub fn flags(&self) -> &str {
        &self.options.flags
    }

    /// The release that `service`'s stack in `from` runs, exactly: its artifact keys from the
    /// stack's parameters, its templates from the history entry that is that release.
    pub async fn promoted(&self, service: &Service, from: Environment) -> anyhow::Result<Release> {
        let stack = StackName::new(&service.name, from);
        let flags = self.flags();
        let deploy = format!("`cargo xtask deploy {} {from}{flags}`", service.name);
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
                 nothing is changing it; wait for it (`cargo xtask status {} {from}{flags}`), then \
                 promote again",
                current.status,
                service.name
            );
        }
        for function in self.workspace.released_functions(service) {
            let parameter = artifact_key_parameter(&function.name);
            if !running.artifact_keys.contains_key(&parameter) {
                bail!(
                    "stack {stack} has no {parameter}: it was deployed before function {} existed, \
                     so it does not run a whole release of this workspace; deploy {from} again with \
                     {deploy}, then promote",
                    function.name
                );
            }
        }
        let history = self.history(&stack).await?;
        let Some(at) = history::find_running(&history, &running) else {
            bail!(
                "the release stack {stack} runs is not in its recorded history \
                 (s3://{}/{}), so its templates are not known: promote moves only releases this \
                 tool deployed; deploy {from} again with {deploy}, then promote",
                self.bucket,
                history::key(&stack)
            );
        };
        let entry = history[at].clone();
        if !entry.outcome.is_good() {
            bail!(
                "stack {stack} runs a release recorded as {}: promote moves only a release that \
                 passed its checks; fix {from} first (`cargo xtask status {} {from}{flags}`)",
                entry.outcome.describe(),
                service.name
            );
        }
        self.progress.note(&format!(
            "promoting what {stack} runs: the release from commit {} (deployed {} by {})",
            crate::names::short(&entry.commit),
            entry.deployed_at,
            entry.kind.as_str()
        ));
        let advice = format!("Deploy {from} again with {deploy} to upload it, then promote");
        self.recorded(service, entry, Kind::Promote, Some(from), &advice)
            .await
    }

    /// `release`, as `source` (a deployer in another account) found and verified it, with every
    /// object it names carried into this deployer's bucket (each checked against the SHA-256 its
    /// key names, put with S3's checksum), and the versions that this bucket holds them at: the
    /// very bytes, nothing rebuilt.
    pub async fn carried(
        &self,
        source: &Deployer<'_>,
        mut release: Release,
    ) -> anyhow::Result<Release> {
        let step = self.progress.step(&format!(
            "carrying the release from s3://{} into s3://{}",
            source.bucket, self.bucket
        ));
        let (from, to) = (
            (&source.s3, source.bucket.as_str()),
            (&self.s3, self.bucket.as_str()),
        );
        for (parameter, key) in &release.artifact_keys {
            let version = release.artifact_versions.get(parameter).map(String::as_str);
            match upload::carry(from, to, key, version).await? {
                Some(here) => release.artifact_versions.insert(parameter.clone(), here),
                None => release.artifact_versions.remove(parameter),
            };
        }
        let versions = &mut release.template_versions;
        for (key, version) in [
            (&release.template_key, &mut versions.template),
            (&release.apigateway_template_key, &mut versions.apigateway),
        ] {
            *version = upload::carry(from, to, key, version.as_deref()).await?;
        }
        step.done(&format!(
            "carried {} objects into s3://{}, each checked against its key",
            release.artifact_keys.len() + 2,
            self.bucket
        ));
        Ok(release)
    }

    /// What `stack` runs, as its history should record it: kind `recovered`, unchecked. Its
    /// template's key is found by hashing the template the stack runs; its commit is the
    /// artifacts' word, believed only of bytes that are their key's. `None` when there is no such
    /// stack, or it is changing, or it does not run a whole release.
    pub(in crate::release) async fn running_entry(
        &self,
        service: &Service,
        stack: &str,
    ) -> anyhow::Result<Option<Entry>> {
        let Some((current, running)) = self.running(service, stack).await? else {
            return Ok(None);
        };
        let whole = running.artifact_keys.len() == self.workspace.released_functions(service).len();
        if !is_settled(&current.status) || !whole {
            return Ok(None);
        }
        let body = cloudformation::template_body(&self.cloudformation, &current.id).await?;
        let template_key = upload::template_key(
            &service.name,
            &crate::release::artifact::sha256_hex(body.as_bytes()),
            &service_template(&service.name),
        );
        let mut commit = "unknown".to_owned();
        if let Some(key) = running.artifact_keys.values().next()
            && let Ok(stored) = integrity::verify(&self.s3, &self.bucket, key, "").await
            && let Some(recorded) = stored.metadata.get("git-commit")
        {
            commit = recorded.clone();
        }
        Ok(Some(Entry {
            deployed_at: crate::progress::now_rfc3339(),
            kind: Kind::Recovered,
            commit,
            dirty: false,
            artifact_keys: running.artifact_keys,
            template_key,
            apigateway_template_key: running.apigateway_template_key.unwrap_or_default(),
            digest: running.digest.unwrap_or_default(),
            profile: None,
            probes: current
                .parameters
                .get("Probes")
                .and_then(|probes| serde_json::from_str(probes).ok()),
            outcome: Outcome::Unchecked,
            promoted_from: None,
        }))
    }

    /// Records the release `stack` runs when `history` does not know it (a deploy interrupted
    /// after its change set was executed, or one made by another tool), as `recovered` and
    /// unchecked, so that status and rollback know it and the next check judges it.
    pub(in crate::release) async fn recover(
        &self,
        service: &Service,
        stack: &str,
        history: &[Entry],
    ) -> anyhow::Result<()> {
        let Some((_, running)) = self.running(service, stack).await? else {
            return Ok(());
        };
        if history::find_running(history, &running).is_some() {
            return Ok(());
        }
        let Some(entry) = self.running_entry(service, stack).await? else {
            return Ok(());
        };
        history::append(&self.s3, &self.bucket, stack, entry).await?;
        self.progress.note(&format!(
            "{stack} runs a release its history did not record (a deploy interrupted after it \
             executed, or one made by another tool): recorded it, as recovered and unchecked"
        ));
        Ok(())
    }

    /// `stack` as it is and the release it runs, as its parameters say; `None` when there is no
    /// such stack.
    pub(in crate::release) async fn running(
        &self,
        service: &Service,
        stack: &str,
    ) -> anyhow::Result<Option<(Current, Running)>> {
        let Some(current) = cloudformation::describe(&self.cloudformation, stack).await? else {
            return Ok(None);
        };
        let artifact_keys = self
            .workspace
            .released_functions(service)
            .iter()
            .map(|f| artifact_key_parameter(&f.name))
            .filter_map(|p| Some((p.clone(), current.parameters.get(&p)?.clone())))
            .collect();
        let apigateway_template_key = current
            .parameters
            .get("ApiGatewayTemplateUrl")
            .and_then(|url| crate::aws::template_key_of(url, &self.bucket));
        let running = Running {
            digest: current.parameters.get(RELEASE_DIGEST).cloned(),
            artifact_keys,
            apigateway_template_key,
        };
        Ok(Some((current, running)))
    }

    /// The release `entry` recorded, once every key it names is proven to be `service`'s and every
    /// object it needs is found in the bucket as its key names, with its templates read back from
    /// there and its profile from its zips' bytes. `advice` says what to do when one is missing.
    pub(in crate::release) async fn recorded(
        &self,
        service: &Service,
        entry: Entry,
        kind: Kind,
        promoted_from: Option<Environment>,
        advice: &str,
    ) -> anyhow::Result<Release> {
        let functions: Vec<&str> = self
            .workspace
            .released_functions(service)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        for (parameter, key) in &entry.artifact_keys {
            integrity::check_artifact_key(&service.name, &functions, parameter, key)?;
        }
        let template_file = service_template(&service.name);
        integrity::check_template_key(&service.name, &template_file, &entry.template_key)?;
        integrity::check_template_key(
            &service.name,
            APIGATEWAY_TEMPLATE,
            &entry.apigateway_template_key,
        )?;
        let (s3, bucket) = (&self.s3, self.bucket.as_str());
        // Each zip and template is what its key names, or the release is refused before any change.
        let then = format!("That release cannot be deployed; nothing was changed. {advice}");
        let mut artifact_versions = BTreeMap::new();
        let mut profiles = Vec::new();
        for (parameter, key) in &entry.artifact_keys {
            let stored = integrity::verify(s3, bucket, key, &then).await?;
            let version = stored.version_id.as_deref();
            profiles.push(integrity::stamped_profile(s3, bucket, key, version).await?);
            if let Some(version) = stored.version_id {
                artifact_versions.insert(parameter.clone(), version);
            }
        }
        let profile: Option<Profile> = match profiles.split_first() {
            Some((first, rest)) if rest.iter().all(|p| p == first) => *first,
            _ => None,
        };
        let (template, template_version) = self
            .read_template(&entry.template_key, &template_file)
            .await?;
        // Checked as it was checked; an entry from before probes were recorded, as the service is.
        let probes = entry.probes.unwrap_or_else(|| service.probes.clone());
        let (nested, apigateway_version) = self
            .read_template(&entry.apigateway_template_key, APIGATEWAY_TEMPLATE)
            .await?;
        Ok(Release {
            template,
            nested,
            template_key: entry.template_key,
            apigateway_template_key: entry.apigateway_template_key,
            template_versions: TemplateVersions {
                template: template_version,
                apigateway: apigateway_version,
            },
            artifact_keys: entry.artifact_keys,
            artifact_versions,
            profile,
            probes,
            commit: entry.commit,
            dirty: entry.dirty,
            kind,
            promoted_from,
        })
    }

    /// A release's template, read back from the bucket and checked against its key, with the
    /// version those bytes are (which its URL then names).
    async fn read_template(
        &self,
        key: &str,
        name: &str,
    ) -> anyhow::Result<(Template, Option<String>)> {
        let bucket = &self.bucket;
        let object = crate::aws::s3::read_object_version(&self.s3, bucket, key)
            .await?
            .with_context(|| {
                format!(
                    "s3://{bucket}/{key} does not exist, so that release cannot be deployed; \
                     nothing was changed"
                )
            })?;
        integrity::check_bytes(bucket, key, &object.bytes)?;
        let body = String::from_utf8(object.bytes)
            .with_context(|| format!("s3://{bucket}/{key} is not text"))?;
        Ok((Template::parse(name, body)?, object.version_id))
    }
}

impl Deployer<'_> {
    /// The way out of a damaged history: under the stack's lock, moves it aside to a versioned
    /// copy and starts a new one holding what the stack runs (recovered, unchecked, so the next
    /// deploy checks it). Refused while the history reads fine. What was done, as a sentence.
    pub async fn reset_history(&self, service: &Service) -> anyhow::Result<String> {
        let stack = self.stack_name(&service.name);
        match history::read(&self.s3, &self.bucket, &stack).await {
            Ok(_) => bail!(
                "the history of {stack} (s3://{}/{}) reads fine: there is nothing to reset",
                self.bucket,
                history::key(&stack)
            ),
            Err(error) if history::is_damaged(&error) => {}
            Err(error) => return Err(error),
        }
        let deadline = std::time::Instant::now() + self.options.timeout;
        let reset = async |_: &crate::release::lock::Lock| {
            let fresh: Vec<Entry> = self
                .running_entry(service, &stack)
                .await?
                .into_iter()
                .collect();
            let stamp = crate::progress::now_rfc3339();
            let moved = history::reset(&self.s3, &self.bucket, &stack, &stamp, fresh.clone())
                .await?
                .unwrap_or_default();
            let started = match fresh.first() {
                Some(entry) => format!(
                    "a new one records what it runs ({}), as recovered and unchecked: the next \
                     deploy checks it",
                    entry
                        .artifact_keys
                        .values()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "a new one starts empty, since the stack runs no whole release".to_owned(),
            };
            anyhow::Ok(format!(
                "moved the history of {stack} aside to s3://{}/{moved}; {started}",
                self.bucket
            ))
        };
        let interrupted = async || {
            anyhow::anyhow!(
                "interrupted: the history of {stack} may have been copied aside, and is otherwise \
                 as it was; run the same command again"
            )
        };
        self.locked(&stack, deadline, reset, interrupted).await
    }
}
