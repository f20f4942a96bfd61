//! The stores a service's template declares, made real in the local emulator, and the function's
//! environment in terms of them. There is no second list to keep in sync: every DynamoDB table, S3
//! bucket and Cognito user pool (with its client) the template declares is created in the
//! emulator, named `<service>-<scope>-<logical id>` (the scope is `local` for `serve`, the
//! environment for a deployed stack's pools), and each variable of the function's environment
//! that refers to one (`!Ref FirmwareTable`) gets the local name. The secrets a function reads at
//! run time are put in the emulator's Secrets Manager, as a deployment keeps them:
//! `DATABASE_SECRET_ARN` names one holding the local PostgreSQL's URL, `SERVICE_TOKEN_SECRET_ARN`
//! one holding a service-token secret kept in `target/local`. Plain values are kept. Variables built from parameters or conditions are left unset for the
//! caller to fill. Items are seeded only when asked.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use aws_sdk_cognitoidentityprovider::types::{
    AttributeDataType, ExplicitAuthFlowsType, PasswordPolicyType, SchemaAttributeType,
    UserPoolPolicyType,
};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use yaml_rust2::Yaml;

use crate::progress::Progress;
use crate::release::stack::Template;
use crate::workspace::{Workspace, service_template};

/// The stores a template declares, and the function's environment in terms of them.
#[derive(Debug, Default, PartialEq)]
pub struct Needs {
    /// Logical id → the table's definition (plain data in every template).
    pub tables: BTreeMap<String, Yaml>,
    pub buckets: Vec<String>,
    /// Logical id of the pool → its definition; and the client's logical id → its pool's.
    pub pools: BTreeMap<String, Yaml>,
    pub clients: BTreeMap<String, (String, Yaml)>,
    /// Variable → how to get its value.
    pub env: BTreeMap<String, Source>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Literal(String),
    /// A `!Ref` to a resource of the template.
    Resource(String),
    Database,
    ServiceSecret,
    /// Built from parameters or conditions: only `--env` can set it.
    Unset,
}

