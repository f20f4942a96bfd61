//! Flags that several commands share, declared once: which services and environment, where the
//! AWS requests go, and how a change set is run. Only the commands use these; everything below
//! them takes plain values.

use std::time::Duration;

use anyhow::bail;

use crate::environments::Environment;
use crate::environments::Profile;
use crate::local::{self, Access, Session};
use crate::names::parse_key_value;
use crate::progress::{Progress, print_result};
use crate::release::deployer::{self, Deployer};
use crate::release::lease::Lease;
use crate::release::report::{Report, StackReport};
use crate::release::rollout::{self, Prober};
use crate::release::traffic::Traffic;
use crate::release::upload::{self, Packaging};
use crate::workspace::{Service, Workspace};

/// `SERVICE... ENV`, or `--all ENV`.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// The services, then the environment (dev, qa or production).
    #[arg(value_name = "SERVICE... ENV", required = true)]
    pub names: Vec<String>,
    /// Every service of the workspace; then only the environment is given.
    #[arg(long)]
    pub all: bool,
}

impl Selection {
    /// The known services named (each once, in the order given) and the environment.
    pub fn resolve<'w>(
        &self,
        workspace: &'w Workspace,
    ) -> anyhow::Result<(Vec<&'w Service>, Environment)> {
        let Some((environment, services)) = self.names.split_last() else {
            bail!(
                "name the services and the environment, like `hardware dev`, or pass --all with the environment"
            );
        };
        let environment: Environment = environment.parse()?;
        let services: Vec<&Service> = match (self.all, services.is_empty()) {
            (true, true) => workspace.services.iter().collect(),
            (true, false) => {
                bail!("--all packages every service: give only the environment, like `--all dev`")
            }
            (false, true) => {
                let example = workspace
                    .services
                    .first()
                    .map_or("hardware", |s| s.name.as_str());
                bail!(
                    "name at least one service before the environment, like `{example} {environment}` \
                     (known services are {}), or pass --all",
                    workspace.known_services()
                )
            }
            (false, false) => {
                let mut named: Vec<&Service> = Vec::new();
                for name in services {
                    let service = workspace.service(name)?;
                    if !named.contains(&service) {
                        named.push(service);
                    }
                }
                named
            }
        };
        if services.is_empty() {
            bail!("this workspace has no services: no crate declares [package.metadata.lambda]");
        }
        Ok((services, environment))
    }
}

/// `SERVICE ENV`: one service's stack in one environment.
#[derive(Debug, Clone, clap::Args)]
pub struct Stack {
    /// The service.
    pub service: String,
    /// The environment, as [workspace.metadata.environments] in Cargo.toml declares it (dev, qa,
    /// production, pr-42, ...).
    pub environment: crate::environments::Name,
}

impl Stack {
    /// The known service named, and the environment.
    pub fn resolve<'w>(
        &self,
        workspace: &'w Workspace,
    ) -> anyhow::Result<(&'w Service, Environment)> {
        Ok((
            workspace.service(&self.service)?,
            self.environment.resolve()?,
        ))
    }
}

/// How a `--timeout` is read: whole seconds, from one to a day (a longer wait is a mistake, and
/// one past what a clock can add would panic).
pub fn timeout_seconds() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(1..=86_400)
}

/// Where a command's AWS requests go.
#[derive(Debug, Clone, clap::Args)]
pub struct Account {
    /// The AWS region (default: the standard AWS configuration, else us-west-2).
    #[arg(long)]
    pub region: Option<String>,
    /// The artifact bucket (default: biometrix-infrastructure-<region>).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Use the local AWS emulator (started if needed; publish and deploy bootstrap its bucket): no
    /// AWS account.
    #[arg(long)]
    pub local: bool,
    /// With --local: act with nothing but this environment's deployer policy
    /// (cloudformation/pipeline.yaml), IAM enforced on the emulator, as the release pipeline does in
    /// AWS; an action the policy lacks fails with AccessDenied.
    #[arg(long, requires = "local", value_name = "ENV")]
    pub as_deployer_of: Option<crate::environments::Name>,
}

impl Account {
    /// The connection the flags name, for a command that publishes or deploys; with `--local`,
    /// the emulator started if needed and its artifact bucket created the first time.
    /// `home` is the environment the command acts on: its account and profile, when its entry
    /// names them, are where the connection goes.
    pub fn connect(
        &self,
        workspace: &Workspace,
        home: Option<Environment>,
        progress: Progress,
    ) -> anyhow::Result<Session> {
        self.connect_for(Access::Changes, workspace, home, progress)
    }

