//! `cargo xtask gc [--keep N] [--older-than 30d] [--delete]`: list (or delete) what the artifact
//! bucket holds under `lambdas/` and `cloudformation/` that no stack runs and no recent release
//! needs. `release::gc` decides; `release::lease` keeps it from deleting what a publish relies on.

use anyhow::bail;

use crate::cli::{Account, Output};
use crate::names::human_size;
use crate::progress::{Progress, print_result};
use crate::release::gc::{self, Action, Report};
use crate::workspace::Workspace;

/// List, or delete, the artifacts and templates nothing runs or may roll back to.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask gc                             # list what would go, and why the rest stays\n  \
    cargo xtask gc --delete                    # delete it\n  \
    cargo xtask gc --keep 20 --older-than 90d --delete --json\n  \
    cargo xtask gc --local --older-than 0s     # on the local AWS emulator\n\n\
    Kept: every object a stack in the region runs now (any environment), every object one of the\n\
    last --keep recorded releases of any stack needs (what rollback may go back to), and every object\n\
    younger than --older-than (what a publish uploaded for a deploy still to come). A stack that runs\n\
    an object already missing is reported, nothing of its service is deleted, and gc exits non-zero.\n\n\
    --delete holds locks/gc.json and waits for every publish, deploy, rollback and promote under way\n\
    to finish (they hold leases under locks/artifacts/); those started meanwhile wait for gc. It deletes\n\
    exact versions, so an object written after the scan is never deleted.")]
pub struct Gc {
    /// How many recorded releases of each stack keep their objects.
    #[arg(long, value_name = "N", default_value_t = 10)]
    keep: usize,
    /// Keep whatever is younger than this: 30s, 15m, 2h, 30d.
    #[arg(long, value_name = "AGE", default_value = "30d", value_parser = age)]
    older_than: std::time::Duration,
    /// Delete what is not kept (without it, gc only lists).
    #[arg(long)]
    delete: bool,
    /// Fail at once, instead of waiting, when another gc holds the bucket.
    #[arg(long)]
    no_wait: bool,
    /// The longest to wait for another gc and for the publishes under way, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = crate::cli::timeout_seconds())]
    timeout: u64,
    #[command(flatten)]
    account: Account,
    #[command(flatten)]
    output: Output,
}

fn age(text: &str) -> Result<std::time::Duration, String> {
    crate::names::duration(text).ok_or_else(|| {
        format!("{text:?} is not an age: give a count and a unit, like 30d, 12h or 0s")
    })
}

impl Gc {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let session = self.account.read(workspace, None, progress)?;
        let aws = &session.aws;
        let options = gc::Options {
            keep: self.keep,
            older_than: self.older_than,
            delete: self.delete,
            no_wait: self.no_wait,
            timeout: std::time::Duration::from_secs(self.timeout),
        };
        session.require_bucket()?;
        let report = aws.runtime.block_on(gc::run(aws, &options, progress))?;
        print_result(&report, self.output.json, text)?;
        if let Some(gone) = report.missing.first() {
            let service = gone.key.split('/').nth(1).unwrap_or_default();
            bail!(
                "{} runs s3://{}/{}, which is missing from the bucket: nothing of {service} was \
                 deleted. Deploy that stack again (deploy uploads what is missing), then run gc again",
                gone.stack,
                report.bucket,
                gone.key
            );
        }
        if report.failed.objects > 0 {
            bail!(
                "S3 did not delete {} objects (listed above with its reasons); run gc again",
                report.failed.objects
            );
        }
        Ok(())
    }
}

/// One line an object, then the counts.
fn text(report: &Report) -> String {
    let mut out = String::new();
    for object in &report.objects {
        let action = match object.action {
            Action::Keep => "keep   ",
            Action::Delete => "delete ",
            Action::Deleted => "deleted",
            Action::Failed => "FAILED ",
        };
        out.push_str(&format!(
            "{action} s3://{}/{} ({}): {}\n",
            report.bucket,
            object.key,
            human_size(object.size),
            object.reason
        ));
    }
    out.push_str(&format!(
        "kept {} objects ({})",
        report.kept.objects,
        human_size(report.kept.bytes)
    ));
    if report.deleting {
        out.push_str(&format!(
            "; deleted {} ({})",
            report.deleted.objects,
            human_size(report.deleted.bytes)
        ));
    } else if report.not_kept.objects > 0 {
        out.push_str(&format!(
            "; {} to delete ({}): run again with --delete to delete them",
            report.not_kept.objects,
            human_size(report.not_kept.bytes)
        ));
    } else {
        out.push_str("; nothing to delete");
    }
    out.push('\n');
    out
}