impl Needs {
    /// Reads a service template: each store it declares, and where each variable of its one
    /// function's environment gets its value.
    pub fn of(template: &Template) -> anyhow::Result<Needs> {
        let mut needs = Needs::default();
        for (id, table) in template.resources("AWS::DynamoDB::Table") {
            needs
                .tables
                .insert(id.to_owned(), table["Properties"].clone());
        }
        for (id, _) in template.resources("AWS::S3::Bucket") {
            needs.buckets.push(id.to_owned());
        }
        for (id, pool) in template.resources("AWS::Cognito::UserPool") {
            needs
                .pools
                .insert(id.to_owned(), pool["Properties"].clone());
        }
        for (id, client) in template.resources("AWS::Cognito::UserPoolClient") {
            let properties = client["Properties"].clone();
            let pool = properties["UserPoolId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            needs.clients.insert(id.to_owned(), (pool, properties));
        }
        let functions = template.resources("AWS::Lambda::Function");
        let [(_, function)] = functions.as_slice() else {
            bail!(
                "serve runs services with exactly one function; this template declares {}",
                functions.len()
            );
        };
        let variables = function["Properties"]["Environment"]["Variables"]
            .as_hash()
            .cloned()
            .unwrap_or_default();
        for (name, value) in variables {
            let Some(name) = name.as_str() else { continue };
            let source = match (name, value.as_str()) {
                ("DATABASE_SECRET_ARN", _) => Source::Database,
                ("SERVICE_TOKEN_SECRET_ARN", _) => Source::ServiceSecret,
                (_, Some(text)) if template.is_resource(text) => Source::Resource(text.to_owned()),
                (_, Some(text)) if !text.contains("${") => Source::Literal(text.to_owned()),
                _ => Source::Unset,
            };
            needs.env.insert(name.to_owned(), source);
        }
        Ok(needs)
    }

    /// What `service` needs, from `cloudformation/<service>-environment.yaml`.
    pub fn for_service(workspace: &Workspace, service: &str) -> anyhow::Result<Needs> {
        let file = service_template(service);
        let template = Template::parse(&file, workspace.template(&file)?)?;
        Needs::of(&template).with_context(|| format!("cloudformation/{file}"))
    }

    /// The function's environment, given the local stores' names (logical id → name) and the
    /// ARNs of the secrets holding the database's URL and the service-token secret; and the
    /// variables left unset.
    pub fn environment(
        &self,
        names: &BTreeMap<String, String>,
        database_secret: Option<&str>,
        service_secret: Option<&str>,
    ) -> (BTreeMap<String, String>, Vec<String>) {
        let mut env = BTreeMap::new();
        let mut unset = Vec::new();
        for (name, source) in &self.env {
            let value = match source {
                Source::Literal(value) => Some(value.as_str()),
                Source::Resource(id) => names.get(id).map(String::as_str),
                Source::Database => database_secret,
                Source::ServiceSecret => service_secret,
                Source::Unset => None,
            };
            match value {
                Some(value) => {
                    env.insert(name.clone(), value.to_owned());
                }
                None => unset.push(name.clone()),
            }
        }
        (env, unset)
    }

    pub fn uses(&self, source: &Source) -> bool {
        self.env.values().any(|s| s == source)
    }
}

/// Creates the template's user pools and their clients where they do not exist yet; logical id →
/// pool id or client id.
pub async fn provision_pools(
    sdk: &aws_config::SdkConfig,
    service: &str,
    scope: &str,
    needs: &Needs,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(sdk);
    for (id, pool) in &needs.pools {
        let name = local_name(service, scope, id);
        let pool_id = create_pool(&cognito, &name, pool).await?;
        for (client_id, (_, client)) in needs.clients.iter().filter(|(_, (of, _))| of == id) {
            let client_name = local_name(service, scope, client_id);
            let created = create_client(&cognito, &pool_id, &client_name, client).await?;
            names.insert(client_id.clone(), created);
        }
        names.insert(id.clone(), pool_id);
    }
    Ok(names)
}

/// The values a local run gives the variables a template builds from stack parameters, one way
/// for `serve`, `up`, `invoke` and a deploy's check: the crate's
/// `[package.metadata.lambda.local.env]`; `<OTHER>_API_URL` where this command serves that other
/// service (`urls`, by name); and the token issuers `service` takes from another service's user
/// pool in the same `scope` (`[package.metadata.lambda.local.issuers]`, see [`issuers`]).
pub async fn local_values(
    sdk: &aws_config::SdkConfig,
    workspace: &Workspace,
    service: &crate::workspace::Service,
    scope: &str,
    endpoint: &str,
    urls: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = service.local.env.clone();
    let needs = Needs::for_service(workspace, &service.name)?;
    for (name, _) in needs.env.iter().filter(|(_, s)| **s == Source::Unset) {
        // `HARDWARE_API_URL`: the hardware API this command serves, where it serves it.
        if let Some(url) = name
            .strip_suffix("_API_URL")
            .and_then(|other| urls.get(&other.to_ascii_lowercase()))
        {
            values.insert(name.clone(), url.clone());
        }
    }
    values.extend(issuers(sdk, workspace, service, scope, endpoint).await?);
    Ok(values)
}

/// The variables of the token issuers `service` takes from another service's user pool: for
/// `ACCESSORY = "hardware/AccessoryUserPool"`, `ACCESSORY_TOKEN_ISSUER` as that pool's tokens
/// name it in the emulator's region, and `ACCESSORY_JWKS_URL` where the emulator (`endpoint`)
/// serves its keys. The pool (`scope`'s) is created if it does not exist yet.
async fn issuers(
    sdk: &aws_config::SdkConfig,
    workspace: &Workspace,
    service: &crate::workspace::Service,
    scope: &str,
    endpoint: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let region = crate::aws::region_of(sdk);
    let mut values = BTreeMap::new();
    for (prefix, pool) in &service.local.issuers {
        let Some((other, id)) = pool.split_once('/') else {
            bail!(
                "{}: the issuer {prefix} = {pool:?} is not `<service>/<user pool's logical id>`",
                service.manifest_path.display()
            );
        };
        let other = workspace.service(other)?;
        let needs = Needs::for_service(workspace, &other.name)?;
        let pools = provision_pools(sdk, &other.name, scope, &needs).await?;
        let pool_id = pools.get(id).with_context(|| {
            format!(
                "{}: the issuer {prefix} names {pool}, but {} declares no user pool {id}",
                service.manifest_path.display(),
                service_template(&other.name)
            )
        })?;
        values.insert(
            format!("{prefix}_TOKEN_ISSUER"),
            format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}"),
        );
        values.insert(
            format!("{prefix}_JWKS_URL"),
            format!(
                "{}/{pool_id}/.well-known/jwks.json",
                endpoint.trim_end_matches('/')
            ),
        );
    }
    Ok(values)
}