    /// The connection the flags name, for a command that creates nothing.
    /// These flags as the user gave them, for advice that must aim where this command aimed.
    pub fn flags(&self) -> String {
        let mut flags = String::new();
        if let Some(region) = &self.region {
            flags.push_str(&format!(" --region {region}"));
        }
        if let Some(bucket) = &self.bucket {
            flags.push_str(&format!(" --bucket {bucket}"));
        }
        if self.local {
            flags.push_str(" --local");
        }
        if let Some(environment) = &self.as_deployer_of {
            flags.push_str(&format!(" --as-deployer-of {environment}"));
        }
        flags
    }

    pub fn read(
        &self,
        workspace: &Workspace,
        home: Option<Environment>,
        progress: Progress,
    ) -> anyhow::Result<Session> {
        self.connect_for(Access::Reads, workspace, home, progress)
    }

    fn connect_for(
        &self,
        access: Access,
        workspace: &Workspace,
        home: Option<Environment>,
        progress: Progress,
    ) -> anyhow::Result<Session> {
        local::connect(
            self.region.as_deref(),
            self.bucket.as_deref(),
            self.local,
            self.as_deployer_of
                .as_ref()
                .map(crate::environments::Name::resolve)
                .transpose()?,
            home,
            access,
            workspace,
            progress,
        )
    }
}

/// How a change set is run: the flags deploy and rollback share.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangeSet {
    /// Create and show the change set, but leave it for review instead of executing it.
    #[arg(long)]
    pub no_execute: bool,
    /// Fail at once, instead of waiting, when another deploy is changing the stack.
    #[arg(long)]
    pub no_wait: bool,
    /// The longest to wait for other deploys and for CloudFormation, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = crate::cli::timeout_seconds())]
    pub timeout: u64,
}

impl ChangeSet {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// The deployer's options, with the parameters and the recreate choice of the command.
    /// The deployer's options; `account`'s flags aim its advice where this command aimed.
    pub fn options(
        &self,
        account: &Account,
        parameters: Vec<(String, String)>,
        recreate: bool,
    ) -> deployer::Options {
        deployer::Options {
            flags: account.flags(),
            parameters,
            defaults: Vec::new(),
            no_execute: self.no_execute,
            no_wait: self.no_wait,
            recreate,
            timeout: self.timeout(),
            traffic: None,
        }
    }
}

/// How a release goes out: the flags deploy and promote share.
#[derive(Debug, Clone, clap::Args)]
pub struct Rollout {
    /// A stack parameter that deploy does not set itself, like DomainName=example.com; others keep
    /// their previous values (repeatable).
    #[arg(long = "parameter", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub parameters: Vec<(String, String)>,
    /// Leave a release that fails its probes in place, instead of rolling it back.
    #[arg(long)]
    pub no_rollback: bool,
    /// How CodeDeploy moves traffic to the new version in AWS: all-at-once, linear or canary
    /// (default: the environment's, see below).
    #[arg(long, value_name = "POLICY")]
    pub traffic: Option<Traffic>,
}

/// Where a deploy or a promotion brings `services`: the connection, and what this machine gives
/// them when it is the emulator.
pub struct Destination<'a> {
    pub session: &'a Session,
    /// How the user aimed the command, for advice.
    pub account: &'a Account,
    pub workspace: &'a Workspace,
    pub services: &'a [&'a Service],
    /// Whether a local PostgreSQL may be installed for the emulator's database secret.
    pub install_tools: bool,
    pub progress: Progress,
}

impl Rollout {
    /// The deployer's options: `change_set`'s, with these parameters and this traffic policy, and
    /// on the emulator the stack parameters this machine gives local stacks (its secrets).
    pub fn options(
        &self,
        change_set: &ChangeSet,
        recreate: bool,
        to: &Destination<'_>,
    ) -> anyhow::Result<deployer::Options> {
        let mut options = deployer::Options {
            traffic: self.traffic,
            ..change_set.options(to.account, self.parameters.clone(), recreate)
        };
        if to.session.emulator.is_some() {
            options.defaults = local::secrets::stack_parameters(
                to.session.harness(),
                to.workspace,
                to.services,
                &options.parameters,
                to.install_tools,
                to.progress,
            )?;
        }
        Ok(options)
    }
}

