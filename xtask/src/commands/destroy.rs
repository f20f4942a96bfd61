//! `cargo xtask destroy <service> <env>`: delete stack `<service>-<env>` through its lock,
//! following its events, after saying what CloudFormation keeps (the stores its `DeletionPolicy`
//! retains) and how to remove each; an environment whose stores go with its stacks has its buckets
//! emptied first. The stack's deploy history stays in the bucket. Idempotent: a stack that does
//! not exist is said, and is a success. `destroy --expired` destroys every stack of a throwaway
//! environment whose time to live has passed.

use std::time::Duration;

use anyhow::bail;

use crate::cli::{Account, Output};
use crate::environments::{Environment, Name};
use crate::progress::{Progress, print_result};
use crate::release::deployer::{Deployer, EXPIRES_TAG, Options};
use crate::workspace::Workspace;

/// Delete a service's stack in one environment; its retained stores and its history stay.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask destroy hardware dev --local       # the emulator's hardware-dev\n  \
    cargo xtask destroy users qa --json\n  \
    cargo xtask destroy alerts production --confirm production\n  \
    cargo xtask destroy hardware pr-42             # a pull request's preview: its stores go too\n  \
    cargo xtask destroy --expired                  # every throwaway stack past its time to live\n\n\
    Destroy is idempotent: a stack that does not exist is said, and exits 0. Before deleting, it lists\n\
    what CloudFormation keeps (the tables, buckets and user pools its DeletionPolicy retains) with the\n\
    command that removes each; an environment declared with stores = \"deleted\" keeps nothing. A stack\n\
    whose deletion fails (DELETE_FAILED) gets each resource that could not be deleted, with its reason,\n\
    and the way out. A protected environment (production) is only destroyed with --confirm <env>.")]
pub struct Destroy {
    /// The service (not with --expired).
    #[arg(required_unless_present = "expired")]
    service: Option<String>,
    /// The environment, as [workspace.metadata.environments] declares it (not with --expired).
    #[arg(required_unless_present = "expired")]
    environment: Option<Name>,
    /// Destroy every stack, of every service, whose environment has a time to live that has
    /// passed (its `biometrix:expires-at` tag).
    #[arg(long, conflicts_with_all = ["service", "environment", "confirm"])]
    expired: bool,
    /// The environment again, to destroy a protected one (`--confirm production`).
    #[arg(long, value_name = "ENV")]
    confirm: Option<String>,
    #[command(flatten)]
    account: Account,
    /// Fail at once, instead of waiting, when a deploy holds the stack or it is changing.
    #[arg(long)]
    no_wait: bool,
    /// The longest to wait for other deploys and for CloudFormation, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = crate::cli::timeout_seconds())]
    timeout: u64,
    #[command(flatten)]
    output: Output,
}

impl Destroy {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        if self.expired {
            return self.expired(workspace, progress);
        }
        let (Some(service), Some(environment)) = (&self.service, &self.environment) else {
            bail!("name the service and the environment, like `hardware pr-42`, or pass --expired");
        };
        let service = workspace.service(service)?;
        let environment = environment.resolve()?;
        if environment.protected() && self.confirm.as_deref() != Some(environment.as_str()) {
            bail!(
                "{environment} is protected ([workspace.metadata.environments] in Cargo.toml): \
                 destroying {}-{environment} deletes the API its callers use; if that is what you \
                 want, add --confirm {environment}",
                service.name
            );
        }
        if let Some(confirm) = &self.confirm
            && confirm != environment.as_str()
        {
            bail!(
                "--confirm {confirm} does not name the environment being destroyed ({environment})"
            );
        }
        let session = self.account.read(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        aws.runtime
            .block_on(crate::aws::check_home(&aws.sdk, &aws.region, environment))?;
        let deployer = Deployer::new(aws, workspace, environment, self.options(), progress);
        let destroyed = aws.runtime.block_on(deployer.destroy(&service.name))?;
        print_result(&destroyed, self.output.json, |d| d.text() + &session.note())
    }

    fn options(&self) -> Options {
        Options {
            parameters: Vec::new(),
            defaults: Vec::new(),
            no_execute: false,
            no_wait: self.no_wait,
            recreate: false,
            timeout: Duration::from_secs(self.timeout),
            traffic: None,
            flags: self.account.flags(),
        }
    }

    /// Destroys every stack whose `biometrix:expires-at` has passed. Only a stack of a service of
    /// this workspace, in an environment the table declares with a time to live, is touched, so
    /// that a tag put on by hand never removes production.
    fn expired(&self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let session = self.account.read(workspace, None, progress)?;
        let aws = &session.aws;
        let now = crate::progress::now_rfc3339();
        let stacks = aws
            .runtime
            .block_on(crate::aws::cloudformation::all(&aws.cloudformation()))?;
        let mut due = Vec::new();
        for (name, nested, current) in stacks {
            let Some(expires) = current.tags.get(EXPIRES_TAG) else {
                continue;
            };
            if nested || expires.as_str() > now.as_str() {
                continue;
            }
            let found = workspace.services.iter().find_map(|service| {
                let environment = name.strip_prefix(&format!("{}-", service.name))?;
                let environment: Environment = environment.parse().ok()?;
                environment
                    .time_to_live()
                    .is_some()
                    .then_some((service, environment))
            });
            match found {
                Some(found) => due.push(found),
                None => progress.note(&format!(
                    "{name} is tagged as expired at {expires}, but it is no stack of a throwaway \
                     environment of this workspace: left alone"
                )),
            }
        }
        if due.is_empty() {
            progress.note(&format!("no stack in {} has expired", aws.region));
        }
        let mut destroyed = Vec::new();
        for (service, environment) in due {
            let deployer = Deployer::new(aws, workspace, environment, self.options(), progress);
            destroyed.push(aws.runtime.block_on(deployer.destroy(&service.name))?);
        }
        print_result(&destroyed, self.output.json, |all| {
            all.iter().map(|d| d.text()).collect::<String>() + &session.note()
        })
    }
}
