//! A function as it is deployed: what Lambda knows of it (`GetFunction`: its code, environment,
//! memory and timeout as CloudFormation resolved them) and the exact zip its code location names,
//! fetched from the artifact bucket by that key, checked against the SHA-256 in the key and
//! Lambda's `CodeSha256`, and unpacked, with the template its stack runs. Nothing is read from the
//! workspace's templates and nothing is built from source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::release::integrity;
use anyhow::{Context, bail};

use crate::aws::Connection;
use crate::environments::Environment;
use crate::environments::StackName;
use crate::local::provision::{Needs, Source};
use crate::names::Architecture;
use crate::release::artifact::{sha256_hex, unzip_bootstrap};
use crate::release::elf::ElfFacts;
use crate::workspace::Service;

/// One deployed function, as the emulator's Lambda and its stack describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub service: String,
    /// The version it is (what the `live` alias points at), or `$LATEST` without the alias.
    pub version: String,
    /// During a canary or a linear shift: the other version the alias sends a share to.
    pub canary: Option<Canary>,
    /// The environment whose stack runs it: the scope of what a local run provides for it.
    pub stage: Environment,
    /// Lambda's name for it: `<service>-<env>-<function>`.
    pub name: String,
    /// The artifact key of the code Lambda runs: `lambdas/<service>/<function>/<sha256>.zip`.
    pub key: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub environment: BTreeMap<String, String>,
    /// The REST API in front of it (the stack's `RestApiId` output), when the stack has one.
    pub api_id: Option<String>,
    /// The template its stack runs (not the workspace's, which may have moved on): what its
    /// environment is made of, for what a local run fills in.
    pub template: String,
}

/// The alias API Gateway invokes.
const LIVE: &str = "live";

/// The version a `live` alias sends a share of invocations to, and that share in thousandths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub deployed: Box<Deployed>,
    pub permille: u32,
}

