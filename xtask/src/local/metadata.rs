//! The workspace as `cargo metadata` describes it on this machine: the one place the release tool
//! asks cargo about the workspace (a process, so it is `local/`'s to run). Without cargo, the
//! release workflow's deploy job reads a saved copy instead (`Workspace::from_file`).

use std::path::Path;

use anyhow::Context as _;
use cargo_metadata::MetadataCommand;

use crate::workspace::Workspace;

/// Reads the workspace at `manifest_path` (default: the one `cargo xtask` runs in).
pub fn workspace(manifest_path: Option<&Path>) -> anyhow::Result<Workspace> {
    let mut command = MetadataCommand::new();
    command.no_deps();
    if let Some(path) = manifest_path {
        command.manifest_path(path);
    }
    let metadata = command
        .exec()
        .context("reading the workspace with `cargo metadata`")?;
    Workspace::from_metadata(metadata)
}
