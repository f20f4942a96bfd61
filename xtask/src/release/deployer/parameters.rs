//! The parameters a release's stack gets, and its tags: what deploy sets itself (the environment,
//! the bucket, the nested template, the artifact keys and what the release declares), the user's
//! `--parameter`s, the environment's domain, the secrets a new stack borrows from the environment
//! its table entry names (`secrets-from`), and what this machine gives a local stack.

use std::collections::BTreeMap;

use super::*;

impl Deployer<'_> {
    /// The tags a stack gets when it is created: who made it (the GitHub actor in a workflow, else
    /// this machine's user) and, for an environment with a time to live, when it expires.
    pub(super) fn tags(&self) -> Vec<(String, String)> {
        let who = match std::env::var("GITHUB_ACTOR") {
            Ok(actor) if !actor.is_empty() => format!("github:{actor}"),
            _ => std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()),
        };
        let mut tags = vec![(CREATED_BY_TAG.to_owned(), who)];
        if let Some(ttl) = self.environment.time_to_live() {
            let expires = std::time::SystemTime::now() + ttl;
            tags.push((EXPIRES_TAG.to_owned(), crate::progress::rfc3339_at(expires)));
        }
        tags
    }

    /// The parameters deploy sets for `release`: the environment, bucket and nested template, the
    /// artifact keys, `--parameter`s, what the release declares, and the environment's domain.
    pub(super) fn parameters(
        &self,
        release: &Release,
        nested_url: String,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut set: BTreeMap<String, String> = BTreeMap::from([
            ("Environment".to_owned(), self.environment.to_string()),
            ("ArtifactBucket".to_owned(), self.bucket.clone()),
            ("ApiGatewayTemplateUrl".to_owned(), nested_url),
        ]);
        set.extend(release.artifact_keys.clone());
        set.extend(self.options.parameters.iter().cloned());
        let declared = release.template.parameters();
        for (key, value) in self.release_parameters(release)? {
            if declared.contains_key(&key) {
                set.insert(key, value);
            }
        }
        if let Some(domain) = self.environment.domain()
            && declared.contains_key("DomainName")
            && !set.contains_key("DomainName")
        {
            set.insert("DomainName".to_owned(), domain.to_owned());
        }
        Ok(set)
    }

    /// What this machine gives a local stack (the emulator's secrets), where nothing else set it.
    pub(super) fn fill_defaults(&self, release: &Release, set: &mut BTreeMap<String, String>) {
        let declared = release.template.parameters();
        for (key, value) in &self.options.defaults {
            if declared.contains_key(key) && !set.contains_key(key) {
                set.insert(key.clone(), value.clone());
            }
        }
    }

    /// For a stack about to be created in an environment that borrows another's secrets
    /// (`secrets-from`), the secret ARNs (`*SecretArn` parameters) that `set` lacks, as the same
    /// service's stack there has them; an ARN given with --parameter wins.
    pub(super) async fn borrowed_secrets(
        &self,
        service: &str,
        release: &Release,
        set: &BTreeMap<String, String>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let Some(from) = self.environment.secrets_from() else {
            return Ok(Vec::new());
        };
        let lender = StackName::new(service, from);
        let Some(current) = cloudformation::describe(&self.cloudformation, &lender).await? else {
            self.progress.note(&format!(
                "{} borrows {from}'s secrets, but {lender} does not exist: it gets none of them",
                self.environment
            ));
            return Ok(Vec::new());
        };
        let borrowed: Vec<(String, String)> = release
            .template
            .parameters()
            .into_keys()
            .filter(|key| key.ends_with("SecretArn") && !set.contains_key(key))
            .filter_map(|key| {
                let value = current.parameters.get(&key)?.clone();
                (!value.is_empty()).then_some((key, value))
            })
            .collect();
        if !borrowed.is_empty() {
            let names: Vec<&str> = borrowed.iter().map(|(k, _)| k.as_str()).collect();
            self.progress.note(&format!(
                "{} borrows {from}'s secrets: {} from {lender}",
                self.environment,
                names.join(", ")
            ));
        }
        Ok(borrowed)
    }

    /// How traffic moves to `release`: as asked, else as its environment does; a rollback restores
    /// a release that ran before, all at once.
    pub(super) fn traffic(&self, release: &Release) -> Traffic {
        match release.kind {
            Kind::Rollback => Traffic::AllAtOnce,
            _ => self
                .options
                .traffic
                .unwrap_or_else(|| self.environment.traffic()),
        }
    }

    /// What deploy sets where the template declares it (a release from before a parameter existed
    /// is deployed without it): each function's `<Function>CodeSha256`, which its published
    /// version must match, and `<Function>ArtifactVersion`, the S3 version CloudFormation fetches;
    /// the traffic configuration; the probes the pre-traffic gate sends.
    pub(super) fn release_parameters(
        &self,
        release: &Release,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let traffic = self.traffic(release);
        let mut parameters = vec![
            (
                "DeploymentConfiguration".to_owned(),
                traffic.configuration().to_owned(),
            ),
            ("Probes".to_owned(), serde_json::to_string(&release.probes)?),
        ];
        for (parameter, key) in &release.artifact_keys {
            let hash = integrity::named_sha256(key)
                .with_context(|| format!("{key} is not named by its SHA-256"))?;
            let version = release.artifact_versions.get(parameter);
            parameters.push((
                artifact_version_parameter(parameter),
                version.cloned().unwrap_or_default(),
            ));
            parameters.push((
                code_sha256_parameter(parameter),
                integrity::lambda_code_sha256(hash),
            ));
        }
        Ok(parameters)
    }
}
