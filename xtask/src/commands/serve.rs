//! `cargo xtask serve <service>`: the service as a plain HTTP server on 127.0.0.1, against the
//! local AWS emulator and a local PostgreSQL, both started if needed.
//!
//! What the service needs comes from its own template, so there is no second list to keep in
//! sync: every DynamoDB table, S3 bucket and Cognito user pool (with its client) the template
//! declares is created in the emulator, named `<service>-local-<logical id>`, and each variable of
//! the function's environment that refers to one (`!Ref FirmwareTable`) gets the local name. A
//! variable that names the database gets the local PostgreSQL, `SERVICE_TOKEN_SECRET` a secret kept
//! in `target/local`, and plain values are kept. Variables built from parameters or conditions are
//! left unset unless `--env` sets them. Nothing is seeded unless `--seed` names a file.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_cognitoidentityprovider::types::{
    AttributeDataType, ExplicitAuthFlowsType, SchemaAttributeType,
};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use yaml_rust2::{Yaml, YamlLoader};

use crate::local::Emulator;
use crate::postgres::Postgres;
use crate::progress::Progress;
use crate::workspace::Workspace;

/// Run a service locally as an HTTP server, against the emulator and PostgreSQL.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  cargo xtask serve hardware\n  \
                        cargo xtask serve hardware --port 8080 --seed firmware.json\n\n\
    A seed file maps a table's logical id in the template to the items to put in it:\n  \
    {\"FirmwareTable\": [{\"device_type\": \"accessory\", \"version\": \"1.10\", \"created_date\": \"2026-02-01T09:30:00Z\"}]}")]
pub struct Serve {
    /// The service.
    service: String,
    /// The port to listen on, on 127.0.0.1.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// A JSON file of items to put into the service's tables before serving.
    #[arg(long, value_name = "FILE")]
    seed: Option<PathBuf>,
    /// A variable to set in the service's environment, over what serve computes (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = crate::names::parse_key_value)]
    env: Vec<(String, String)>,
}

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
    /// Reads a service template. Short-form tags read as their values, so `!Ref FirmwareTable`
    /// is the text `FirmwareTable`: a value naming one of the template's resources is a reference.
    pub fn of(template: &str) -> anyhow::Result<Needs> {
        let yaml = YamlLoader::load_from_str(template)
            .context("the template is not YAML")?
            .pop()
            .context("the template is empty")?;
        let resources = yaml["Resources"]
            .as_hash()
            .context("the template has no Resources")?;
        let mut needs = Needs::default();
        let mut functions = Vec::new();
        for (id, resource) in resources {
            let Some(id) = id.as_str() else { continue };
            let properties = resource["Properties"].clone();
            match resource["Type"].as_str().unwrap_or_default() {
                "AWS::DynamoDB::Table" => {
                    needs.tables.insert(id.to_owned(), properties);
                }
                "AWS::S3::Bucket" => needs.buckets.push(id.to_owned()),
                "AWS::Cognito::UserPool" => {
                    needs.pools.insert(id.to_owned(), properties);
                }
                "AWS::Cognito::UserPoolClient" => {
                    let pool = properties["UserPoolId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    needs.clients.insert(id.to_owned(), (pool, properties));
                }
                "AWS::Lambda::Function" => functions.push(properties),
                _ => {}
            }
        }
        let [function] = functions.as_slice() else {
            bail!(
                "serve runs services with exactly one function; this template declares {}",
                functions.len()
            );
        };
        let variables = function["Environment"]["Variables"]
            .as_hash()
            .cloned()
            .unwrap_or_default();
        for (name, value) in variables {
            let Some(name) = name.as_str() else { continue };
            let source = match (name, value.as_str()) {
                ("DATABASE_URL", _) => Source::Database,
                ("SERVICE_TOKEN_SECRET", _) => Source::ServiceSecret,
                (_, Some(text)) if resources.contains_key(&Yaml::String(text.to_owned())) => {
                    Source::Resource(text.to_owned())
                }
                (_, Some(text)) if !text.contains("${") => Source::Literal(text.to_owned()),
                _ => Source::Unset,
            };
            needs.env.insert(name.to_owned(), source);
        }
        Ok(needs)
    }
}

impl Needs {
    /// What `service` needs, from `cloudformation/<service>-environment.yaml`.
    pub fn for_service(workspace: &Workspace, service: &str) -> anyhow::Result<Needs> {
        let file = workspace
            .root
            .join("cloudformation")
            .join(format!("{service}-environment.yaml"));
        let template = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        Needs::of(&template).with_context(|| file.display().to_string())
    }

