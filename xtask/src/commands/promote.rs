//! `cargo xtask promote <service>... <from-env> <to-env>`: deploy to `<to-env>` exactly the release
//! `<from-env>` runs, its artifact keys read from the stack's parameters and its templates from its
//! recorded release. Nothing is built or uploaded; the rest is deploy's path (lock, change set,
//! traffic, probes with rollback, history, which records where the release came from).

use anyhow::bail;

use crate::cli::{Account, ChangeSet, Destination, Output, Released, Rollout, Selection};
use crate::environments::Profile;
use crate::environments::{Environment, Stores};
use crate::progress::Progress;
use crate::release::deployer::{Deployer, Release};
use crate::workspace::{Service, Workspace};

/// Deploy the exact release one environment runs to another, without building anything.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask promote hardware qa production        # what qa tested, byte for byte\n  \
    cargo xtask promote --all qa production --json\n  \
    cargo xtask promote users dev qa --local          # on the local AWS emulator\n\n\
    The release is read from <from-env>'s stack and its history in the artifact bucket, so only\n\
    releases made by this tool can be promoted. Every object it needs must still be in the bucket.\n\
    `cargo xtask status <service> <to-env>` then shows it as promoted from <from-env>. Traffic\n\
    moves as a deploy to <to-env> moves it.")]
pub struct Promote {
    /// The services, then the environment to take the release from and the one to deploy it to.
    #[arg(value_name = "SERVICE... FROM-ENV TO-ENV", required = true)]
    names: Vec<String>,
    /// Every service of the workspace; then only the two environments are given.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    account: Account,
    #[command(flatten)]
    rollout: Rollout,
    #[command(flatten)]
    change_set: ChangeSet,
    /// Promote artifacts built with the fast profile (dev's), or whose profile is not known, to an
    /// environment that builds the release profile (qa, production), which is refused otherwise.
    #[arg(long)]
    allow_fast_profile: bool,
    #[command(flatten)]
    output: Output,
}

impl Promote {
    /// The services named, and the environments from and to.
    fn resolve<'w>(
        &self,
        workspace: &'w Workspace,
    ) -> anyhow::Result<(Vec<&'w Service>, Environment, Environment)> {
        let given = if self.all { 2 } else { 3 };
        let Some((to, names)) = self
            .names
            .split_last()
            .filter(|_| self.names.len() >= given)
        else {
            bail!(
                "name the environment to promote from and the one to promote to, like \
                 `hardware qa production` (or `--all qa production`)"
            );
        };
        let selection = Selection {
            names: names.to_vec(),
            all: self.all,
        };
        let (services, from) = selection.resolve(workspace)?;
        let to: Environment = to.parse()?;
        if from == to {
            bail!(
                "{from} is both where the release comes from and where it goes: name two environments"
            );
        }
        // A release's templates are rendered for their environment's stores: one that deletes them
        // with its stacks must never reach one that keeps them, nor the other way round.
        if from.stores() != to.stores() {
            let says = |e: Environment| match e.stores() {
                Stores::Retained => format!("{e} keeps its stores"),
                Stores::Deleted => format!("{e} deletes its stores with its stacks"),
            };
            bail!(
                "{} and {}: their templates differ, so a release of one is not a release of the \
                 other; promote between environments that treat their stores alike, or deploy {to} \
                 from source",
                says(from),
                says(to)
            );
        }
        Ok((services, from, to))
    }

    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (services, from, to) = self.resolve(workspace)?;
        let session = self.account.connect(workspace, Some(to), progress)?;
        let aws = &session.aws;
        let destination = Destination {
            session: &session,
            account: &self.account,
            workspace,
            services: &services,
            install_tools: false,
            progress,
        };
        let options = self
            .rollout
            .options(&self.change_set, false, &destination)?;
        // Environments in different accounts: the release is read where it runs, with that
        // account's credentials, and its bytes carried into this account's bucket.
        let (source_home, target_home) = (from.declared(), to.declared());
        let crosses = source_home.account != target_home.account
            || source_home.aws_profile != target_home.aws_profile;
        let source_session = match crosses {
            true => Some(self.account.read(workspace, Some(from), progress)?),
            false => None,
        };
        let source = source_session
            .as_ref()
            .map(|s| Deployer::new(&s.aws, workspace, from, options.clone(), progress));
        let no_rollback = self.rollout.no_rollback;
        destination.roll_out(to, options, no_rollback, self.output, |rollout, _| {
            let deployer = rollout.deployer;
            // Every release is found and checked before any stack changes.
            let mut releases = Vec::new();
            for service in &services {
                let release = aws.runtime.block_on(async {
                    let release = match &source {
                        Some(source) => {
                            let found = source.promoted(service, from).await?;
                            deployer.carried(source, found).await?
                        }
                        None => deployer.promoted(service, from).await?,
                    };
                    self.check_profile(&release, service, from, to)?;
                    deployer.precheck_with(service, &release.template).await?;
                    anyhow::Ok(release)
                })?;
                releases.push((*service, release));
            }
            let (stacks, failure) = aws.runtime.block_on(rollout.each(releases))?;
            Ok(Released {
                stacks,
                failure,
                ..Released::default()
            })
        })
    }

    /// Refuses, unless `--allow-fast-profile`, a release for an environment that runs release
    /// builds whose zips are not stamped as release builds: fast, or of no known profile.
    fn check_profile(
        &self,
        release: &Release,
        service: &Service,
        from: Environment,
        to: Environment,
    ) -> anyhow::Result<()> {
        if to.profile() != Profile::Release || self.allow_fast_profile {
            return Ok(());
        }
        let built = match release.profile {
            Some(Profile::Release) => return Ok(()),
            Some(Profile::Fast) => "built with the fast profile".to_owned(),
            None => "of no known profile (its zips carry no profile stamp that their keys \
                     cover)"
                .to_owned(),
        };
        let key = release
            .artifact_keys
            .values()
            .next()
            .cloned()
            .unwrap_or_default();
        bail!(
            "{from} runs {key}, {built}, and {to} runs only release builds, so that what reaches \
             production is what qa tested: deploy {to} from source (`cargo xtask deploy {} \
             {to}{}`), or pass --allow-fast-profile; nothing was changed",
            service.name,
            self.account.flags()
        )
    }
}