impl Deployed {
    /// Every function of `service` in `environment`; an error that says how to deploy when there
    /// is no stack.
    pub async fn read(
        aws: &Connection,
        service: &Service,
        environment: Environment,
    ) -> anyhow::Result<Vec<Deployed>> {
        let stack = StackName::new(&service.name, environment);
        let current = crate::aws::cloudformation::describe(&aws.cloudformation(), &stack)
            .await?
            .with_context(|| {
                format!(
                    "{stack} is not deployed on the emulator: deploy it first with \
                     `cargo xtask deploy {} {environment} --local`",
                    service.name
                )
            })?;
        let template =
            crate::aws::cloudformation::template_body(&aws.cloudformation(), &current.id).await?;
        let lambda = aws_sdk_lambda::Client::new(&aws.sdk);
        let mut functions = Vec::new();
        for function in &service.functions {
            let name = stack.function(&function.name).to_string();
            // What the API invokes: the `live` alias, and during a canary the version it also
            // sends a share to; a function without the alias, as it is.
            let alias = lambda
                .get_alias()
                .function_name(&name)
                .name(LIVE)
                .send()
                .await
                .ok();
            let read = async |qualifier: Option<&str>| {
                let found = lambda
                    .get_function()
                    .function_name(&name)
                    .set_qualifier(qualifier.map(str::to_owned))
                    .send()
                    .await
                    .with_context(|| {
                        format!(
                            "reading function {name}, which stack {stack} should have created: \
                             deploy it again with `cargo xtask deploy {} {environment} --local`",
                            service.name
                        )
                    })?;
                let configuration = found
                    .configuration()
                    .with_context(|| format!("Lambda gave no configuration for {name}"))?;
                let location = found.code().and_then(|c| c.location()).unwrap_or_default();
                let key = code_key(&name, location, configuration.code_sha256())?;
                let variables = configuration
                    .environment()
                    .and_then(|e| e.variables())
                    .map(|variables| {
                        variables
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                anyhow::Ok(Deployed {
                    service: service.name.clone(),
                    stage: environment,
                    name: name.clone(),
                    version: configuration.version().unwrap_or("$LATEST").to_owned(),
                    key,
                    memory_mb: configuration.memory_size().unwrap_or(128).max(128) as u32,
                    timeout_s: configuration.timeout().unwrap_or(3).max(1) as u32,
                    environment: variables,
                    api_id: current.outputs.get("RestApiId").cloned(),
                    template: template.clone(),
                    canary: None,
                })
            };
            let mut deployed = read(alias.as_ref().map(|_| LIVE)).await?;
            let weights = alias
                .as_ref()
                .and_then(|a| a.routing_config())
                .and_then(|r| r.additional_version_weights());
            if let Some((version, weight)) = weights.and_then(|w| w.iter().next()) {
                let other = read(Some(version)).await?;
                deployed.canary = Some(Canary {
                    deployed: Box::new(other),
                    permille: (weight.clamp(0.0, 1.0) * 1000.0).round() as u32,
                });
            }
            functions.push(deployed);
        }
        Ok(functions)
    }

    /// The SHA-256 the key names.
    pub fn sha256(&self) -> anyhow::Result<&str> {
        self.key
            .rsplit('/')
            .next()
            .and_then(|file| file.strip_suffix(".zip"))
            .filter(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .with_context(|| format!("{} is not a content-addressed artifact key", self.key))
    }

    /// Fetches the zip, checks it against its key, and unpacks `bootstrap` into
    /// `<scratch>/<sha256>/` (put in place whole, so instances already running from it are not
    /// disturbed); returns the executable and the architecture its ELF header names. The zip is
    /// fetched every time: a code object gone from the bucket, or bytes changed under their key,
    /// are refused even when an earlier run unpacked them.
    pub async fn fetch(
        &self,
        aws: &Connection,
        scratch: &Path,
    ) -> anyhow::Result<(PathBuf, Architecture)> {
        let sha256 = self.sha256()?;
        let zip = crate::aws::s3::read_object(&aws.s3(), &aws.bucket, &self.key)
            .await?
            .with_context(|| {
                format!(
                    "the code of {} is missing: s3://{}/{} does not exist; publish it again \
                     with `cargo xtask deploy {} <env> --local`",
                    self.name, aws.bucket, self.key, self.service
                )
            })?;
        let actual = sha256_hex(&zip);
        if actual != sha256 {
            bail!(
                "s3://{}/{} holds other bytes than its name says (SHA-256 {actual}); it will \
                 not be run: publish the function again",
                aws.bucket,
                self.key
            );
        }
        unpack(&zip, scratch, &self.name)
    }
}

/// Unpacks `bootstrap` from a function's `zip` into `<scratch>/<sha256 of the zip>/` (put in
/// place whole, so instances already running from it are not disturbed); returns the executable
/// and the architecture its ELF header names.
pub fn unpack(
    zip: &[u8],
    scratch: &Path,
    function: &str,
) -> anyhow::Result<(PathBuf, Architecture)> {
    let bootstrap = scratch.join(sha256_hex(zip)).join("bootstrap");
    unzip_bootstrap(zip, &bootstrap)
        .with_context(|| format!("unpacking {} of {function}", bootstrap.display()))?;
    let facts = ElfFacts::read(&std::fs::read(&bootstrap)?)
        .with_context(|| format!("the bootstrap of {function}"))?;
    let architecture = match facts.machine {
        goblin::elf::header::EM_AARCH64 => Architecture::Arm64,
        goblin::elf::header::EM_X86_64 => Architecture::X86_64,
        other => bail!("the bootstrap of {function} is for machine {other}, not arm64 or x86_64"),
    };
    Ok((bootstrap, architecture))
}

/// The artifact key of the code Lambda runs for `function`: the path of its code location
/// (the emulator's `https://awslambda-<region>-tasks.s3.<region>.amazonaws.com/<key>`), checked
/// against the `CodeSha256` Lambda computed when the code was set, so that the key's name, Lambda's
/// hash and, once fetched, the bytes all agree.
pub fn code_key(
    function: &str,
    location: &str,
    code_sha256: Option<&str>,
) -> anyhow::Result<String> {
    let key = location
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, path)| path.split(['?', '#']).next().unwrap_or_default())
        .filter(|key| key.starts_with("lambdas/") && key.ends_with(".zip"))
        .with_context(|| {
            format!(
                "Lambda's code location for {function} ({location:?}) names no artifact key of \
                 this tool's: was the function's code set by another tool than this one's deploy?"
            )
        })?;
    let named = integrity::named_sha256(key).unwrap_or_default();
    let computed = code_sha256.and_then(integrity::from_base64);
    if computed.as_deref() != Some(named) {
        bail!(
            "{function} runs code whose SHA-256 ({}) is not the one its key {key} names: it will \
             not be run; deploy the function again",
            computed.as_deref().unwrap_or("unknown")
        );
    }
    Ok(key.to_owned())
}

/// Whether a deployed variable holds what CloudFormation would have resolved: the emulator leaves
/// out what refers to a resource it accepts without creating, or keeps its `${…}` inside.
pub fn is_unresolved(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty() || v.contains("${"))
}