    /// The function's environment, given the local stores' names (logical id → name), the
    /// database's URL and the service-token secret; and the variables left unset.
    pub fn environment(
        &self,
        names: &BTreeMap<String, String>,
        database_url: Option<&str>,
        service_secret: Option<&str>,
    ) -> (BTreeMap<String, String>, Vec<String>) {
        let mut env = BTreeMap::new();
        let mut unset = Vec::new();
        for (name, source) in &self.env {
            let value = match source {
                Source::Literal(value) => Some(value.as_str()),
                Source::Resource(id) => names.get(id).map(String::as_str),
                Source::Database => database_url,
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

    fn uses(&self, source: &Source) -> bool {
        self.env.values().any(|s| s == source)
    }
}

/// The local name of a store: `<service>-local-<logical id in lowercase>`.
fn local_name(service: &str, id: &str) -> String {
    format!("{service}-local-{}", id.to_ascii_lowercase())
}

impl Serve {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let service = workspace.service(&self.service)?;
        let [function] = service.functions.as_slice() else {
            bail!(
                "serve runs services with exactly one function; {} has {}",
                service.name,
                service.functions.len()
            );
        };
        let needs = Needs::for_service(workspace, &service.name)?;
        let seed = self
            .seed
            .as_deref()
            .map(read_seed)
            .transpose()?
            .unwrap_or_default();
        for table in seed.keys() {
            if !needs.tables.contains_key(table) {
                bail!(
                    "the seed file names table {table}, which cloudformation/{}-environment.yaml \
                     does not declare; its tables are {}",
                    service.name,
                    needs.tables.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            bail!(
                "port {} is taken on 127.0.0.1: pick another with --port",
                self.port
            );
        }

        let emulator = Emulator::ensure(workspace, progress)?;
        let database = needs
            .uses(&Source::Database)
            .then(|| Postgres::ensure(workspace, progress))
            .transpose()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sdk = runtime.block_on(emulator.sdk_config(None));
        let names = runtime.block_on(provision(&sdk, &service.name, &needs, progress))?;
        runtime.block_on(put_seed(&sdk, &service.name, &seed, progress))?;

        let secret = needs
            .uses(&Source::ServiceSecret)
            .then(|| service_secret(workspace))
            .transpose()?;
        let (mut env, mut unset) = needs.environment(
            &names,
            database.as_ref().map(Postgres::url).as_deref(),
            secret.as_deref(),
        );
        for (name, value) in &self.env {
            env.insert(name.clone(), value.clone());
            unset.retain(|n| n != name);
        }
        if !unset.is_empty() {
            progress.note(&format!(
                "not set locally (built from stack parameters; set them with --env KEY=VALUE): {}",
                unset.join(", ")
            ));
        }

        let step = progress.step(&format!("building {} (debug)", function.bin));
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "--manifest-path"])
            .arg(workspace.root.join("Cargo.toml"))
            .args(["--bin", &function.bin])
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("the build failed (the compiler's output is above)");
        }
        step.done(&format!("built {}", function.bin));

        let address = format!("127.0.0.1:{}", self.port);
        let binary = workspace.target_dir.join("debug").join(&function.bin);
        let mut child = Command::new(&binary)
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env_remove("AWS_PROFILE")
            .envs(&env)
            .env("LISTEN_ADDR", &address)
            .env("AWS_ENDPOINT_URL", &emulator.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", crate::aws::DEFAULT_REGION)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        stop_on_signal(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&address).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it listened on {address}; its output is above",
                    function.bin
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{} did not listen on {address} within 30 s", function.bin);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let url = format!("http://{address}");
        println!(
            "{} is serving at {url}/v1 (and {url}/{})",
            service.name, service.name
        );
        println!("  try: curl -i {url}/v1{}", sample_path(&service.name));
        println!(
            "  stores: the emulator at {}{}",
            emulator.endpoint,
            database
                .as_ref()
                .map(|d| format!(", PostgreSQL at {}", d.url()))
                .unwrap_or_default()
        );
        println!("  stop with Ctrl-C; the emulator and PostgreSQL keep running for the next serve");
        let status = child.wait()?;
        if !status.success() && status.code().is_some() {
            bail!("{} stopped ({status})", function.bin);
        }
        Ok(())
    }
}

/// Ctrl-C or a termination request stops the service too, so no server is left behind.
fn stop_on_signal(pid: u32) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut terminate) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        });
        let _ = Command::new("kill").arg(pid.to_string()).status();
    });
}

/// A request worth showing for each service.
fn sample_path(service: &str) -> &'static str {
    match service {
        "hardware" => "/misc/time",
        "users" => "/user/00000000-0000-4000-8000-000000000000",
        "alerts" => "/alerts/00000000-0000-4000-8000-000000000000",
        "preprocessing" => "/session/00000000-0000-4000-8000-000000000000",
        _ => "/",
    }
}

