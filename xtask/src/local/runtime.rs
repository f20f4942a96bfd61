//! A deployed function made runnable on this machine, as `up` serves it and `deploy --local`
//! checks it: its environment completed where the emulator could not resolve it ([`Local`]), its
//! zip fetched and run natively or under qemu with Lambda's environment ([`launch`]), and the
//! stage its gateway presents.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

use crate::aws::Connection;
use crate::local::deployed::{self, Deployed, Fill, is_unresolved};
use crate::local::emulator::CREDENTIALS;
use crate::local::gateway::terminal::{Echo, Kind};
use crate::local::gateway::{self, Launch};
use crate::local::postgres::Postgres;
use crate::local::provision::{self, Needs, Source};
use crate::local::secrets;
use crate::progress::Progress;
use crate::release::stack::Template;
use crate::workspace::{Service, Workspace};
use gate::event::Stage;

/// What this machine provides for a function's environment: the user pools the emulator accepted
/// without creating, the local PostgreSQL whose URL the database secret holds, the secrets a
/// stack deployed without them lacks, and the values of variables built from stack parameters:
/// another served API's URL, another service's token issuer, the crate's
/// `[package.metadata.lambda.local.env]`. What is filled in is said.
pub struct Local {
    needs: Needs,
    fill: Fill,
}

/// What every served service's environment may draw on here.
pub struct Here<'a> {
    pub workspace: &'a Workspace,
    /// The local API Gateway's URL (`/v1`) of each service this command serves, by name.
    pub urls: BTreeMap<String, String>,
    /// The emulator's endpoint.
    pub endpoint: String,
    /// `--install-tools`.
    pub install: bool,
    pub progress: Progress,
}

impl Local {
    pub async fn prepare(
        aws: &Connection,
        here: &Here<'_>,
        service: &Service,
        deployed: &Deployed,
    ) -> anyhow::Result<Local> {
        let Here {
            workspace,
            urls,
            endpoint,
            install,
            progress,
        } = here;
        // What the stack runs declares the environment, not the workspace, which may have moved on
        // (a rollback restores an older template).
        let file = crate::workspace::service_template(&service.name);
        let template = Template::parse(&file, deployed.template.clone())?;
        let needs =
            Needs::of(&template).with_context(|| format!("the template {file} deployed"))?;
        let unresolved: Vec<&Source> = needs
            .env
            .iter()
            .filter(|(name, _)| is_unresolved(deployed.environment.get(*name).map(String::as_str)))
            .map(|(_, source)| source)
            .collect();
        let scope = deployed.stage.to_string();
        let mut fill = Fill::default();
        if unresolved
            .iter()
            .any(|s| matches!(s, Source::Resource(_) | Source::Unset))
        {
            fill.pools =
                provision::provision_pools(&aws.sdk, &service.name, &scope, &needs).await?;
        }
        // The emulator's database secret holds the local server's URL as it is now (a restarted
        // server listens on another port), whether deploy passed its ARN or it is filled in here.
        let passed = needs
            .env
            .iter()
            .filter(|(_, source)| **source == Source::Database)
            .filter_map(|(name, _)| deployed.environment.get(name))
            .any(|arn| secrets::is_database_secret(arn));
        if passed || unresolved.contains(&&Source::Database) {
            let url = Postgres::ensure_installed(workspace, *install, *progress)?.url();
            fill.database = Some(secrets::database_secret(&aws.sdk, &url).await?);
        }
        if unresolved.contains(&&Source::ServiceSecret) {
            fill.service_secret = Some(secrets::service_token_secret(&aws.sdk, workspace).await?);
        }
        fill.values =
            provision::local_values(&aws.sdk, workspace, service, &scope, endpoint, urls).await?;
        Ok(Local { needs, fill })
    }

    /// `environment` with what the emulator left unresolved filled in; the names filled.
    fn complete(&self, environment: &mut BTreeMap<String, String>, endpoint: &str) -> Vec<String> {
        deployed::complete(&self.needs, environment, &self.fill, endpoint)
    }

    /// The variables the template builds from stack parameters that nothing here could fill.
    fn unset(&self, environment: &BTreeMap<String, String>) -> Vec<String> {
        self.needs
            .env
            .iter()
            .filter(|(name, source)| {
                **source == Source::Unset
                    && is_unresolved(environment.get(*name).map(String::as_str))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// How to start the function `deployed` describes: its zip fetched and unpacked, run natively or
/// under qemu, with Lambda's environment, the emulator's endpoint, and its own variables.
pub async fn launch(
    aws: &Connection,
    deployed: &Deployed,
    local: &Local,
    scratch: &std::path::Path,
    endpoint: &str,
    install: bool,
) -> anyhow::Result<Launch> {
    let (bootstrap, architecture) = deployed.fetch(aws, scratch).await?;
    let mut runner = gateway::runner(&bootstrap, architecture, install)?
        .function_name(&deployed.name)
        .memory_mb(deployed.memory_mb)
        .timeout(Duration::from_secs(deployed.timeout_s.into()))
        .env("AWS_REGION", &aws.region)
        .env("AWS_DEFAULT_REGION", &aws.region)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", CREDENTIALS)
        .env("AWS_SECRET_ACCESS_KEY", CREDENTIALS);
    let mut environment = deployed.environment.clone();
    let filled = local.complete(&mut environment, endpoint);
    if !filled.is_empty() {
        let values: Vec<String> = filled
            .iter()
            .map(|name| {
                format!(
                    "{name}={}",
                    environment.get(name).map_or("", String::as_str)
                )
            })
            .collect();
        Echo::stderr().line(
            &deployed.service,
            Kind::Lambda,
            &format!(
                "filled in locally, since the emulator could not resolve them: {}",
                values.join(" ")
            ),
        );
    }
    let unset = local.unset(&environment);
    if !unset.is_empty() {
        Echo::stderr().line(
            &deployed.service,
            Kind::Problem,
            &format!(
                "not set (built from stack parameters; deploy with --parameter, or give them in \
                 [package.metadata.lambda.local.env]): {}",
                unset.join(", ")
            ),
        );
    }
    for (name, value) in &environment {
        runner = runner.env(name, value);
    }
    let hash = deployed.sha256()?;
    Ok(Launch {
        function: deployed.name.clone(),
        bootstrap: runner,
        timeout: Duration::from_secs(deployed.timeout_s.into()),
        memory_mb: deployed.memory_mb,
        version: format!("{architecture} {}", &hash[..12]),
    })
}

/// The content types whose bodies API Gateway passes base64-encoded, as `apigateway.yaml` declares.
pub fn binary_media_types(workspace: &Workspace) -> anyhow::Result<Vec<String>> {
    let template = Template::parse("apigateway.yaml", workspace.template("apigateway.yaml")?)?;
    let apis = template.resources("AWS::ApiGateway::RestApi");
    let types = apis
        .first()
        .and_then(|(_, api)| api["Properties"]["BinaryMediaTypes"].as_vec())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(types)
}

/// The stage a local gateway in front of `deployed` presents in its events.
pub fn stage(deployed: &Deployed, binary_media_types: Vec<String>) -> Stage {
    Stage {
        name: "v1".to_owned(),
        api_id: deployed
            .api_id
            .clone()
            .unwrap_or_else(|| "local".to_owned()),
        account_id: "123456789012".to_owned(),
        binary_media_types,
    }
}
