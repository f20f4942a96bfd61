//! Every byte the release tool deploys matches the SHA-256 its key names. Keys are
//! content-addressed (`lambdas/<service>/<function>/<sha256>.zip`,
//! `cloudformation/<service>/<sha256>/<file>`), but the bucket does not enforce that: anyone who
//! may write to it can put other bytes, and other metadata, under a key. So what is in the bucket
//! is judged by S3's own SHA-256 checksum where S3 keeps one (S3 computes and verifies it when the
//! object is written, so the writer cannot forge it), and otherwise by downloading and hashing the
//! bytes. Metadata, which the writer sets, is never trusted. What runs is judged by Lambda's
//! `CodeSha256`, the hash of the zip Lambda copied when the function was updated.

use anyhow::{Context as _, bail};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::artifact::hex;

/// The SHA-256 a key names, in hex; `None` for a key that names none.
pub fn named_sha256(key: &str) -> Option<&str> {
    let is_hash = |s: &&str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if key.starts_with("lambdas/") {
        return key
            .rsplit('/')
            .next()
            .and_then(|file| file.strip_suffix(".zip"))
            .filter(is_hash);
    }
    if key.starts_with("cloudformation/") {
        return key.split('/').nth(2).filter(is_hash);
    }
    None
}

/// A hex SHA-256 as Lambda reports a zip's `CodeSha256`: base64 of the digest's bytes.
pub fn lambda_code_sha256(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lambda's (or S3's) base64 SHA-256, in hex; `None` when it is not one.
pub fn from_base64(checksum: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(checksum)
        .ok()?;
    (bytes.len() == 32).then(|| hex(&bytes))
}

/// What is stored at a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Hex SHA-256 of the bytes: S3's checksum, or the bytes hashed here.
    pub sha256: String,
    /// The object's version in a versioned bucket; `None` where the bucket is not versioned.
    pub version_id: Option<String>,
    /// The writer's metadata (commit, profile, …): its word only, to believe once `sha256` is
    /// what the key names.
    pub metadata: std::collections::HashMap<String, String>,
}

/// What S3 stores at `key`, hashed as this module says; `None` when there is nothing.
pub async fn stored(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<Stored>> {
    let Some(head) = crate::aws::s3::head_object(s3, bucket, key).await? else {
        return Ok(None);
    };
    let version_id = head
        .version_id()
        .filter(|v| *v != "null")
        .map(str::to_owned);
    let metadata = head.metadata().cloned().unwrap_or_default();
    // A multipart object's checksum ends in `-<parts>`: a checksum of checksums, not of the bytes.
    let checksum = head
        .checksum_sha256()
        .filter(|c| !c.contains('-'))
        .and_then(from_base64);
    if let Some(sha256) = checksum {
        return Ok(Some(Stored {
            sha256,
            version_id,
            metadata,
        }));
    }
    let mut get = s3.get_object().bucket(bucket).key(key);
    if let Some(version) = &version_id {
        get = get.version_id(version);
    }
    let mut body = get
        .send()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key} to hash it"))?
        .body;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key} to hash it"))?
    {
        hasher.update(&chunk);
    }
    Ok(Some(Stored {
        sha256: hex(&hasher.finalize()),
        version_id,
        metadata,
    }))
}

/// What is stored at `key`, once it is proven to be what the key names; an error that says what
/// is there otherwise. `then` says what to do about it.
pub async fn verify(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    then: &str,
) -> anyhow::Result<Stored> {
    let named = named_sha256(key)
        .with_context(|| format!("{key} is not named by a SHA-256, so it cannot be checked"))?;
    let Some(found) = stored(s3, bucket, key).await? else {
        bail!("s3://{bucket}/{key} does not exist. {then}");
    };
    if found.sha256 != named {
        bail!(
            "s3://{bucket}/{key} holds bytes whose SHA-256 is {}, not the {named} its key names: \
             it was overwritten by something other than this tool. {then}",
            found.sha256
        );
    }
    Ok(found)
}

/// Fails unless `bytes`, read from `key`, are what the key names.
pub fn check_bytes(bucket: &str, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let named = named_sha256(key)
        .with_context(|| format!("{key} is not named by a SHA-256, so it cannot be checked"))?;
    let actual = hex(&Sha256::digest(bytes));
    if actual != named {
        bail!(
            "s3://{bucket}/{key} holds bytes whose SHA-256 is {actual}, not the {named} its key \
             names: it was overwritten by something other than this tool; nothing was changed"
        );
    }
    Ok(())
}

