//! Where a command's AWS requests go: an account's region and bucket from the standard AWS
//! configuration, or, with `--local`, the emulator, started if needed and its artifact bucket
//! bootstrapped from the real infrastructure template the first time. With `--as-deployer-of
//! <env>` as well, the command acts on the emulator with nothing but that environment's deployer
//! policy, IAM enforced, as the release pipeline does in AWS; what only stands in for AWS here (the
//! local gateway that runs the functions, the secrets it makes) keeps the emulator's administrator.

use std::time::Duration;

use anyhow::Context as _;

use super::emulator::Emulator;
use crate::aws::{self, Connection};
use crate::environments::Environment;
use crate::progress::Progress;
use crate::release::bootstrap::{self, Pipeline};
use crate::release::stack::Template;
use crate::workspace::Workspace;

/// The emulator creates stacks synchronously; this bounds a stuck one.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(600);

/// The emulator-only identity `--as-deployer-of` acts as (`deployer.yaml`).
const DEPLOYER_TEMPLATE: &str = include_str!("deployer.yaml");

/// A connection, and the emulator behind it when there is one.
#[derive(Debug)]
pub struct Session {
    pub aws: Connection,
    pub emulator: Option<Emulator>,
    /// With `--as-deployer-of`, the emulator's administrator, for what stands in for AWS here.
    administrator: Option<Connection>,
}

impl Session {
    /// The connection for what only stands in for AWS on the emulator (running the functions
    /// behind the local gateway, making local secrets): the administrator's when the command acts
    /// as a deployer, else the command's own.
    pub fn harness(&self) -> &Connection {
        self.administrator.as_ref().unwrap_or(&self.aws)
    }

    /// The emulator, for a command that only runs against it.
    pub fn emulator(&self) -> anyhow::Result<&Emulator> {
        self.emulator
            .as_ref()
            .context("the local emulator is not running")
    }

    /// Fails, saying how to get one, when the artifact bucket does not exist.
    pub fn require_bucket(&self) -> anyhow::Result<()> {
        let (aws, bucket) = (&self.aws, self.aws.bucket.as_str());
        if self.emulator.is_some() {
            if !aws
                .runtime
                .block_on(aws::s3::bucket_exists(&aws.s3(), bucket))
            {
                anyhow::bail!(
                    "the local emulator has no artifact bucket {bucket}: the first `cargo xtask \
                     deploy <service> <env> --local` creates it (or pass the --bucket you deployed \
                     with); nothing was created"
                );
            }
            return Ok(());
        }
        aws.runtime
            .block_on(aws::s3::check_bucket(&aws.s3(), &aws.region, bucket))
    }

    /// What a command says last when it used the emulator: that it keeps running, and how to
    /// look at it and stop it. Empty for an AWS account.
    pub fn note(&self) -> String {
        self.emulator
            .as_ref()
            .map_or_else(String::new, Emulator::note)
    }
}

/// What a command may change where it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It publishes or deploys: on the emulator, a missing artifact bucket is bootstrapped.
    Changes,
    /// It only reads (or deletes what exists): nothing is created, a missing bucket stays missing.
    Reads,
}