/// What this machine has for the variables the emulator could not resolve.
#[derive(Debug, Default)]
pub struct Fill {
    /// The template's user pools and clients as created in the emulator: logical id → id.
    pub pools: BTreeMap<String, String>,
    /// The ARNs of the emulator's database and service-token secrets.
    pub database: Option<String>,
    pub service_secret: Option<String>,
    /// Values for variables the template builds from stack parameters (another API's URL, another
    /// service's token issuer), by name.
    pub values: BTreeMap<String, String>,
}

/// The deployed environment `env` completed where the emulator could not resolve it: each such
/// variable the template fills from a user pool or client gets the one the emulator holds, from
/// the database or service secret their ARNs, one built from stack parameters its value in
/// `fill.values`, and a `${Pool}` inside a URL the pool's id. A key-set URL on Cognito's AWS host
/// is mapped to the emulator's (`endpoint`), whose pools serve their keys there. Returns the
/// variables filled in, by name.
pub fn complete(
    needs: &Needs,
    env: &mut BTreeMap<String, String>,
    fill: &Fill,
    endpoint: &str,
) -> Vec<String> {
    let mut filled = Vec::new();
    for (name, source) in &needs.env {
        if !is_unresolved(env.get(name).map(String::as_str)) {
            continue;
        }
        let value = match source {
            Source::Resource(id) => fill.pools.get(id).cloned(),
            Source::Database => fill.database.clone(),
            Source::ServiceSecret => fill.service_secret.clone(),
            Source::Literal(value) => Some(value.clone()),
            Source::Unset => fill.values.get(name).cloned().or_else(|| {
                env.get(name).map(|text| {
                    let mut text = text.clone();
                    for (id, value) in &fill.pools {
                        text = text.replace(&format!("${{{id}}}"), value);
                    }
                    text
                })
            }),
        };
        let Some(mut value) = value.filter(|v| !is_unresolved(Some(v))) else {
            continue;
        };
        if name.ends_with("_JWKS_URL")
            && let Some(rest) = value.strip_prefix("https://cognito-idp.")
            && let Some((_, path)) = rest.split_once(".amazonaws.com")
        {
            value = format!("{}{path}", endpoint.trim_end_matches('/'));
        }
        env.insert(name.clone(), value);
        filled.push(name.clone());
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(service: &str) -> crate::release::stack::Template {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cloudformation")
            .join(crate::workspace::service_template(service));
        crate::release::stack::Template::read(&path).unwrap()
    }

    #[test]
    fn the_code_is_the_key_its_location_names_when_lambda_agrees() {
        let hash = "cfd958e8e4342c7d81ca8d425298ffa88d0806f5d4401ca2c43440fbd087c337";
        let key = format!("lambdas/hardware/apigateway-execute/{hash}.zip");
        let location =
            format!("https://awslambda-us-west-2-tasks.s3.us-west-2.amazonaws.com/{key}");
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hash[i * 2..i * 2 + 2], 16).unwrap())
            .collect();
        use base64::Engine as _;
        let lambda_hash = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(code_key("f", &location, Some(&lambda_hash)).unwrap(), key);
        assert_eq!(
            code_key(
                "f",
                &format!("{location}?X-Amz-Signature=abc"),
                Some(&lambda_hash)
            )
            .unwrap(),
            key
        );
        let other = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
        let error = code_key("f", &location, Some(&other))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not the one its key"), "{error}");
        let error = code_key("f", "https://example.com/other.zip", Some(&lambda_hash))
            .unwrap_err()
            .to_string();
        assert!(error.contains("names no artifact key"), "{error}");
    }

    #[test]
    fn variables_built_from_parameters_take_the_values_given() {
        let needs = Needs::of(&template("preprocessing")).unwrap();
        let mut env: BTreeMap<String, String> = [
            ("SESSIONS_TABLE", "t"),
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true"),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let fill = Fill {
            values: BTreeMap::from([
                (
                    "HARDWARE_API_URL".to_owned(),
                    "http://127.0.0.1:3001/v1".to_owned(),
                ),
                ("NOT_IN_THE_TEMPLATE".to_owned(), "x".to_owned()),
            ]),
            ..Fill::default()
        };
        let filled = complete(&needs, &mut env, &fill, "http://127.0.0.1:5000");
        assert_eq!(filled, ["HARDWARE_API_URL"]);
        assert_eq!(env["HARDWARE_API_URL"], "http://127.0.0.1:3001/v1");
        assert!(
            !env.contains_key("NOT_IN_THE_TEMPLATE"),
            "only the template's variables"
        );
    }

    #[test]
    fn what_the_emulator_leaves_unresolved_is_filled_in() {
        let needs = Needs::of(&template("hardware")).unwrap();
        let mut env: BTreeMap<String, String> = [
            ("FIRMWARE_TABLE", "hardware-dev-firmware"),
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true"),
            ("RUST_LOG", "info"),
            ("DATABASE_SECRET_ARN", ""),
            (
                "ACCESSORY_JWKS_URL",
                "https://cognito-idp.us-west-2.amazonaws.com/${AccessoryUserPool}/.well-known/jwks.json",
            ),
            (
                "ACCESSORY_TOKEN_ISSUER",
                "https://cognito-idp.us-west-2.amazonaws.com/${AccessoryUserPool}",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let pools = BTreeMap::from([
            ("AccessoryUserPool".to_owned(), "us-west-2_local".to_owned()),
            ("AccessoryClient".to_owned(), "client".to_owned()),
        ]);
        let fill = Fill {
            pools,
            database: Some("arn:db".to_owned()),
            service_secret: None,
            values: BTreeMap::from([(
                "HARDWARE_API_URL".to_owned(),
                "http://127.0.0.1:3000/v1".to_owned(),
            )]),
        };
        let filled = complete(&needs, &mut env, &fill, "http://127.0.0.1:5000");
        assert_eq!(
            filled,
            [
                "ACCESSORY_CLIENT_ID",
                "ACCESSORY_JWKS_URL",
                "ACCESSORY_TOKEN_ISSUER",
                "ACCESSORY_USER_POOL_ID",
                "DATABASE_SECRET_ARN"
            ]
        );
        assert_eq!(
            env["FIRMWARE_TABLE"], "hardware-dev-firmware",
            "resolved: kept"
        );
        assert_eq!(env["ACCESSORY_USER_POOL_ID"], "us-west-2_local");
        assert_eq!(env["DATABASE_SECRET_ARN"], "arn:db");
        // The issuer stays the one the pool's tokens name; its keys come from the emulator.
        assert_eq!(
            env["ACCESSORY_TOKEN_ISSUER"],
            "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_local"
        );
        assert_eq!(
            env["ACCESSORY_JWKS_URL"],
            "http://127.0.0.1:5000/us-west-2_local/.well-known/jwks.json"
        );
        assert!(
            !env.contains_key("SERVICE_TOKEN_SECRET_ARN"),
            "no secret to give"
        );
    }
}
