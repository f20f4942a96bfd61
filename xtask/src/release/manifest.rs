//! The plan `package` computes before any work, and the manifest it leaves next to the zips: the
//! same type, filled in. `publish` and `deploy` read the manifest; tests assert on both.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::names::{Architecture, Environment, Profile};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub environment: Environment,
    /// The cargo profile every binary is built with; the S3 metadata and `status` show it.
    pub profile: Profile,
    /// Where the source came from; filled in when the work is done.
    pub source: Option<Source>,
    /// One cargo invocation per target, each building every requested binary for it.
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

/// One function's artifact. The fields after `binary` are known once it is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub service: String,
    pub function: String,
    pub architecture: Architecture,
    pub target: String,
    pub binary: PathBuf,
    pub binary_sha256: Option<String>,
    pub zip: Option<PathBuf>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub key: Option<String>,
    /// The service stack's parameter that carries `key`; deploy sets it.
    pub parameter: String,
}

impl Artifact {
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

impl Plan {
    /// The part of the plan about one service: what its manifest holds.
    pub fn for_service(&self, service: &str) -> Plan {
        Plan {
            functions: self
                .functions
                .iter()
                .filter(|a| a.service == service)
                .cloned()
                .collect(),
            builds: self.builds.clone(),
            ..self.clone()
        }
    }

    /// The services the plan covers, each once, in plan order.
    pub fn services(&self) -> Vec<&str> {
        let mut services: Vec<&str> = Vec::new();
        for artifact in &self.functions {
            if !services.contains(&artifact.service.as_str()) {
                services.push(&artifact.service);
            }
        }
        services
    }

    pub fn read(path: &Path) -> anyhow::Result<Plan> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a package manifest", path.display()))
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
