//! What `local/` leaves running for the next command (the emulator, PostgreSQL) is recorded in
//! `target/local/<name>.json`, and read back there.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::workspace::Workspace;

/// `target/local/<name>.json`.
pub fn path(workspace: &Workspace, name: &str) -> PathBuf {
    workspace
        .target_dir
        .join("local")
        .join(format!("{name}.json"))
}

/// What was recorded at `path`; `None` when nothing (readable) is.
pub fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records `value` at `path`, whole or not at all.
pub fn write(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).context("recording local state")?;
    crate::release::artifact::write_atomically(path, &bytes)
}
