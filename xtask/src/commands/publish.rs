//! `cargo xtask publish <service>... <env>`: upload each function zip and the templates its stack
//! needs to the artifact bucket, content-addressed, skipping what is already there.

use crate::cli::{Account, Output, Selection, Zips};
use crate::progress::{Progress, print_result};
use crate::release::lease::Lease;
use crate::release::upload::{self, Outcome, Report, Target};
use crate::workspace::Workspace;

/// How long a publish's lease lasts (plus a margin): longer than any build.
const LEASE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Upload packaged services and their templates to the artifact bucket.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  cargo xtask publish hardware dev\n  \
                        cargo xtask publish --all qa --region eu-west-1 --json")]
pub struct Publish {
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    account: Account,
    /// Package, then print what would be uploaded; nothing is sent.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    zips: Zips,
}

impl Publish {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (services, environment) = self.selection.resolve(workspace)?;
        let session = self
            .account
            .connect(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        let report = if self.dry_run {
            let packaging = self.zips.packaging(environment);
            let plan = upload::zips(workspace, &services, environment, packaging, progress)?;
            Report {
                region: aws.region.clone(),
                bucket: aws.bucket.clone(),
                objects: upload::objects(workspace, &plan)?,
                head_requests: 0,
                put_requests: 0,
                bytes_sent: 0,
            }
        } else {
            // Before packaging, which can take minutes: a missing bucket should not wait for a build.
            let target = aws
                .runtime
                .block_on(Target::check(&aws.sdk, &aws.region, &aws.bucket))?;
            // Until the report is printed, gc leaves alone what this finds in the bucket.
            let _lease = Lease::take(aws, environment, LEASE, progress)?;
            let (_, report) = upload::publish(
                workspace,
                &services,
                environment,
                &target,
                &aws.runtime,
                self.zips.packaging(environment),
                progress,
            )?;
            report
        };
        print_result(&report, self.output.json, text)
    }
}

/// The publish summary: one line an object, then the requests made.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for object in &report.objects {
        let verb = match object.outcome {
            Outcome::Uploaded => "uploaded ",
            Outcome::Unchanged => "unchanged",
            Outcome::Planned => "would put",
        };
        out.push_str(&format!(
            "{verb} s3://{}/{} ({} bytes)\n",
            report.bucket, object.key, object.size
        ));
    }
    out.push_str(&format!(
        "{} requests ({} HEAD, {} PUT), {} bytes sent\n",
        report.head_requests + report.put_requests,
        report.head_requests,
        report.put_requests,
        report.bytes_sent
    ));
    out
}
