//! The plan `package` computes before any work ([`Plan`], what `--dry-run` prints), and the
//! manifest it leaves next to the zips ([`Manifest`]): two types, so that a packaged artifact has
//! its zip, hash and key as plain fields, never as `Option`s to unwrap. `publish` and `deploy`
//! read the manifest; tests assert on both.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::environments::Environment;
use crate::environments::Profile;
use crate::names::Architecture;

/// What `package` will do, computed before doing any of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub environment: Environment,
    /// The cargo profile every binary is built with; the zips are stamped with it.
    pub profile: Profile,
    /// One cargo invocation per target, each building every requested binary for it.
    pub builds: Vec<Build>,
    pub functions: Vec<Planned>,
}

/// What `package` left: the plan carried out, where the source came from, and every zip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub environment: Environment,
    pub profile: Profile,
    pub source: Source,
    pub builds: Vec<Build>,
    pub functions: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub commit: String,
    pub dirty: bool,
    pub toolchain: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    /// `cargo zigbuild`, linking against Amazon Linux 2023's glibc with zig.
    Zigbuild,
    /// A plain `cargo build`, for a target that is the host's own.
    Cargo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub target: String,
    pub builder: Builder,
    pub bins: Vec<String>,
    /// The command, for people to read and rerun.
    pub command: Vec<String>,
}

/// One function's artifact as planned: which binary becomes its `bootstrap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    pub service: String,
    pub function: String,
    pub architecture: Architecture,
    pub target: String,
    pub binary: PathBuf,
    /// The service stack's parameter that carries the key; deploy sets it.
    pub parameter: String,
}

impl Planned {
    /// The artifact this plan became: its binary's hash, and its zip with the zip's hash and size.
    pub fn packaged(
        &self,
        binary_sha256: String,
        zip: PathBuf,
        sha256: String,
        size: u64,
    ) -> Artifact {
        Artifact {
            service: self.service.clone(),
            function: self.function.clone(),
            architecture: self.architecture,
            target: self.target.clone(),
            binary: self.binary.clone(),
            parameter: self.parameter.clone(),
            key: artifact_key(&self.service, &self.function, &sha256),
            binary_sha256,
            zip,
            sha256,
            size,
        }
    }
}

/// One function's packaged artifact: its zip, named by its SHA-256, and the key it is published under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub service: String,
    pub function: String,
    pub architecture: Architecture,
    pub target: String,
    pub binary: PathBuf,
    /// The service stack's parameter that carries `key`; deploy sets it.
    pub parameter: String,
    pub binary_sha256: String,
    pub zip: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub key: String,
}

impl Planned {
    /// The file name of the binary that becomes `bootstrap`: the crate's bin.
    pub fn binary_name(&self) -> &str {
        self.binary
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
    }
}

/// `lambdas/<service>/<function>/<sha256>.zip`: the key changes exactly when the code does.
pub fn artifact_key(service: &str, function: &str, sha256: &str) -> String {
    format!("lambdas/{service}/{function}/{sha256}.zip")
}

/// `ApigatewayExecuteArtifactKey` → `ApigatewayExecuteArtifactVersion`: the S3 version of the key's
/// object, where the bucket is versioned.
pub fn artifact_version_parameter(artifact_key_parameter: &str) -> String {
    let function = artifact_key_parameter
        .strip_suffix("ArtifactKey")
        .unwrap_or(artifact_key_parameter);
    format!("{function}ArtifactVersion")
}

/// `ApigatewayExecuteArtifactKey` → `ApigatewayExecuteCodeSha256`.
pub fn code_sha256_parameter(artifact_key_parameter: &str) -> String {
    let function = artifact_key_parameter
        .strip_suffix("ArtifactKey")
        .unwrap_or(artifact_key_parameter);
    format!("{function}CodeSha256")
}

/// `apigateway-execute` → `ApigatewayExecuteArtifactKey`: the stack parameter holding a function's key.
pub fn artifact_key_parameter(function: &str) -> String {
    let mut name: String = function
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    name.push_str("ArtifactKey");
    name
}

pub const MANIFEST: &str = "manifest.json";

/// The services `functions` belong to, each once, in order.
fn services<'a>(functions: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut services: Vec<&str> = Vec::new();
    for service in functions {
        if !services.contains(&service) {
            services.push(service);
        }
    }
    services
}

impl Plan {
    /// The services the plan covers, each once, in plan order.
    pub fn services(&self) -> Vec<&str> {
        services(self.functions.iter().map(|a| a.service.as_str()))
    }
}

impl Manifest {
    /// The part of the manifest about one service: what its `manifest.json` holds.
    pub fn for_service(&self, service: &str) -> Manifest {
        Manifest {
            functions: self
                .functions
                .iter()
                .filter(|a| a.service == service)
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// The services the manifest covers, each once, in order.
    pub fn services(&self) -> Vec<&str> {
        services(self.functions.iter().map(|a| a.service.as_str()))
    }

    pub fn read(path: &Path) -> anyhow::Result<Manifest> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a package manifest (or one from before this release of the tool): \
                 package again",
                path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_parameters_follow_the_conventions() {
        assert_eq!(
            artifact_key("hardware", "apigateway-execute", "ab12"),
            "lambdas/hardware/apigateway-execute/ab12.zip"
        );
        assert_eq!(
            artifact_key_parameter("apigateway-execute"),
            "ApigatewayExecuteArtifactKey"
        );
        assert_eq!(
            artifact_key_parameter("sync_worker"),
            "SyncWorkerArtifactKey"
        );
        assert_eq!(artifact_key_parameter("api"), "ApiArtifactKey");
    }
}
