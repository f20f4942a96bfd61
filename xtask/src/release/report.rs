//! What a release did, per stack: the result deploy and rollback print (or give as `--json`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::stack::Outcome;
use super::traffic::Shift;
use crate::aws::cloudformation::Resource;
use crate::progress::table;

#[derive(Debug, Serialize)]
pub struct StackReport {
    pub stack: String,
    pub status: String,
    pub outcome: Outcome,
    pub change_set_id: Option<String>,
    pub template_url: String,
    pub artifact_keys: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub resources: Vec<Resource>,
    pub seconds: f64,
    /// What the release's probes found, when they ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    /// How CodeDeploy moved traffic to the new version, when it did (in AWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Shift>,
}

/// The result of a release's probes, and what was done about a failure.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Probes {
    Passed,
    /// A probe failed and the release before it was deployed again: it runs `restored` now.
    RolledBack {
        failed: String,
        restored: BTreeMap<String, String>,
    },
    /// A probe failed and the release stays: a first deploy, or `--no-rollback`.
    Failed {
        failed: String,
    },
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub region: String,
    pub bucket: String,
    /// Set with `--local`: where the emulator listens.
    pub endpoint: Option<String>,
    pub uploaded: usize,
    pub bytes_sent: u64,
    pub stacks: Vec<StackReport>,
}

impl Report {
    /// The report as people read it.
    pub fn text(&self) -> String {
        let mut out = format!(
            "published to s3://{} in {}: {} new objects, {} bytes\n",
            self.bucket, self.region, self.uploaded, self.bytes_sent
        );
        for stack in &self.stacks {
            let verb = match stack.outcome {
                Outcome::Created => "created",
                Outcome::Updated => "updated",
                Outcome::Unchanged => "unchanged",
                Outcome::Review => "change set ready for review",
            };
            out.push_str(&format!(
                "{}: {verb}, {} ({:.1}s)\n",
                stack.stack, stack.status, stack.seconds
            ));
            if let Some(change_set) = &stack.change_set_id {
                out.push_str(&format!("  change set  {change_set}\n"));
            }
            for (parameter, key) in &stack.artifact_keys {
                out.push_str(&format!("  {parameter}  {key}\n"));
            }
            match &stack.probes {
                Some(Probes::Passed) => out.push_str("  probes      passed\n"),
                Some(Probes::RolledBack { failed, restored }) => {
                    out.push_str(&format!("  probes      FAILED: {failed}\n"));
                    for (parameter, key) in restored {
                        out.push_str(&format!("  rolled back to  {parameter}  {key}\n"));
                    }
                }
                Some(Probes::Failed { failed }) => {
                    out.push_str(&format!("  probes      FAILED: {failed}\n"));
                }
                None => {}
            }
            if let Some(shift) = &stack.traffic {
                out.push_str(&format!("  traffic     {}\n", shift.sentence()));
            }
            for (output, value) in &stack.outputs {
                out.push_str(&format!("  output {output}  {value}\n"));
            }
            let rows: Vec<[String; 4]> = stack
                .resources
                .iter()
                .map(|r| {
                    [
                        String::new(),
                        r.logical_id.clone(),
                        r.kind.clone(),
                        r.physical_id.clone(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                out.push_str(&table(
                    "  resources:",
                    ["", "LOGICAL ID", "TYPE", "PHYSICAL ID"],
                    &rows,
                ));
            }
        }
        out
    }
}