/// Creates what the template declares, where it does not exist yet; logical id → local name (or
/// pool id, client id).
pub async fn provision(
    sdk: &aws_config::SdkConfig,
    service: &str,
    needs: &Needs,
    progress: Progress,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    for (id, table) in &needs.tables {
        let name = local_name(service, id);
        create_table(&dynamodb, &name, table).await?;
        names.insert(id.clone(), name);
    }
    let s3 = crate::aws::s3_client(sdk);
    for id in &needs.buckets {
        let name = local_name(service, id);
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
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(sdk);
    for (id, pool) in &needs.pools {
        let name = local_name(service, id);
        let pool_id = create_pool(&cognito, &name, pool).await?;
        for (client_id, (_, client)) in needs.clients.iter().filter(|(_, (of, _))| of == id) {
            let client_name = local_name(service, client_id);
            let created = create_client(&cognito, &pool_id, &client_name, client).await?;
            names.insert(client_id.clone(), created);
        }
        names.insert(id.clone(), pool_id);
    }
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

pub type Seed = BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>>;

fn read_seed(path: &Path) -> anyhow::Result<Seed> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a seed file: a JSON object mapping a table's logical id to a list of items",
            path.display()
        )
    })
}

pub async fn put_seed(
    sdk: &aws_config::SdkConfig,
    service: &str,
    seed: &Seed,
    progress: Progress,
) -> anyhow::Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    for (id, items) in seed {
        let name = local_name(service, id);
        for item in items {
            let item = item
                .iter()
                .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
                .collect::<anyhow::Result<_>>()?;
            dynamodb
                .put_item()
                .table_name(&name)
                .set_item(Some(item))
                .send()
                .await
                .with_context(|| format!("seeding {name}"))?;
        }
        progress.note(&format!("seeded {name} with {} items", items.len()));
    }
    Ok(())
}

/// A JSON value as DynamoDB stores it.
fn attribute(value: &serde_json::Value) -> anyhow::Result<AttributeValue> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => {
            AttributeValue::L(items.iter().map(attribute).collect::<anyhow::Result<_>>()?)
        }
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
    })
}

/// A secret for service tokens, made once per workspace and kept in `target/local`.
fn service_secret(workspace: &Workspace) -> anyhow::Result<String> {
    let path = workspace.target_dir.join("local/service-token-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_owned());
    }
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)
        .context("reading /dev/urandom")?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::artifact::write_atomically(&path, secret.as_bytes())?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(service: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cloudformation")
            .join(format!("{service}-environment.yaml"));
        std::fs::read_to_string(path).unwrap()
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
        assert_eq!(needs.clients["AccessoryClient"].0, "AccessoryUserPool");
        assert_eq!(
            needs.env["FIRMWARE_TABLE"],
            Source::Resource("FirmwareTable".into())
        );
        assert_eq!(
            needs.env["ACCESSORY_CLIENT_ID"],
            Source::Resource("AccessoryClient".into())
        );
        assert_eq!(needs.env["DATABASE_URL"], Source::Database);
        assert_eq!(needs.env["SERVICE_TOKEN_SECRET"], Source::ServiceSecret);
        assert_eq!(needs.env["RUST_LOG"], Source::Literal("info".into()));
        assert_eq!(needs.env["ACCESSORY_TOKEN_ISSUER"], Source::Unset);
    }

    #[test]
    fn every_service_template_can_be_served() {
        for service in ["hardware", "preprocessing", "users", "alerts"] {
            let needs = Needs::of(&template(service)).unwrap_or_else(|e| panic!("{service}: {e}"));
            assert!(!needs.env.is_empty(), "{service}");
        }
        let preprocessing = Needs::of(&template("preprocessing")).unwrap();
        let sessions = &preprocessing.tables["SessionsTable"];
        assert_eq!(
            sessions["GlobalSecondaryIndexes"][0]["IndexName"].as_str(),
            Some("user_id-event_date")
        );
    }

    #[test]
    fn seed_values_become_dynamodb_attributes() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"s": "x", "n": 1.5, "b": true, "l": [1], "m": {"k": null}}"#)
                .unwrap();
        let AttributeValue::M(map) = attribute(&value).unwrap() else {
            panic!("not a map")
        };
        assert_eq!(map["s"], AttributeValue::S("x".into()));
        assert_eq!(map["n"], AttributeValue::N("1.5".into()));
        assert_eq!(map["b"], AttributeValue::Bool(true));
        assert_eq!(
            map["l"],
            AttributeValue::L(vec![AttributeValue::N("1".into())])
        );
        assert_eq!(
            map["m"],
            AttributeValue::M([("k".to_owned(), AttributeValue::Null(true))].into())
        );
    }
}