/// The scope of the stores `serve` (and `bench lambda`) make for a service of their own, apart
/// from every deployed environment's.
pub const SERVE_SCOPE: &str = "local";

/// The local name of a store: `<service>-<scope>-<logical id in lowercase>`.
pub(super) fn local_name(service: &str, scope: &str, id: &str) -> String {
    format!("{service}-{scope}-{}", id.to_ascii_lowercase())
}

/// Creates what the template declares, where it does not exist yet; logical id → local name (or
/// pool id, client id).
pub async fn provision(
    sdk: &aws_config::SdkConfig,
    service: &str,
    scope: &str,
    needs: &Needs,
    progress: Progress,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    for (id, table) in &needs.tables {
        let name = local_name(service, scope, id);
        create_table(&dynamodb, &name, table).await?;
        names.insert(id.clone(), name);
    }
    let s3 = crate::aws::s3_client(sdk);
    for id in &needs.buckets {
        let name = local_name(service, scope, id);
        if s3.head_bucket().bucket(&name).send().await.is_err() {
            s3.create_bucket()
                .bucket(&name)
                .create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(crate::aws::DEFAULT_REGION.into())
                        .build(),
                )
                .send()
                .await
                .with_context(|| format!("creating bucket {name} in the emulator"))?;
        }
        names.insert(id.clone(), name);
    }
    names.extend(provision_pools(sdk, service, scope, needs).await?);
    progress.note(&format!(
        "stores in the emulator: {}",
        names
            .iter()
            .map(|(id, name)| format!("{id} = {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(names)
}

async fn create_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    name: &str,
    table: &Yaml,
) -> anyhow::Result<()> {
    let key_schema = |keys: &Yaml| -> anyhow::Result<Vec<KeySchemaElement>> {
        keys.as_vec()
            .context("a KeySchema that is a list")?
            .iter()
            .map(|key| {
                Ok(KeySchemaElement::builder()
                    .attribute_name(key["AttributeName"].as_str().unwrap_or_default())
                    .key_type(KeyType::from(key["KeyType"].as_str().unwrap_or_default()))
                    .build()?)
            })
            .collect()
    };
    let mut create = dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&table["KeySchema"])?));
    for attribute in table["AttributeDefinitions"].as_vec().into_iter().flatten() {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute["AttributeName"].as_str().unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(
                    attribute["AttributeType"].as_str().unwrap_or("S"),
                ))
                .build()?,
        );
    }
    for index in table["GlobalSecondaryIndexes"]
        .as_vec()
        .into_iter()
        .flatten()
    {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().unwrap_or_default())
                .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            index["Projection"]["ProjectionType"]
                                .as_str()
                                .unwrap_or("ALL"),
                        ))
                        .build(),
                )
                .build()?,
        );
    }
    match create.send().await {
        Ok(_) => Ok(()),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(error) => Err(anyhow::Error::new(error))
            .with_context(|| format!("creating table {name} in the emulator")),
    }
}

async fn create_pool(
    cognito: &aws_sdk_cognitoidentityprovider::Client,
    name: &str,
    pool: &Yaml,
) -> anyhow::Result<String> {
    let listed = cognito
        .list_user_pools()
        .max_results(60)
        .send()
        .await
        .context("listing the emulator's user pools")?;
    if let Some(existing) = listed.user_pools().iter().find(|p| p.name() == Some(name)) {
        return existing
            .id()
            .map(str::to_owned)
            .context("a pool without an id");
    }
    let mut create = cognito.create_user_pool().pool_name(name);
    let policy = &pool["Policies"]["PasswordPolicy"];
    if !policy.is_badvalue() {
        // Without it the emulator (like Cognito) demands upper case, digits and symbols, and a
        // local run would refuse passwords a deployed one accepts.
        let flag = |name: &str| policy[name].as_bool();
        create = create.policies(
            UserPoolPolicyType::builder()
                .password_policy(
                    PasswordPolicyType::builder()
                        .set_minimum_length(
                            policy["MinimumLength"]
                                .as_i64()
                                .and_then(|n| i32::try_from(n).ok()),
                        )
                        .set_require_lowercase(flag("RequireLowercase"))
                        .set_require_uppercase(flag("RequireUppercase"))
                        .set_require_numbers(flag("RequireNumbers"))
                        .set_require_symbols(flag("RequireSymbols"))
                        .build(),
                )
                .build(),
        );
    }
    for attribute in pool["Schema"].as_vec().into_iter().flatten() {
        create = create.schema(
            SchemaAttributeType::builder()
                .name(attribute["Name"].as_str().unwrap_or_default())
                .attribute_data_type(AttributeDataType::from(
                    attribute["AttributeDataType"].as_str().unwrap_or("String"),
                ))
                .mutable(attribute["Mutable"].as_bool().unwrap_or(true))
                .build(),
        );
    }
    create
        .send()
        .await
        .with_context(|| format!("creating user pool {name} in the emulator"))?
        .user_pool
        .and_then(|p| p.id)
        .context("the emulator created a pool without an id")
}