/// The build profile stamped into the zip at `key` (at `version`, where the bucket keeps versions),
/// read from bytes proven to be the key's: never from the object's metadata. `None` when the zip
/// carries no stamp.
pub async fn stamped_profile(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> anyhow::Result<Option<crate::environments::Profile>> {
    let mut get = s3.get_object().bucket(bucket).key(key);
    if let Some(version) = version {
        get = get.version_id(version);
    }
    let bytes = get
        .send()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
        .into_bytes();
    check_bytes(bucket, key, &bytes)?;
    Ok(super::artifact::stamped_profile(&bytes))
}

/// Fails unless `key` is an artifact of `function` of `service`, stored under `parameter`:
/// `lambdas/<service>/<function>/<sha256>.zip`. A history entry is the bucket's word, so each key
/// it names is checked against the stack it is deployed to before it is.
pub fn check_artifact_key(
    service: &str,
    functions: &[&str],
    parameter: &str,
    key: &str,
) -> anyhow::Result<()> {
    let parts: Vec<&str> = key.split('/').collect();
    let belongs = matches!(parts.as_slice(), ["lambdas", owner, function, _]
        if *owner == service
            && functions.contains(function)
            && super::manifest::artifact_key_parameter(function) == parameter)
        && named_sha256(key).is_some();
    if !belongs {
        bail!(
            "{parameter}={key} is not an artifact of {service}'s function for that parameter              (lambdas/{service}/<function>/<sha256>.zip, functions {}): the release names              another service's code, so it is refused; nothing was changed",
            functions.join(", ")
        );
    }
    Ok(())
}

/// Fails unless `key` is `file` of `service`'s templates: `cloudformation/<service>/<sha256>/<file>`.
pub fn check_template_key(service: &str, file: &str, key: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = key.split('/').collect();
    let belongs = matches!(parts.as_slice(), ["cloudformation", owner, _, name]
        if *owner == service && *name == file)
        && named_sha256(key).is_some();
    if !belongs {
        bail!(
            "{key} is not {service}'s {file} (cloudformation/{service}/<sha256>/{file}): the              release names another template, so it is refused; nothing was changed"
        );
    }
    Ok(())
}

/// Fails unless Lambda runs, as `function`, the zip `key` names: `code_sha256` is its
/// `CodeSha256`. `status` is the command that shows the stack, for the advice.
pub fn check_running(
    function: &str,
    key: &str,
    code_sha256: Option<&str>,
    status: &str,
) -> anyhow::Result<()> {
    let named = named_sha256(key).unwrap_or_default();
    let running = code_sha256.and_then(from_base64);
    if running.as_deref() != Some(named) {
        bail!(
            "{function} runs code whose SHA-256 is {}, but its stack deployed {key}, which names \
             {named}: what runs is not what was released. See it with {status}, and deploy again",
            running.as_deref().unwrap_or("unknown")
        );
    }
    Ok(())
}

/// A template a stack runs (as `GetTemplate` returns it), and the key it was deployed from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunningTemplate {
    pub stack: String,
    pub key: String,
    /// Hex SHA-256 of the template the stack runs.
    pub sha256: String,
}

impl RunningTemplate {
    /// True when the stack runs the bytes its key names.
    pub fn matches(&self) -> bool {
        named_sha256(&self.key) == Some(self.sha256.as_str())
    }

    /// What differs, in a sentence.
    pub fn mismatch(&self) -> String {
        format!(
            "stack {} runs a template whose SHA-256 is {}, not the {} its key {} names",
            self.stack,
            self.sha256,
            named_sha256(&self.key).unwrap_or("nothing"),
            self.key
        )
    }
}