/// Connects to `region` (default: the AWS configuration's) and `bucket` (default: the region's),
/// in the emulator when `local`. Names are checked first, and an account's credentials before
/// anything is asked of it, so that every command says the same about them.
/// `home` is the environment the command acts on, whose table entry may name its account (on the
/// emulator, reached by assuming a role into that account, whose state the emulator keeps apart)
/// and the AWS profile whose credentials reach it.
#[allow(clippy::too_many_arguments)]
pub fn connect(
    region: Option<&str>,
    bucket: Option<&str>,
    local: bool,
    as_deployer_of: Option<Environment>,
    home: Option<Environment>,
    access: Access,
    workspace: &Workspace,
    progress: Progress,
) -> anyhow::Result<Session> {
    if let Some(region) = region {
        crate::names::check_region(region).map_err(anyhow::Error::msg)?;
    }
    if let Some(bucket) = bucket {
        crate::names::check_bucket_name(bucket).map_err(anyhow::Error::msg)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let emulator = local
        .then(|| Emulator::ensure(workspace, progress))
        .transpose()?;
    let profile = home.and_then(|e| e.declared().aws_profile.as_deref());
    let account = home.and_then(|e| e.declared().account.as_deref());
    let sdk = runtime.block_on(async {
        match &emulator {
            Some(emulator) => match account.filter(|a| *a != LOCAL_ACCOUNT) {
                Some(account) => {
                    if as_deployer_of.is_some() {
                        anyhow::bail!(
                            "--as-deployer-of acts in the emulator's own account, and {} lives in \
                             account {account}: leave one of them out",
                            home.map(|e| e.to_string()).unwrap_or_default()
                        );
                    }
                    emulator.sdk_config_in(region, account).await
                }
                None => Ok(emulator.sdk_config(region).await),
            },
            None => Ok(aws::sdk_config_of(region, profile).await),
        }
    })?;
    // S3's names are global: an environment in an account of its own has a bucket of its own.
    let bucket = match (bucket, account) {
        (Some(bucket), _) => Some(bucket.to_owned()),
        (None, Some(account)) => Some(format!(
            "biometrix-infrastructure-{account}-{}",
            aws::region_of(&sdk)
        )),
        (None, None) => None,
    };
    let connection = Connection::new(runtime, sdk, bucket);
    if emulator.is_none() {
        connection
            .runtime
            .block_on(aws::check_credentials(&connection.sdk))?;
    }
    if emulator.is_some() && access == Access::Changes {
        let (sdk, bucket) = (&connection.sdk, connection.bucket.as_str());
        connection.runtime.block_on(async {
            // Bootstrapped again when the workspace's infrastructure template changed since.
            let cloudformation = connection.cloudformation();
            let current = aws::cloudformation::describe(&cloudformation, bootstrap::STACK).await?;
            let deployed = match &current {
                Some(current) => {
                    aws::cloudformation::template_body(&cloudformation, &current.id).await?
                }
                None => String::new(),
            };
            // One infrastructure stack per region, for one bucket: another --bucket never
            // re-points it (the stacks and histories of the first would be left behind).
            if let Some(serves) = current
                .as_ref()
                .and_then(|current| current.outputs.get("ArtifactBucket"))
                .filter(|serves| *serves != bucket)
            {
                anyhow::bail!(
                    "the local infrastructure stack {} serves the bucket {serves}, not {bucket}: \
                     leave out --bucket (or pass --bucket {serves}); nothing was changed",
                    bootstrap::STACK
                );
            }
            let path = workspace.root.join(bootstrap::TEMPLATE);
            let wanted = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            if aws::s3::bucket_exists(&connection.s3(), bucket).await && deployed == wanted {
                return anyhow::Ok(());
            }
            progress.note(&format!("bootstrapping the local artifact bucket {bucket}"));
            bootstrap::apply(
                sdk,
                workspace,
                bootstrap::STACK,
                Some(bucket),
                BOOTSTRAP_TIMEOUT,
                progress,
            )
            .await?;
            Ok(())
        })?;
    }
    let (Some(emulator), Some(environment)) = (&emulator, as_deployer_of) else {
        return Ok(Session {
            aws: connection,
            emulator,
            administrator: None,
        });
    };
    let (key_id, secret) = connection.runtime.block_on(deployer_key(
        &connection.sdk,
        workspace,
        environment,
        progress,
    ))?;
    emulator.enforce_iam()?;
    progress.note(&format!(
        "acting as {environment}'s deployer: only its pipeline's rights, IAM enforced on the \
         emulator"
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sdk = runtime.block_on(emulator.sdk_config_as(region, &key_id, &secret));
    let deployer = Connection::new(runtime, sdk, Some(connection.bucket.clone()));
    Ok(Session {
        aws: deployer,
        emulator: Some(emulator.clone()),
        administrator: Some(connection),
    })
}

/// The account the emulator's own credentials act in (moto's default).
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// An access key of an emulator-only user holding nothing but `environment`'s deployer policy:
/// its pipeline stack (`cloudformation/pipeline.yaml`, promoting as the release workflow does)
/// and the user, made by the administrator if they are not there yet.
async fn deployer_key(
    administrator: &aws_config::SdkConfig,
    workspace: &Workspace,
    environment: Environment,
    progress: Progress,
) -> anyhow::Result<(String, String)> {
    let pipeline = bootstrap::pipeline(
        administrator,
        workspace,
        &Pipeline {
            environment: environment.as_str(),
            promotes_from: environment.promotes_from().map(Environment::as_str),
            repository: None,
            deletes_stores: environment.stores() == crate::environments::Stores::Deleted,
            secrets_from: environment.secrets_from().map(Environment::as_str),
            infrastructure: bootstrap::STACK,
        },
        BOOTSTRAP_TIMEOUT,
        progress,
    )
    .await?;
    let policy = pipeline
        .outputs
        .get("DeployerPolicyArn")
        .with_context(|| format!("the stack {} has no DeployerPolicyArn", pipeline.stack))?;
    let template = Template::parse("deployer.yaml", DEPLOYER_TEMPLATE.to_owned())?;
    let stack = format!("biometrix-local-deployer-{environment}");
    let set = std::collections::BTreeMap::from([("DeployerPolicyArn".to_owned(), policy.clone())]);
    let (_, current) = bootstrap::apply_template(
        administrator,
        &template,
        &stack,
        set,
        BOOTSTRAP_TIMEOUT,
        progress,
    )
    .await?;
    let output = |name: &str| {
        current
            .outputs
            .get(name)
            .cloned()
            .with_context(|| format!("the emulator's stack {stack} has no {name}"))
    };
    Ok((output("AccessKeyId")?, output("SecretAccessKey")?))
}
