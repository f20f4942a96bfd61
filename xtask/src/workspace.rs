//! The services of the workspace and their Lambda functions, from each crate's own
//! `[package.metadata.lambda]`: there is no second list to keep in sync.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cargo_metadata::MetadataCommand;
use serde::{Deserialize, Serialize};

use crate::names::Architecture;

/// The workspace as the release tool sees it.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    pub services: Vec<Service>,
}

/// A crate that ships Lambda functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub manifest_path: PathBuf,
    pub functions: Vec<Function>,
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
}

impl Workspace {
    /// Reads the workspace at `manifest_path` (default: the one `cargo xtask` runs in).
    pub fn load(manifest_path: Option<&Path>) -> anyhow::Result<Workspace> {
        let mut command = MetadataCommand::new();
        command.no_deps();
        if let Some(path) = manifest_path {
            command.manifest_path(path);
        }
        let metadata = command
            .exec()
            .context("reading the workspace with `cargo metadata`")?;
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
            services.push(Service {
                name: package.name.to_string(),
                manifest_path: manifest.to_owned(),
                functions: lambda.functions,
            });
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Workspace {
            root: metadata.workspace_root.into_std_path_buf(),
            target_dir: metadata.target_directory.into_std_path_buf(),
            services,
        })
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

    /// Where a service's packaged artifacts and manifest go.
    pub fn lambda_dir(&self, service: &str) -> PathBuf {
        self.target_dir.join("lambda").join(service)
    }
}
