//! The secrets local runs give their functions, kept where a deployment keeps them: in the
//! emulator's Secrets Manager, named by ARN in the function's environment. The service-token
//! secret's value is made once per workspace and kept in `target/local`, readable by its owner only.

use anyhow::Context;

use crate::aws::Connection;
use crate::local::postgres::Postgres;
use crate::progress::Progress;
use crate::release::stack::Template;
use crate::workspace::{Service, Workspace, service_template};

/// The stack parameter naming the legacy database's secret, and the service-token secret's.
pub const DATABASE_PARAMETER: &str = "DatabaseSecretArn";
pub const SERVICE_TOKEN_PARAMETER: &str = "ServiceTokenSecretArn";
/// The name of the emulator's database secret, which its ARN contains.
const DATABASE_SECRET: &str = "biometrix/local/database";

/// What `deploy --local` passes the stacks of `services`, for the parameters their templates
/// declare: the ARN of the emulator's secret holding the local PostgreSQL's URL (the server
/// started, installed first with `install`), and that of the local service-token secret. Those
/// `given` (`--parameter`) are left to the caller.
pub fn stack_parameters(
    aws: &Connection,
    workspace: &Workspace,
    services: &[&Service],
    given: &[(String, String)],
    install: bool,
    progress: Progress,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut declared = std::collections::BTreeSet::new();
    for service in services {
        let file = service_template(&service.name);
        declared.extend(
            Template::parse(&file, workspace.template(&file)?)?
                .parameters()
                .into_keys(),
        );
    }
    for (key, _) in given {
        declared.remove(key);
    }
    let mut parameters = Vec::new();
    if declared.contains(DATABASE_PARAMETER) {
        let url = Postgres::ensure_installed(workspace, install, progress)?.url();
        let arn = aws.runtime.block_on(database_secret(&aws.sdk, &url))?;
        parameters.push((DATABASE_PARAMETER.to_owned(), arn));
    }
    if declared.contains(SERVICE_TOKEN_PARAMETER) {
        let arn = aws
            .runtime
            .block_on(service_token_secret(&aws.sdk, workspace))?;
        parameters.push((SERVICE_TOKEN_PARAMETER.to_owned(), arn));
    }
    Ok(parameters)
}

/// Whether `arn` names the emulator's database secret, whose URL a local run keeps current.
pub fn is_database_secret(arn: &str) -> bool {
    arn.contains(&format!(":secret:{DATABASE_SECRET}"))
}

/// The emulator's secret holding the local PostgreSQL's URL (`url`), as `serve` and `up` give it to
/// functions; returns its ARN.
pub async fn database_secret(sdk: &aws_config::SdkConfig, url: &str) -> anyhow::Result<String> {
    put_secret(sdk, DATABASE_SECRET, url).await
}

/// The emulator's secret holding this workspace's service-token secret ([`service_secret`]);
/// returns its ARN.
pub async fn service_token_secret(
    sdk: &aws_config::SdkConfig,
    workspace: &Workspace,
) -> anyhow::Result<String> {
    put_secret(
        sdk,
        "biometrix/local/service-token",
        &service_secret(workspace)?,
    )
    .await
}

/// The emulator's secret `name`, holding `value`: created, or given `value` as its new current
/// version when it holds another; returns its ARN.
pub async fn put_secret(
    sdk: &aws_config::SdkConfig,
    name: &str,
    value: &str,
) -> anyhow::Result<String> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let context = || format!("putting the secret {name} in the emulator's Secrets Manager");
    match secrets.get_secret_value().secret_id(name).send().await {
        Ok(held) => {
            if held.secret_string() != Some(value) {
                secrets
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(value)
                    .send()
                    .await
                    .with_context(context)?;
            }
            held.arn().map(str::to_owned).with_context(context)
        }
        Err(error)
            if aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&error)
                == Some("ResourceNotFoundException") =>
        {
            let created = secrets
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .with_context(context)?;
            created.arn().map(str::to_owned).with_context(context)
        }
        Err(error) => Err(anyhow::Error::new(error).context(context())),
    }
}

/// A secret for service tokens, made once per workspace and kept in `target/local`, readable by
/// its owner only.
pub fn service_secret(workspace: &Workspace) -> anyhow::Result<String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = workspace.target_dir.join("local/service-token-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        // One written before it was kept private is made private now.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
        return Ok(secret.trim().to_owned());
    }
    let secret = super::random_hex(32)?;
    let dir = path.parent().expect("the secret is inside target/local");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Created 0600 under a temporary name, then renamed: never readable by others, never partial.
    let temporary = dir.join(format!(".service-token-secret.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("moving {} into place", path.display()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_service_secret_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("xtask-secret-{}", std::process::id()));
        let workspace = Workspace {
            root: root.clone(),
            target_dir: root.join("target"),
            services: Vec::new(),
            gate: None,
        };
        let first = service_secret(&workspace).unwrap();
        assert_eq!(first.len(), 64);
        let path = root.join("target/local/service-token-secret");
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        // One left world-readable by an older serve is made private, and kept.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(service_secret(&workspace).unwrap(), first);
        assert_eq!(mode(&path), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
