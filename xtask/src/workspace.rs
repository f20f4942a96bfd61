//! The services of the workspace and their Lambda functions, from each crate's own
//! `[package.metadata.lambda]`: there is no second list to keep in sync. A service also declares
//! there the requests that show it works (`probes`) and what a local run of it needs beyond its
//! template (`local`), so the release tool names no service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cargo_metadata::MetadataCommand;
use serde::{Deserialize, Serialize};

pub use gate::probe::Probe;

use crate::environments::{Environment, Stores};
use crate::names::Architecture;

/// The workspace as the release tool sees it.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    pub services: Vec<Service>,
    /// The pre-traffic gate (`[workspace.metadata.lambda.gate]`), released with every service.
    pub gate: Option<Function>,
}

/// A crate that ships Lambda functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub manifest_path: PathBuf,
    pub functions: Vec<Function>,
    /// The requests that show the service works, in the order they are worth trying.
    pub probes: Vec<Probe>,
    pub local: Local,
}

/// What a local run of the service needs that its template does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Local {
    /// Values for the variables the template builds from stack parameters, like another API's URL.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A seed file (as `serve --seed` reads it), relative to the crate: what the store probes read.
    pub seed: Option<PathBuf>,
    /// Token issuers that are another service's user pool, by the variables' prefix:
    /// `ACCESSORY = "hardware/AccessoryUserPool"` gives `ACCESSORY_TOKEN_ISSUER` and
    /// `ACCESSORY_JWKS_URL` from that pool, as `up` creates it in the emulator.
    #[serde(default)]
    pub issuers: BTreeMap<String, String>,
}

/// One Lambda function, as declared in `[[package.metadata.lambda.functions]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// The logical name: the function is `<service>-<env>-<name>`, its artifacts `lambdas/<service>/<name>/`.
    pub name: String,
    /// The crate's binary that becomes `bootstrap`.
    pub bin: String,
    #[serde(default)]
    pub architecture: Architecture,
    pub memory: Option<u32>,
    pub timeout: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LambdaMetadata {
    functions: Vec<Function>,
    #[serde(default)]
    probes: Vec<Probe>,
    #[serde(default)]
    local: Local,
}

/// The nested template every service stack uses, in `cloudformation/`.
pub const APIGATEWAY_TEMPLATE: &str = "apigateway.yaml";

/// `<service>-environment.yaml`: the file a service's stack is made from, in `cloudformation/`.
pub fn service_template(service: &str) -> String {
    format!("{service}-environment.yaml")
}