/// `--json`.
/// What a command that brings stacks to releases did: each stack's report, what it uploaded, and
/// the failure to exit non-zero with.
#[derive(Default)]
pub struct Released {
    pub stacks: Vec<StackReport>,
    pub failure: Option<String>,
    pub uploaded: usize,
    pub bytes_sent: u64,
}

impl Destination<'_> {
    /// What deploy, promote and rollback share around their releases: the bucket checked, gc kept
    /// away from what they find there (a lease, held until the stacks run it), the deployer and
    /// the rollout with the probes aimed where the session is (the API's URLs in AWS, a local
    /// gateway on the emulator), and the report printed. `work` brings the stacks to releases.
    pub fn roll_out(
        &self,
        environment: Environment,
        options: deployer::Options,
        no_rollback: bool,
        output: Output,
        work: impl FnOnce(&rollout::Rollout<'_>, &upload::Target) -> anyhow::Result<Released>,
    ) -> anyhow::Result<()> {
        let aws = &self.session.aws;
        // Checked before anything else, packaging included, which can take minutes.
        aws.runtime
            .block_on(crate::aws::check_home(&aws.sdk, &aws.region, environment))?;
        let target =
            aws.runtime
                .block_on(upload::Target::check(&aws.sdk, &aws.region, &aws.bucket))?;
        let lease = Lease::take(aws, environment, options.timeout, self.progress)?;
        let deployer = Deployer::new(aws, self.workspace, environment, options, self.progress);
        let endpoint = self.session.emulator.as_ref().map(|e| e.endpoint.clone());
        let gateway;
        let urls;
        let prober: &dyn Prober = match &endpoint {
            Some(endpoint) => {
                gateway = local::check::Gateway {
                    aws: self.session.harness(),
                    workspace: self.workspace,
                    environment,
                    endpoint,
                    progress: self.progress,
                };
                &gateway
            }
            None => {
                urls = crate::release::probe::Urls {
                    aws,
                    environment,
                    progress: self.progress,
                };
                &urls
            }
        };
        let rollout = rollout::Rollout {
            deployer: &deployer,
            lease: &lease,
            prober,
            no_rollback,
        };
        let released = work(&rollout, &target)?;
        let report = Report {
            region: aws.region.clone(),
            bucket: aws.bucket.clone(),
            endpoint,
            uploaded: released.uploaded,
            bytes_sent: released.bytes_sent,
            stacks: released.stacks,
        };
        print_result(&report, output.json, |report| {
            report.text() + &self.session.note()
        })?;
        match released.failure {
            None => Ok(()),
            Some(failure) => bail!("{failure}"),
        }
    }
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Output {
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Where deploy and publish get their zips: built (`--install-tools` installs what the build
/// needs), or `--prebuilt`, what `package` left.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Zips {
    #[command(flatten)]
    pub install: Install,
    /// Use the zips `package` left instead of building: refused unless they were built from HEAD,
    /// committed, and each still hashes to its key. Nothing is compiled.
    #[arg(long, conflicts_with_all = ["tools", "profile"])]
    pub prebuilt: bool,
    #[command(flatten)]
    pub profile: BuildProfile,
}

impl Zips {
    pub fn packaging(&self, environment: Environment) -> Packaging {
        match self.prebuilt {
            true => Packaging::Prebuilt,
            false => Packaging::Build {
                install_tools: self.install.tools,
                profile: self.profile.or_default(environment),
            },
        }
    }
}

/// `--profile`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BuildProfile {
    /// The cargo profile to build with: `fast` (dev's default: quick to rebuild, larger) or
    /// `release` (qa's and production's: fat LTO, smallest).
    #[arg(long, value_name = "PROFILE", value_parser = str::parse::<Profile>)]
    pub profile: Option<Profile>,
}

impl BuildProfile {
    /// The profile asked for, or `environment`'s own.
    pub fn or_default(&self, environment: Environment) -> Profile {
        self.profile.unwrap_or(environment.profile())
    }
}

/// `--install-tools`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Install {
    /// Install missing build tools: cargo-zigbuild (with zig) into .venv, and Rust targets with rustup.
    #[arg(long = "install-tools")]
    pub tools: bool,
}
