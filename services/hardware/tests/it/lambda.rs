//! Recorded API Gateway events through the same conversion Lambda runs, both domains, with a stage.

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::{Value, json};

use crate::support::{accessory_1_10_binary, seeded};

/// A recorded event, as JSON.
fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/apigw/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Feeds a fixture event to the Lambda handler and returns the response as API Gateway reads it.
async fn invoke(router: &Router, name: &str) -> Value {
    invoke_event(router, fixture(name)).await
}

async fn invoke_event(router: &Router, event: Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event).unwrap();
    let event = LambdaEvent::new(request, Context::default());
    let response = kit::lambda_handler(router.clone())
        .call(event)
        .await
        .unwrap();
    serde_json::to_value(response).unwrap()
}

/// A response header as API Gateway sees it; REST proxy responses carry them in `multiValueHeaders`.
fn header<'a>(response: &'a Value, name: &str) -> &'a str {
    let headers = response["multiValueHeaders"]
        .as_object()
        .expect("multiValueHeaders");
    let values = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.as_array())
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"));
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values[0].as_str().unwrap()
}

fn json_body(response: &Value) -> Value {
    assert_eq!(response["isBase64Encoded"], false, "{response}");
    serde_json::from_str(response["body"].as_str().expect("a text body")).unwrap()
}

#[tokio::test]
async fn both_domains_reach_latest_firmware_and_the_stage_stays_out_of_routing() {
    let router = seeded().await.router().await;
    let expected = json!({ "firmware": {
        "device_type": "accessory", "version": "1.10",
        "created_date": "2026-02-01T09:30:00Z", "notes": "fixes pairing",
    }});
    for fixture in [
        "firmware-latest.service-domain.json",
        "firmware-latest.apis-domain.json",
    ] {
        let response = invoke(&router, fixture).await;
        assert_eq!(response["statusCode"], 200, "{fixture}: {response}");
        assert_eq!(header(&response, "content-type"), "application/json");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        assert_eq!(json_body(&response), expected, "{fixture}");
    }
}

#[tokio::test]
async fn the_binary_route_answers_base64() {
    let router = seeded().await.router().await;
    let response = invoke(&router, "firmware-download.service-domain.json").await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["isBase64Encoded"], true);
    assert_eq!(
        header(&response, "content-type"),
        "application/octet-stream"
    );
    let body = response["body"].as_str().unwrap();
    assert_eq!(base64_decode(body), accessory_1_10_binary());
}

#[tokio::test]
async fn a_trailing_slash_on_the_apis_domain_still_routes() {
    let router = seeded().await.router().await;
    let response = invoke(&router, "misc-time.apis-domain.trailing-slash.json").await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert!(
        json_body(&response)["current_date"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

#[tokio::test]
async fn errors_keep_the_contract_through_lambda() {
    let router = seeded().await.router().await;
    let cases = [
        (
            "unknown-endpoint.service-domain.json",
            404,
            "UnknownEndpoint",
            "no such endpoint",
        ),
        (
            "firmware-bad-device.service-domain.json",
            400,
            "InvalidSchema",
            "device_type: expected 'accessory' or 'sensor'",
        ),
    ];
    for (fixture, status, name, message) in cases {
        let response = invoke(&router, fixture).await;
        assert_eq!(response["statusCode"], status, "{fixture}: {response}");
        assert_eq!(header(&response, "status"), name);
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        assert_eq!(json_body(&response), json!({ "message": message }));
    }
}

#[tokio::test]
async fn a_decoded_question_mark_or_hash_in_the_path_is_part_of_the_path() {
    // API Gateway hands over the path decoded: `/v1/misc/time%3Fx` arrives as `/v1/misc/time?x`.
    let router = seeded().await.router().await;
    for path in [
        "/v1/misc/time?x",
        "/v1/misc/time#x",
        "/v1/misc/time%",
        "/v1/misc/%3F",
    ] {
        let mut event = fixture("misc-time.apis-domain.trailing-slash.json");
        event["path"] = json!(path);
        event["pathParameters"]["proxy"] = json!(path.trim_start_matches('/'));
        let response = invoke_event(&router, event).await;
        assert_eq!(response["statusCode"], 404, "{path}: {response}");
        assert_eq!(header(&response, "status"), "UnknownEndpoint", "{path}");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
    }
}

#[tokio::test]
async fn an_invalid_host_header_still_gets_the_contract_answer() {
    let router = seeded().await.router().await;
    for host in ["bad host", "a@b", "[::1", "x:port", ""] {
        let mut event = fixture("misc-time.apis-domain.trailing-slash.json");
        event["headers"]["Host"] = json!(host);
        event["multiValueHeaders"]["Host"] = json!([host]);
        event["requestContext"]["domainName"] = json!(host);
        let response = invoke_event(&router, event).await;
        assert_eq!(response["statusCode"], 200, "{host:?}: {response}");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        assert!(json_body(&response)["current_date"].is_string());
    }
}

#[tokio::test]
async fn options_preflight_answers_with_cors() {
    let router = seeded().await.router().await;
    let response = invoke(&router, "options.apis-domain.json").await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT"
    );
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        "Content-Type,Authorization,X-Amz-Date,X-Api-Key,X-Amz-Security-Token"
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("the body is base64")
}
