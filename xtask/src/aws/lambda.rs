//! Lambda, as `invoke` calls it: a function's `live` alias when it has one, else `$LATEST`; and
//! what a function is configured with, for the service token `invoke --service-token` signs; and
//! the hash of the code it runs, which deploy and status check against its key.

use anyhow::Context;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_lambda::primitives::Blob;

/// What `Invoke` gave back: Lambda's `FunctionError` (`Unhandled` when the function failed) and
/// the payload, which is the function's response or its error.
#[derive(Debug)]
pub struct Invoked {
    /// The alias or version that ran: `live`, or `$LATEST` for a function without the alias.
    pub qualifier: String,
    pub function_error: Option<String>,
    pub payload: Vec<u8>,
}

/// Invokes `function` with `event`, through its `live` alias if it has one.
pub async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    event: Vec<u8>,
) -> anyhow::Result<Invoked> {
    let alias = lambda
        .get_alias()
        .function_name(function)
        .name("live")
        .send()
        .await;
    let qualifier = match alias {
        Ok(_) => "live",
        Err(error) if error.code() == Some("ResourceNotFoundException") => "$LATEST",
        Err(error) => {
            return Err(anyhow::anyhow!("{}", DisplayErrorContext(&error)))
                .with_context(|| format!("reading the live alias of {function}"));
        }
    };
    let output = lambda
        .invoke()
        .function_name(function)
        .qualifier(qualifier)
        .payload(Blob::new(event))
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{}", DisplayErrorContext(&error)))
        .with_context(|| format!("invoking {function}:{qualifier}"))?;
    Ok(Invoked {
        qualifier: qualifier.to_owned(),
        function_error: output.function_error().map(str::to_owned),
        payload: output
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default(),
    })
}

/// The environment variables `function` is configured with (its `live` alias's when it has one).
pub async fn environment(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut configuration = lambda
        .get_function_configuration()
        .function_name(function)
        .qualifier("live")
        .send()
        .await;
    if let Err(error) = &configuration
        && error.code() == Some("ResourceNotFoundException")
    {
        configuration = lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await;
    }
    let configuration = configuration
        .map_err(|error| anyhow::anyhow!("{}", DisplayErrorContext(&error)))
        .with_context(|| format!("reading the configuration of {function}"))?;
    Ok(configuration
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

/// The `CodeSha256` of the code `function` runs (`$LATEST`, which each stack update sets): Lambda's
/// base64 SHA-256 of the zip it copied; `None` when there is no such function.
pub async fn code_sha256(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> anyhow::Result<Option<String>> {
    let configuration = lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await;
    match configuration {
        Ok(configuration) => Ok(configuration.code_sha256().map(str::to_owned)),
        Err(error) if error.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(error) => Err(anyhow::anyhow!("{}", DisplayErrorContext(&error)))
            .with_context(|| format!("reading the configuration of {function}")),
    }
}

/// A secret's current text, or why it cannot be read.
pub async fn secret_text(sdk: &aws_config::SdkConfig, arn: &str) -> anyhow::Result<String> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let value = secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{}", DisplayErrorContext(&error)))?;
    value
        .secret_string()
        .map(str::to_owned)
        .with_context(|| format!("{arn} holds no text"))
}