/// The templates the stack `stack_id` and its nested API stack (found among `resources`, the
/// stack's as listed) run, each with the key it was deployed from (`template_key` for the stack,
/// `apigateway_key` for the nested one; a `None` key is not looked at).
pub async fn running_templates(
    cloudformation: &aws_sdk_cloudformation::Client,
    stack_id: &str,
    resources: &[crate::aws::cloudformation::Resource],
    template_key: Option<&str>,
    apigateway_key: Option<&str>,
) -> anyhow::Result<Vec<RunningTemplate>> {
    use crate::aws::cloudformation::{NESTED_STACK, template_body};
    let mut running = Vec::new();
    let mut judge = async |stack: &str, key: &str| -> anyhow::Result<()> {
        let body = template_body(cloudformation, stack).await?;
        running.push(RunningTemplate {
            stack: crate::aws::cloudformation::stack_name_of(stack).to_owned(),
            key: key.to_owned(),
            sha256: hex(&Sha256::digest(body.as_bytes())),
        });
        Ok(())
    };
    if let Some(key) = template_key {
        judge(stack_id, key).await?;
    }
    if let Some(key) = apigateway_key {
        let nested = resources
            .iter()
            .find(|r| r.kind == NESTED_STACK)
            .with_context(|| format!("stack {stack_id} has no nested API stack"))?;
        judge(&nested.physical_id, key).await?;
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_running_template_matches_only_the_bytes_its_key_names() {
        let template = RunningTemplate {
            stack: "hardware-dev".into(),
            key: format!("cloudformation/hardware/{EMPTY}/hardware-environment.yaml"),
            sha256: EMPTY.into(),
        };
        assert!(template.matches());
        let other = RunningTemplate {
            sha256: "0".repeat(64),
            ..template
        };
        assert!(!other.matches());
        assert_eq!(
            other.mismatch(),
            format!(
                "stack hardware-dev runs a template whose SHA-256 is {}, not the {EMPTY} its key \
                 cloudformation/hardware/{EMPTY}/hardware-environment.yaml names",
                "0".repeat(64)
            )
        );
    }

    #[test]
    fn keys_name_their_hashes() {
        let zip = format!("lambdas/hardware/apigateway-execute/{EMPTY}.zip");
        assert_eq!(named_sha256(&zip), Some(EMPTY));
        let template = format!("cloudformation/hardware/{EMPTY}/apigateway.yaml");
        assert_eq!(named_sha256(&template), Some(EMPTY));
        for other in [
            "lambdas/hardware/x/abc.zip",
            "deployments/hardware-dev.json",
            "cloudformation/x",
        ] {
            assert_eq!(named_sha256(other), None, "{other}");
        }
    }

    #[test]
    fn keys_are_checked_against_the_service_and_function_they_are_for() {
        let functions = ["apigateway-execute", "pre-traffic"];
        let parameter = "ApigatewayExecuteArtifactKey";
        let own = format!("lambdas/hardware/apigateway-execute/{EMPTY}.zip");
        check_artifact_key("hardware", &functions, parameter, &own).unwrap();
        for forged in [
            format!("lambdas/users/apigateway-execute/{EMPTY}.zip"),
            format!("lambdas/hardware/pre-traffic/{EMPTY}.zip"),
            format!("lambdas/hardware/other/{EMPTY}.zip"),
            "lambdas/hardware/apigateway-execute/abc.zip".to_owned(),
            format!("lambdas/hardware/apigateway-execute/x/{EMPTY}.zip"),
        ] {
            let error = check_artifact_key("hardware", &functions, parameter, &forged);
            assert!(
                error.unwrap_err().to_string().contains("is refused"),
                "{forged}"
            );
        }
        let template = format!("cloudformation/hardware/{EMPTY}/apigateway.yaml");
        check_template_key("hardware", "apigateway.yaml", &template).unwrap();
        let other = format!("cloudformation/users/{EMPTY}/apigateway.yaml");
        assert!(check_template_key("hardware", "apigateway.yaml", &other).is_err());
        assert!(check_template_key("hardware", "users-environment.yaml", &template).is_err());
    }

    #[test]
    fn hashes_are_passed_and_read_as_lambda_spells_them() {
        // The SHA-256 of the empty string, in both spellings.
        let base64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(lambda_code_sha256(EMPTY), base64);
        assert_eq!(from_base64(base64).as_deref(), Some(EMPTY));
        assert_eq!(from_base64("not base64"), None);
    }

    #[test]
    fn bytes_and_running_code_are_checked_against_their_key() {
        let template = format!("cloudformation/hardware/{EMPTY}/apigateway.yaml");
        check_bytes("b", &template, b"").unwrap();
        let error = check_bytes("b", &template, b"tampered")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("overwritten by something other than this tool"),
            "{error}"
        );

        let zip = format!("lambdas/hardware/apigateway-execute/{EMPTY}.zip");
        check_running(
            "f",
            &zip,
            Some("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
            "`cargo xtask status`",
        )
        .unwrap();
        let error = check_running(
            "f",
            &zip,
            Some("AAAA"),
            "`cargo xtask status s dev --local`",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("what runs is not what was released")
                && error.contains("See it with `cargo xtask status s dev --local`, and deploy"),
            "{error}"
        );
        assert!(check_running("f", &zip, None, "").is_err());
    }
}
