//! `cargo xtask invoke <service> <env> <METHOD> <PATH>`: one request to the deployed function, as
//! API Gateway would hand it over: the REST proxy event `up`'s gateway builds (`gate::event`),
//! sent to the function's `live` alias (or `$LATEST`) in AWS, or with `--local` to the deployed zip
//! run here as `up` runs it. Prints the status, headers and body; a 5xx or a function error exits
//! non-zero.

use anyhow::{Context, bail};
use serde::Serialize;

use crate::cli::{Account, Output, Stack};
use crate::environments::StackName;
use crate::local::check;
use crate::progress::{Progress, print_result};
use crate::workspace::Workspace;

/// Send one request to a deployed function, as API Gateway would.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cargo xtask invoke hardware dev GET /v1/misc/time --local\n  \
    cargo xtask invoke alerts qa POST /v1/alerts --data @alert.json --header 'Authorization: Bearer …'\n  \
    cargo xtask invoke users production GET /v1/user/2b8c6e3a-5f0e-4d5b-9a61-1f2d3c4b5a69 --json\n\n\
    The path is the one the service's own domain takes (/v1/...). In AWS the function's live alias is\n\
    invoked (the version API Gateway calls), or $LATEST when it has none; with --local, the zip the\n\
    emulator's stack runs, under qemu for arm64. A 5xx answer or a function error exits non-zero.")]
pub struct Invoke {
    #[command(flatten)]
    stack: Stack,
    /// The HTTP method (GET, POST, ...).
    method: String,
    /// The path on the service's own domain, starting with /v1/.
    path: String,
    /// A JSON body, or @file to read it from a file; sent as application/json.
    #[arg(long, value_name = "JSON|@FILE")]
    data: Option<String>,
    /// A request header as `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Sign a five-minute service token for this service with the deployment's secret (its
    /// SERVICE_TOKEN_SECRET_ARN), and send it as `Authorization: Bearer`.
    #[arg(long)]
    service_token: bool,
    #[command(flatten)]
    account: Account,
    #[command(flatten)]
    output: Output,
}

/// The answer, as printed.
#[derive(Debug, Serialize)]
struct Answered {
    function: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// The body as text (lossy for bytes that are not UTF-8).
    body: String,
}

impl Answered {
    fn text(&self) -> String {
        let mut out = format!("{} {}\n", self.status, self.function);
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\n"));
        }
        out.push('\n');
        out.push_str(&self.body);
        if !self.body.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

impl Invoke {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (service, environment) = self.stack.resolve(workspace)?;
        let mut request = self.request()?;
        let session = self.account.read(workspace, Some(environment), progress)?;
        let aws = &session.aws;
        let declared = service
            .functions
            .first()
            .context("the service declares no function")?;
        let function = StackName::new(&service.name, environment).function(&declared.name);
        if self.service_token {
            let token = aws
                .runtime
                .block_on(service_token(aws, &function, &service.name))?;
            request
                .headers
                .push(("authorization".to_owned(), format!("Bearer {token}")));
        }
        let answer = match &session.emulator {
            Some(emulator) => {
                let (instances, stage, name) = aws.runtime.block_on(check::one_instance(
                    aws,
                    workspace,
                    service,
                    environment,
                    &emulator.endpoint,
                    None,
                    progress,
                ))?;
                let answer = instances.invoke(&event(&request, &stage)?);
                instances.stop();
                (name, answer)
            }
            None => {
                let stage = gate::event::Stage {
                    name: "v1".to_owned(),
                    api_id: "cargo-xtask-invoke".to_owned(),
                    account_id: String::new(),
                    binary_media_types: vec!["application/octet-stream".to_owned()],
                };
                let lambda = aws_sdk_lambda::Client::new(&aws.sdk);
                let invoked = aws.runtime.block_on(crate::aws::lambda::invoke(
                    &lambda,
                    &function,
                    event(&request, &stage)?,
                ))?;
                let function = format!("{function}:{}", invoked.qualifier);
                if let Some(kind) = &invoked.function_error {
                    bail!(
                        "{function} failed ({kind}): {}",
                        String::from_utf8_lossy(&invoked.payload)
                    );
                }
                let answer = gate::event::answer(&invoked.payload)
                    .map_err(|problem| anyhow::anyhow!("{function}: {problem}"))?;
                (function, answer)
            }
        };
        let (function, answer) = answer;
        let answer = Answered {
            function,
            status: answer.status,
            headers: answer.headers,
            body: String::from_utf8_lossy(&answer.body).into_owned(),
        };
        print_result(&answer, self.output.json, Answered::text)?;
        if answer.status >= 500 {
            bail!("{} answered {}", answer.function, answer.status);
        }
        Ok(())
    }

