//! `cargo xtask bootstrap`: create or update a region's infrastructure stack, which holds the
//! artifact bucket that `publish` uploads to, or, with `--environment`, that environment's
//! pipeline stack, which holds what its release pipeline may do.

use std::time::Duration;

use crate::aws::{check_credentials, region_of, sdk_config};
use crate::environments::{Environment, Environments, Name, Stores};
use crate::progress::Progress;
use crate::release::bootstrap::{self, Pipeline, STACK};
use crate::workspace::Workspace;

/// Create or update the region's artifact bucket and roles, or an environment's pipeline rights
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask bootstrap --region eu-west-1                 # the bucket, CloudFormationRole, the boundary, gc's policy\n  \
    cargo xtask bootstrap --region eu-west-1 --environment dev --github-repository biometrix/apis\n  \
    cargo xtask bootstrap --region eu-west-1 --environment production --promotes-from qa \\\n      \
    --github-repository biometrix/apis\n\n\
Each environment's pipeline stack (biometrix-pipeline-<env>) holds a deployer policy that reaches\n\
that environment's stacks, history and locks only, and, with --github-repository, the role the\n\
repository's GitHub environment of the same name assumes (through GitHub's OIDC provider, which\n\
the account must have). Bootstrap the region first.")]
pub struct Bootstrap {
    /// The AWS region (default: the standard AWS configuration, else us-west-2).
    #[arg(long)]
    region: Option<String>,
    /// The bucket's name, for organisations other than biometrix (default: biometrix-infrastructure-<region>).
    #[arg(long)]
    bucket: Option<String>,
    /// The infrastructure stack's name.
    #[arg(long, default_value = STACK)]
    stack: String,
    /// Bootstrap this environment's pipeline rights instead of the region's infrastructure: a name,
    /// or a pattern of [workspace.metadata.environments] ('pr-*') whose environments share one.
    #[arg(long)]
    environment: Option<String>,
    /// With --environment: the environment whose releases it promotes (default: what
    /// [workspace.metadata.environments] declares as its promotes-from).
    #[arg(long, requires = "environment")]
    promotes_from: Option<Name>,
    /// With --environment: the GitHub repository (owner/name) whose workflow gets a role for it.
    #[arg(long, requires = "environment")]
    github_repository: Option<String>,
    /// How long to wait for CloudFormation, in seconds.
    #[arg(long, default_value_t = 900, value_parser = crate::cli::timeout_seconds())]
    timeout: u64,
}

impl Bootstrap {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let sdk = sdk_config(self.region.as_deref()).await;
            check_credentials(&sdk).await?;
            if let Some(environment) = &self.environment {
                // A name, or a whole pattern (`pr-*`): every preview shares one pipeline.
                let declared = match environment.strip_suffix('*') {
                    Some(_) => Environments::declared(environment)?,
                    None => environment.parse::<Environment>()?.declared().clone(),
                };
                let promotes_from = match &self.promotes_from {
                    Some(from) => Some(from.resolve()?.to_string()),
                    None => declared.promotes_from.clone(),
                };
                if promotes_from.as_deref() == Some(environment.as_str()) {
                    anyhow::bail!(
                        "{environment} cannot promote from itself: --promotes-from names the \
                         environment whose releases it takes (qa for production)"
                    );
                }
                if let Some(repository) = &self.github_repository {
                    check_repository(repository)?;
                }
                let done = bootstrap::pipeline(
                    &sdk,
                    workspace,
                    &Pipeline {
                        environment,
                        promotes_from: promotes_from.as_deref(),
                        repository: self.github_repository.as_deref(),
                        deletes_stores: declared.stores == Stores::Deleted,
                        secrets_from: declared.secrets_from.as_deref(),
                        infrastructure: &self.stack,
                    },
                    Duration::from_secs(self.timeout),
                    progress,
                )
                .await?;
                println!(
                    "stack {} in {}: {}",
                    done.stack,
                    region_of(&sdk),
                    done.outcome
                );
                for (name, value) in &done.outputs {
                    println!("{name}: {value}");
                }
                return Ok(());
            }
            let done = bootstrap::apply(
                &sdk,
                workspace,
                &self.stack,
                self.bucket.as_deref(),
                Duration::from_secs(self.timeout),
                progress,
            )
            .await?;
            println!(
                "stack {} in {}: {}",
                self.stack,
                region_of(&sdk),
                done.outcome
            );
            println!("artifact bucket: {}", done.bucket);
            Ok(())
        })
    }
}

/// Fails unless `repository` is `owner/name`, as GitHub's OIDC token names it.
fn check_repository(repository: &str) -> anyhow::Result<()> {
    let part = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    match repository.split_once('/') {
        Some((owner, name)) if part(owner) && part(name) => Ok(()),
        _ => anyhow::bail!(
            "--github-repository takes owner/name, like biometrix/apis, not `{repository}`"
        ),
    }
}
