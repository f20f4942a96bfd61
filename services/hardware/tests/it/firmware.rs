//! `GET /firmware/{device_type}/{version}` and its `/download`, on DynamoDB and S3.

use http::{Method, StatusCode};
use serde_json::json;

use kit::testing::{call, get};

use crate::support::{FirmwareStores, accessory_1_10_binary, router_for, seeded};

#[tokio::test]
async fn latest_is_the_numerically_highest_version() {
    let router = seeded().await.router().await;
    let expected = json!({ "firmware": {
        "device_type": "accessory",
        "version": "1.10",
        "created_date": "2026-02-01T09:30:00Z",
        "notes": "fixes pairing",
    }});
    for uri in [
        "/v1/firmware/accessory/latest",
        "/hardware/firmware/accessory/latest",
        "/v1/firmware/accessory/latest/",
    ] {
        let answer = get(&router, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert_eq!(answer.header("content-type"), "application/json");
        assert_eq!(answer.json(), expected, "{uri}");
    }
    let sensor = get(&router, "/v1/firmware/sensor/latest").await;
    assert_eq!(
        sensor.json(),
        json!({ "firmware": { "device_type": "sensor", "version": "2.0", "created_date": "2026-03-01T00:00:00Z" } })
    );
}

#[tokio::test]
async fn an_exact_version_is_found_by_its_numbers() {
    let router = seeded().await.router().await;
    let expected = json!({ "firmware": { "device_type": "accessory", "version": "1.9", "created_date": "2026-01-10T08:00:00Z" } });
    for uri in [
        "/hardware/firmware/accessory/1.9",
        "/v1/firmware/accessory/01.09",
    ] {
        let answer = get(&router, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert_eq!(answer.json(), expected, "{uri}");
    }
}

#[tokio::test]
async fn unknown_and_malformed_versions_are_no_such_entity() {
    let router = seeded().await.router().await;
    let cases = [
        (
            "/v1/firmware/accessory/3.0",
            "there is no accessory firmware version 3.0",
        ),
        (
            "/v1/firmware/sensor/1.10",
            "there is no sensor firmware version 1.10",
        ),
        (
            "/v1/firmware/accessory/1.x",
            "there is no accessory firmware version 1.x",
        ),
        (
            "/v1/firmware/accessory/1",
            "there is no accessory firmware version 1",
        ),
        (
            "/v1/firmware/accessory/LATEST",
            "there is no accessory firmware version LATEST",
        ),
    ];
    for (uri, message) in cases {
        assert_eq!(
            get(&router, uri).await.assert_error(404, "NoSuchEntity"),
            message,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn latest_with_nothing_released_is_no_such_entity() {
    let router = FirmwareStores::create().await.router().await;
    let answer = get(&router, "/v1/firmware/sensor/latest").await;
    assert_eq!(
        answer.assert_error(404, "NoSuchEntity"),
        "no sensor firmware has been released"
    );
}

#[tokio::test]
async fn malformed_items_do_not_break_latest() {
    let stores = FirmwareStores::create().await;
    stores
        .release("accessory", "1.0", "2026-01-01T00:00:00Z", &[])
        .await;
    stores
        .release("accessory", "banana", "2026-01-02T00:00:00Z", &[])
        .await;
    stores.release("accessory", "9.9", "not a date", &[]).await;
    let answer = get(&stores.router().await, "/v1/firmware/accessory/latest").await;
    assert_eq!(answer.json()["firmware"]["version"], "1.0");
}

#[tokio::test]
async fn an_unknown_device_type_is_invalid_schema() {
    let router = seeded().await.router().await;
    for uri in [
        "/v1/firmware/phone/latest",
        "/hardware/firmware/Accessory/1.9/download",
    ] {
        let message = get(&router, uri).await.assert_error(400, "InvalidSchema");
        assert_eq!(
            message, "device_type: expected 'accessory' or 'sensor'",
            "{uri}"
        );
    }
}

#[tokio::test]
async fn download_returns_the_exact_binary() {
    let router = seeded().await.router().await;
    for uri in [
        "/v1/firmware/accessory/1.10/download",
        "/hardware/firmware/accessory/latest/download",
    ] {
        let answer = get(&router, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert_eq!(answer.header("content-type"), "application/octet-stream");
        assert_eq!(answer.header("access-control-allow-origin"), "*");
        assert_eq!(answer.body, accessory_1_10_binary(), "{uri}");
    }
    let older = get(&router, "/v1/firmware/accessory/1.9/download").await;
    assert_eq!(older.body, b"firmware 1.9");
}

#[tokio::test]
async fn download_of_a_missing_release_or_binary_is_no_such_entity() {
    let router = seeded().await.router().await;
    let unknown = get(&router, "/v1/firmware/accessory/7.7/download").await;
    assert_eq!(
        unknown.assert_error(404, "NoSuchEntity"),
        "there is no accessory firmware version 7.7"
    );
    // Released in the index, but its binary was never uploaded.
    let missing = get(&router, "/v1/firmware/sensor/2.0/download").await;
    assert_eq!(
        missing.assert_error(404, "NoSuchEntity"),
        "the binary of sensor firmware 2.0 is missing"
    );
}

#[tokio::test]
async fn firmware_routes_are_read_only() {
    let router = seeded().await.router().await;
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let answer = call(
            &router,
            method.clone(),
            "/v1/firmware/accessory/latest",
            None,
        )
        .await;
        answer.assert_error(405, "UnsupportedMethod");
    }
}

#[tokio::test]
async fn a_store_failure_is_a_500_that_hides_the_cause() {
    let router = router_for("no-such-table-7f3a".into(), "no-such-bucket-7f3a".into()).await;
    let answer = get(&router, "/v1/firmware/accessory/latest").await;
    assert_eq!(
        answer.assert_error(500, "ServerError"),
        "internal server error"
    );
    let body = String::from_utf8(answer.body).unwrap();
    assert!(
        !body.contains("no-such-table") && !body.contains("ResourceNotFound"),
        "{body}"
    );
}