impl Workspace {
    /// Reads the workspace from a file `cargo metadata --no-deps --format-version 1` wrote, without
    /// running cargo: for the release workflow's deploy job, where nothing may compile.
    pub fn from_file(path: &Path) -> anyhow::Result<Workspace> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the workspace's metadata from {}", path.display()))?;
        let metadata = MetadataCommand::parse(text).with_context(|| {
            format!(
                "{} is not what `cargo metadata --no-deps --format-version 1` writes",
                path.display()
            )
        })?;
        Workspace::from_metadata(metadata)
    }

    /// The workspace `metadata` (`cargo metadata --no-deps`) describes. Running cargo is this
    /// machine's business (`local::metadata`); this only reads what it said.
    pub fn from_metadata(metadata: cargo_metadata::Metadata) -> anyhow::Result<Workspace> {
        let is_bin = |bin: &str| {
            metadata.workspace_packages().iter().any(|package| {
                package
                    .targets
                    .iter()
                    .any(|target| target.is_bin() && target.name == bin)
            })
        };
        // The environments the workspace declares, or the built-in three: every environment
        // named from here on is parsed against them.
        match metadata.workspace_metadata.get("environments") {
            Some(table) => crate::environments::Environments::from_metadata(table)?.install(),
            None => crate::environments::Environments::builtin().install(),
        }
        let gate: Option<Function> = match metadata.workspace_metadata.get("lambda") {
            Some(lambda) => serde_json::from_value(lambda["gate"].clone())
                .context("the workspace's [workspace.metadata.lambda.gate] is malformed")?,
            None => None,
        };
        if let Some(gate) = &gate
            && !is_bin(&gate.bin)
        {
            bail!(
                "[workspace.metadata.lambda.gate] names bin `{}`, which no crate of the workspace has",
                gate.bin
            );
        }
        let mut services = Vec::new();
        for package in metadata.workspace_packages() {
            let Some(lambda) = package.metadata.get("lambda") else {
                continue;
            };
            let manifest = package.manifest_path.as_std_path();
            let lambda: LambdaMetadata =
                serde_json::from_value(lambda.clone()).with_context(|| {
                    format!(
                        "{}: [package.metadata.lambda] is malformed",
                        manifest.display()
                    )
                })?;
            if lambda.functions.is_empty() {
                bail!(
                    "{}: [package.metadata.lambda] declares no functions",
                    manifest.display()
                );
            }
            for function in &lambda.functions {
                let is_bin = package
                    .targets
                    .iter()
                    .any(|target| target.is_bin() && target.name == function.bin);
                if !is_bin {
                    bail!(
                        "{}: function `{}` names bin `{}`, which this crate does not have",
                        manifest.display(),
                        function.name,
                        function.bin
                    );
                }
            }
            if let Some(problem) = lambda.probes.iter().find_map(Probe::malformed) {
                bail!("{}: {problem}", manifest.display());
            }
            let mut local = lambda.local;
            if let Some(seed) = &mut local.seed {
                *seed = manifest.with_file_name(&*seed);
            }
            services.push(Service {
                name: package.name.to_string(),
                manifest_path: manifest.to_owned(),
                functions: lambda.functions,
                probes: lambda.probes,
                local,
            });
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Workspace {
            root: metadata.workspace_root.into_std_path_buf(),
            target_dir: metadata.target_directory.into_std_path_buf(),
            services,
            gate,
        })
    }

    /// Every function a release of `service` ships: its own, then the pre-traffic gate.
    pub fn released_functions<'a>(&'a self, service: &'a Service) -> Vec<&'a Function> {
        service.functions.iter().chain(&self.gate).collect()
    }

    /// The service called `name`; an unknown name is refused with the list of known ones.
    pub fn service(&self, name: &str) -> anyhow::Result<&Service> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown service `{name}`: known services are {}",
                    self.known_services()
                )
            })
    }

    pub fn known_services(&self) -> String {
        let names: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
        if names.is_empty() {
            "(none)".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// The text of `cloudformation/<file>`.
    pub fn template(&self, file: &str) -> anyhow::Result<String> {
        let path = self.root.join("cloudformation").join(file);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// A template as `environment` deploys it: the shared API Gateway template as it is; a
    /// service's own with its stores' `RetainExceptOnCreate` made `Delete` where the environment
    /// deletes its stores with its stacks (`stores = "deleted"`), so that it can be destroyed and
    /// made again. The result is what is published and deployed, under its own hash.
    pub fn template_for(&self, file: &str, environment: Environment) -> anyhow::Result<String> {
        let text = self.template(file)?;
        if file == APIGATEWAY_TEMPLATE || environment.stores() == Stores::Retained {
            return Ok(text);
        }
        Ok(text
            .lines()
            .map(|line| match line.trim_start() {
                "DeletionPolicy: RetainExceptOnCreate" => {
                    line.replace("RetainExceptOnCreate", "Delete")
                }
                "UpdateReplacePolicy: Retain" => line.replace("Retain", "Delete"),
                _ => line.to_owned(),
            })
            .map(|line| line + "\n")
            .collect())
    }

    /// Where a service's packaged artifacts and manifest go.
    pub fn lambda_dir(&self, service: &str) -> PathBuf {
        self.target_dir.join("lambda").join(service)
    }
}