    /// The request, checked before anything is called: method, path, headers and JSON body.
    fn request(&self) -> anyhow::Result<lambda_harness::http::Request> {
        if !gate::probe::is_method(&self.method) {
            bail!(
                "{:?} is not an HTTP method: give one in capitals, like GET or POST",
                self.method
            );
        }
        if !self.path.starts_with('/') {
            bail!(
                "{:?} is not a path: give the one the service's domain takes, like /v1/misc/time",
                self.path
            );
        }
        let mut headers = vec![("host".to_owned(), "cargo-xtask-invoke".to_owned())];
        for header in &self.headers {
            let Some((name, value)) = header.split_once(':') else {
                bail!("--header {header:?} is not `Name: value`");
            };
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                bail!("--header {header:?} has no header name before its colon");
            }
            // RFC 9110: a name is a token; a value holds no control character but a tab.
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if let Some(bad) = name.chars().find(|c| !token(*c)) {
                bail!("--header {header:?}: {bad:?} cannot be in a header name");
            }
            let value = value.trim();
            if value.chars().any(|c| c.is_control() && c != '\t') {
                bail!("--header {header:?}: a header value cannot hold a control character");
            }
            headers.push((name.to_ascii_lowercase(), value.to_owned()));
        }
        let body = match &self.data {
            None => Vec::new(),
            Some(data) => {
                let text = match data.strip_prefix('@') {
                    Some(file) => std::fs::read_to_string(file)
                        .with_context(|| format!("reading --data from {file}"))?,
                    None => data.clone(),
                };
                let json: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|error| anyhow::anyhow!("--data is not JSON: {error}"))?;
                headers.push(("content-type".to_owned(), "application/json".to_owned()));
                json.to_string().into_bytes()
            }
        };
        Ok(lambda_harness::http::Request {
            method: self.method.clone(),
            path: self.path.clone(),
            headers,
            body,
        })
    }
}

/// The REST proxy event that carries `request`, as the local gateway builds it.
fn event(
    request: &lambda_harness::http::Request,
    stage: &gate::event::Stage,
) -> anyhow::Result<Vec<u8>> {
    let event = gate::event::event(request, stage, "cargo-xtask-invoke", "127.0.0.1")
        .map_err(anyhow::Error::msg)?;
    Ok(serde_json::to_vec(&event)?)
}

/// A service token for `audience`, signed as the kit verifies it (HS256, `sub`, `aud`, five
/// minutes, `iss` when the deployment names one), with the secret `function` is given. When the
/// secret cannot be read, says so: the token is never made up.
async fn service_token(
    aws: &crate::aws::Connection,
    function: &str,
    audience: &str,
) -> anyhow::Result<String> {
    let lambda = aws_sdk_lambda::Client::new(&aws.sdk);
    let environment = crate::aws::lambda::environment(&lambda, function).await?;
    let Some(arn) = environment.get("SERVICE_TOKEN_SECRET_ARN") else {
        bail!(
            "cannot sign a service token: {function} is given no SERVICE_TOKEN_SECRET_ARN, so it \
             accepts no service tokens"
        );
    };
    let secret = crate::aws::lambda::secret_text(&aws.sdk, arn)
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot sign a service token: {arn} cannot be read with these credentials \
                 ({error:#}); call without --service-token, or with credentials that may read it"
            )
        })?;
    sign(
        &secret,
        audience,
        environment.get("SERVICE_TOKEN_ISSUER").map(String::as_str),
    )
}

fn sign(secret: &str, audience: &str, issuer: Option<&str>) -> anyhow::Result<String> {
    if secret.len() < 32 {
        bail!(
            "cannot sign a service token: the deployment's secret is under 32 bytes, which the service refuses"
        );
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({
        "sub": "cargo-xtask-invoke", "aud": audience, "iat": now, "exp": now + 300,
    });
    if let Some(issuer) = issuer {
        claims["iss"] = serde_json::Value::from(issuer);
    }
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_tokens_are_what_the_kit_verifies() {
        let secret = "0123456789abcdef0123456789abcdef";
        let token = sign(secret, "users", Some("biometrix")).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["users"]);
        validation.set_issuer(&["biometrix"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "cargo-xtask-invoke");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            300
        );
        assert!(
            sign("short", "users", None)
                .unwrap_err()
                .to_string()
                .contains("under 32 bytes")
        );
    }
}