async fn create_client(
    cognito: &aws_sdk_cognitoidentityprovider::Client,
    pool_id: &str,
    name: &str,
    client: &Yaml,
) -> anyhow::Result<String> {
    let listed = cognito
        .list_user_pool_clients()
        .user_pool_id(pool_id)
        .max_results(60)
        .send()
        .await
        .context("listing the pool's clients")?;
    if let Some(existing) = listed
        .user_pool_clients()
        .iter()
        .find(|c| c.client_name() == Some(name))
    {
        return existing
            .client_id()
            .map(str::to_owned)
            .context("a client without an id");
    }
    let flows = client["ExplicitAuthFlows"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .map(ExplicitAuthFlowsType::from)
        .collect();
    cognito
        .create_user_pool_client()
        .user_pool_id(pool_id)
        .client_name(name)
        .set_explicit_auth_flows(Some(flows))
        .send()
        .await
        .with_context(|| format!("creating client {name} in the emulator"))?
        .user_pool_client
        .and_then(|c| c.client_id)
        .context("the emulator created a client without an id")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn template(service: &str) -> Template {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cloudformation")
            .join(service_template(service));
        Template::read(&path).unwrap()
    }

    #[test]
    fn the_hardware_template_needs_tables_a_bucket_a_pool_and_the_database() {
        let needs = Needs::of(&template("hardware")).unwrap();
        assert_eq!(
            needs.tables.keys().collect::<Vec<_>>(),
            ["FirmwareTable", "SyncTable"]
        );
        assert_eq!(needs.buckets, ["FirmwareBucket"]);
        assert!(needs.pools.contains_key("AccessoryUserPool"));
        let policy = &needs.pools["AccessoryUserPool"]["Policies"]["PasswordPolicy"];
        assert_eq!(policy["MinimumLength"].as_i64(), Some(8));
        assert_eq!(policy["RequireUppercase"].as_bool(), Some(false));
        assert_eq!(needs.clients["AccessoryClient"].0, "AccessoryUserPool");
        assert_eq!(
            needs.env["FIRMWARE_TABLE"],
            Source::Resource("FirmwareTable".into())
        );
        assert_eq!(
            needs.env["ACCESSORY_CLIENT_ID"],
            Source::Resource("AccessoryClient".into())
        );
        assert_eq!(needs.env["DATABASE_SECRET_ARN"], Source::Database);
        assert_eq!(needs.env["SERVICE_TOKEN_SECRET_ARN"], Source::ServiceSecret);
        assert_eq!(needs.env["RUST_LOG"], Source::Literal("info".into()));
        assert_eq!(needs.env["ACCESSORY_TOKEN_ISSUER"], Source::Unset);
    }

    #[test]
    fn every_service_template_can_be_served() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let workspace = crate::local::metadata::workspace(Some(&root)).unwrap();
        assert!(workspace.services.len() >= 4);
        for service in &workspace.services {
            let needs = Needs::for_service(&workspace, &service.name)
                .unwrap_or_else(|e| panic!("{}: {e:#}", service.name));
            assert!(!needs.env.is_empty(), "{}", service.name);
        }
        let preprocessing = Needs::of(&template("preprocessing")).unwrap();
        let sessions = &preprocessing.tables["SessionsTable"];
        assert_eq!(
            sessions["GlobalSecondaryIndexes"][0]["IndexName"].as_str(),
            Some("user_id-event_date")
        );
    }
}
