//! What a release did, per stack: the result deploy and rollback print (or give as `--json`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::stack::Outcome;
use super::traffic::Shift;
use crate::aws::cloudformation::Resource;
use crate::environments::StackName;
use crate::progress::table;

#[derive(Debug, Serialize)]
pub struct StackReport {
    pub stack: StackName,
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
        let mut out = match self.uploaded {
            0 => format!(
                "nothing uploaded to s3://{} in {}\n",
                self.bucket, self.region
            ),
            n => format!(
                "published to s3://{} in {}: {n} new objects, {} bytes\n",
                self.bucket, self.region, self.bytes_sent
            ),
        };
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

/// What `destroy` did to one stack.
#[derive(Debug, Serialize)]
pub struct Destroyed {
    pub stack: StackName,
    pub outcome: DestroyOutcome,
    /// What CloudFormation kept, and how to remove it.
    pub retained: Vec<Retained>,
    /// The stack's deploy history, which is kept.
    pub history: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestroyOutcome {
    Deleted,
    /// There was no stack: destroy is idempotent.
    Absent,
}

/// A resource whose `DeletionPolicy` retains it, which outlives its stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retained {
    pub logical_id: String,
    pub kind: String,
    pub physical_id: String,
    /// The command that removes it, when there is one to give.
    pub remove: String,
}

impl Retained {
    pub fn new(logical_id: &str, kind: &str, physical_id: &str, region: &str) -> Retained {
        let remove = match kind {
            "AWS::DynamoDB::Table" => {
                format!("aws dynamodb delete-table --table-name {physical_id} --region {region}")
            }
            "AWS::S3::Bucket" => format!(
                "aws s3 rb s3://{physical_id} --force --region {region} (a versioned bucket needs \
                 its object versions deleted first)"
            ),
            "AWS::Cognito::UserPool" => format!(
                "aws cognito-idp delete-user-pool --user-pool-id {physical_id} --region {region}"
            ),
            _ => format!("delete {kind} {physical_id} in the console"),
        };
        Retained {
            logical_id: logical_id.to_owned(),
            kind: kind.to_owned(),
            physical_id: physical_id.to_owned(),
            remove,
        }
    }
}

/// What CloudFormation keeps of `stack`, said before it is deleted.
pub fn retained_text(stack: &str, retained: &[Retained]) -> String {
    if retained.is_empty() {
        return format!("deleting {stack} keeps nothing: it has no retained resources\n");
    }
    let mut out = format!(
        "deleting {stack} keeps these (retained by their DeletionPolicy), with their data; to remove one \
         later, run its command:\n"
    );
    for r in retained {
        out.push_str(&format!(
            "  {}  {}  {}\n    {}\n",
            r.logical_id, r.kind, r.physical_id, r.remove
        ));
    }
    let named: Vec<&str> = retained
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "AWS::DynamoDB::Table" | "AWS::S3::Bucket"))
        .map(|r| r.physical_id.as_str())
        .collect();
    if !named.is_empty() {
        out.push_str(&format!(
            "their names are fixed by the template: deploying {stack} again is refused while \
             any of {} exists; remove them first with the commands above, or deploy another \
             environment\n",
            named.join(", ")
        ));
    }
    out
}

impl Destroyed {
    /// The result as people read it.
    pub fn text(&self) -> String {
        match self.outcome {
            DestroyOutcome::Absent => format!(
                "{}: did not exist, nothing to destroy; its history ({}) is kept\n",
                self.stack, self.history
            ),
            DestroyOutcome::Deleted => {
                let mut out = format!(
                    "{}: deleted ({:.1}s); its history ({}) is kept\n",
                    self.stack, self.seconds, self.history
                );
                for r in &self.retained {
                    out.push_str(&format!("  kept  {}  {}\n", r.logical_id, r.physical_id));
                }
                out
            }
        }
    }
}
