//! `cargo xtask lambda-run` (hidden): one invocation of a function's zip, as the local emulator's
//! Lambda `Invoke` runs it (`xtask/emulator.py` calls this binary). The zip is unpacked, its
//! bootstrap started through the project's local Runtime API (`lambda-harness`, the one `up` uses;
//! arm64 under qemu), given the event, and stopped. Stdin is `{"event": …, "environment": {…}}`;
//! stdout is `{"payload": "<the function's answer or Lambda's error document>", "function_error":
//! null | "Unhandled", "log": "<what the function wrote>"}`, Lambda's shapes.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::json;

use crate::local::gateway::RESPONSE_LIMIT;

/// Run one invocation of a function's zip (for the local emulator's Lambda).
#[derive(Debug, clap::Args)]
pub struct LambdaRun {
    /// The function's zip.
    #[arg(long)]
    zip: PathBuf,
    /// The function's name, as Lambda gives it to the runtime.
    #[arg(long)]
    function: String,
    /// The version invoked (`$LATEST`, or a number).
    #[arg(long, default_value = "$LATEST")]
    version: String,
    #[arg(long, default_value_t = 3, value_parser = crate::cli::timeout_seconds())]
    timeout: u64,
    #[arg(long, default_value_t = 128)]
    memory: u32,
}

#[derive(Debug, Deserialize)]
struct Input {
    event: serde_json::Value,
    #[serde(default)]
    environment: std::collections::BTreeMap<String, String>,
}

impl LambdaRun {
    pub fn run(&self) -> anyhow::Result<()> {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the invocation from stdin")?;
        let input: Input = serde_json::from_str(&text).context("the invocation is not JSON")?;
        let zip =
            std::fs::read(&self.zip).with_context(|| format!("reading {}", self.zip.display()))?;
        let scratch = std::env::temp_dir().join("biometrix-lambda-run");
        let (bootstrap, architecture) =
            crate::local::deployed::unpack(&zip, &scratch, &self.function)?;
        let timeout = Duration::from_secs(self.timeout);
        let mut runner = crate::local::gateway::runner(&bootstrap, architecture, false)?
            .function_name(&self.function)
            .memory_mb(self.memory)
            .timeout(timeout);
        for (name, value) in &input.environment {
            runner = runner.env(name, value);
        }
        // The emulator's own endpoint, credentials and region, as a function in it gets them.
        for name in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ] {
            if let Ok(value) = std::env::var(name) {
                runner = runner.env(name, value);
            }
        }
        let answer = match runner.start(Duration::from_secs(30).max(timeout)) {
            Err(error) => failure(
                &error.init_error_type(),
                &error.to_string(),
                error.output().unwrap_or_default(),
            ),
            Ok(mut running) => {
                let event = serde_json::to_vec(&input.event)?;
                let result = running.invoke(&event, timeout);
                let log = running.take_output().join("\n");
                running.stop();
                match result {
                    Ok(invocation) if invocation.response.len() > RESPONSE_LIMIT => failure(
                        "Function.ResponseSizeTooLarge",
                        &format!(
                            "Response payload size ({} bytes) exceeded maximum allowed payload \
                             size ({RESPONSE_LIMIT} bytes).",
                            invocation.response.len()
                        ),
                        &log,
                    ),
                    Ok(invocation) => json!({
                        "payload": String::from_utf8_lossy(&invocation.response),
                        "function_error": null,
                        "log": log,
                    }),
                    Err(lambda_harness::Error::Function { body, .. }) => json!({
                        "payload": body,
                        "function_error": "Unhandled",
                        "log": log,
                    }),
                    Err(lambda_harness::Error::TimedOut { .. }) => failure(
                        "Sandbox.Timedout",
                        &format!("Task timed out after {:.2} seconds", timeout.as_secs_f64()),
                        &log,
                    ),
                    Err(error) => failure("Runtime.ExitError", &error.to_string(), &log),
                }
            }
        };
        println!("{answer}");
        Ok(())
    }
}

/// Lambda's answer for an invocation that did not reach a response: its error document, marked
/// `Unhandled`.
fn failure(error_type: &str, message: &str, log: &str) -> serde_json::Value {
    json!({
        "payload": json!({"errorType": error_type, "errorMessage": message}).to_string(),
        "function_error": "Unhandled",
        "log": log,
    })
}
