//! The hardware binary run the way Lambda runs it: a process polling the Runtime API, fed recorded
//! API Gateway events by the harness that `cargo xtask bench lambda` measures with.

use std::str::FromStr;
use std::time::Duration;

use lambda_harness::{Bootstrap, Error};
use serde_json::Value;

use crate::support::seeded;

const WITHIN: Duration = Duration::from_secs(30);

fn hardware() -> Bootstrap {
    let mut bootstrap =
        Bootstrap::new(env!("CARGO_BIN_EXE_hardware")).function_name("hardware-dev-api");
    // Lambda's environment holds nothing of the host's; the emulator's endpoint and credentials
    // are passed on explicitly, as the template passes table names.
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    ] {
        let value = std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test"));
        bootstrap = bootstrap.env(name, value);
    }
    bootstrap
}

fn event(fixture: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/apigw/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn body(invocation: &lambda_harness::Invocation) -> (u64, Value) {
    let response: Value = serde_json::from_slice(&invocation.response).unwrap();
    let body = response["body"].as_str().expect("a text body");
    (
        response["statusCode"].as_u64().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

#[tokio::test]
async fn the_binary_answers_events_through_the_runtime_api() {
    let stores = seeded().await;
    let pool = hardware::testing::pool().await;
    let mut running = hardware()
        .env("FIRMWARE_TABLE", &stores.table)
        .env("FIRMWARE_BUCKET", &stores.bucket)
        .env("SYNC_TABLE", "sync-unused")
        .env(
            "DATABASE_SECRET_ARN",
            kit::testing::no_database().await.as_str(),
        )
        .env("ACCESSORY_USER_POOL_ID", &pool.id)
        .env("ACCESSORY_CLIENT_ID", &pool.client_id)
        .env(
            "SERVICE_TOKEN_SECRET_ARN",
            kit::testing::service_secret().await.as_str(),
        )
        .start(WITHIN)
        .unwrap_or_else(|e| panic!("{e}"));

    let time = running
        .invoke(&event("misc-time.apis-domain.trailing-slash.json"), WITHIN)
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, time) = body(&time);
    assert_eq!(status, 200, "{time}");
    assert!(time["current_date"].as_str().is_some(), "{time}");

    for _ in 0..2 {
        let latest = running
            .invoke(&event("firmware-latest.service-domain.json"), WITHIN)
            .unwrap_or_else(|e| panic!("{e}"));
        let (status, latest) = body(&latest);
        assert_eq!(status, 200, "{latest}");
        assert_eq!(latest["firmware"]["version"], "1.10", "{latest}");
    }
    // The function holds only the secret's ARN, and reads the value from Secrets Manager: a token
    // signed with it gets past authentication (to a 404 from the pool), another is refused.
    let lookup = |token: &str| {
        let mut event: Value =
            serde_json::from_slice(&event("firmware-latest.service-domain.json")).unwrap();
        event["path"] = "/v1/accessory/0a:1b:2c:3d:4e:5f".into();
        event["resource"] = "/{proxy+}".into();
        event["headers"]["Authorization"] = format!("Bearer {token}").into();
        event["multiValueHeaders"]["Authorization"] =
            serde_json::json!([format!("Bearer {token}")]);
        serde_json::to_vec(&event).unwrap()
    };
    let known = running
        .invoke(
            &lookup(&kit::testing::service_token("tests", "hardware")),
            WITHIN,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, known) = body(&known);
    assert_eq!(status, 404, "{known}");
    let forged = kit::ServiceSecret::from_str("another secret of at least 32 bytes!")
        .unwrap()
        .issue("tests", "hardware", None);
    let forged = running
        .invoke(&lookup(&forged), WITHIN)
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, forged) = body(&forged);
    assert_eq!(status, 401, "{forged}");

    // In Lambda mode every log line is one JSON object, which CloudWatch Logs Insights can query.
    let output = running.output();
    assert!(!output.trim().is_empty(), "the function logged nothing");
    for line in output.lines() {
        let _: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    assert!(running.peak_rss().unwrap() > 0);
}

#[test]
fn without_its_configuration_the_binary_tells_the_runtime_api_what_is_missing() {
    let error = hardware().start(WITHIN).unwrap_err();
    // Reported to /runtime/init/error (as Lambda asks), then printed as it exits.
    let Error::Init { body, output } = &error else {
        panic!("not reported as an init error: {error}")
    };
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["errorType"], "Runtime.ConfigError");
    assert_eq!(
        body["errorMessage"],
        "missing environment variable FIRMWARE_TABLE: the DynamoDB table of released firmware"
    );
    assert!(
        output.contains(
            "error: missing environment variable FIRMWARE_TABLE: the DynamoDB table of released firmware"
        ),
        "{output}"
    );
    assert!(!output.contains("Missing {"), "no debug output: {output}");
}
