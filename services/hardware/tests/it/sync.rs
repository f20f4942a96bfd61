//! A sync: the accessory (in the emulator's Cognito pool), its sensors (in PostgreSQL), the sync
//! log and the firmware index (in the emulator's DynamoDB), all in one request.

use aws_sdk_dynamodb::types::AttributeValue;
use http::Method;
use kit::testing::{call, call_as, database, emulator, table};
use serde_json::json;

use crate::support::{router_with, seeded};

#[tokio::test]
async fn a_sync_stores_everything_and_answers_with_the_latest_firmware() {
    let firmware = seeded().await;
    let pool = hardware::testing::pool().await;
    let url = database().await;
    let table = table("sync", "mac_address", Some("event_date"), &[]).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(emulator().await);
    let tokens = kit::testing::Tokens::serve().await;
    let auth = tokens.auth_config("hardware").await;
    let database = kit::testing::secret(&url).await;
    let router = router_with(|config| {
        config.firmware_table = firmware.table.clone();
        config.firmware_bucket = firmware.bucket.clone();
        config.accessory_pool_id = pool.id.clone();
        config.accessory_client_id = pool.client_id.clone();
        config.database = database;
        config.sync_table = table.clone();
        config.auth = auth;
    })
    .await;
    let mac = "0a:1b:2c:3d:4e:5f";
    let registered = call(&router, Method::POST, &format!("/v1/accessory/{mac}/register"),
        Some(&json!({"password": "correct horse", "hardware_model": "v2", "firmware_version": "1.9", "settings_key": "k"}).to_string())).await;
    assert_eq!(registered.status, 201);

    let body = json!({
        "event_date": "2026-03-01T10:00:00+01:00",
        "accessory": {"firmware_version": "1.10", "battery_level": 0.8, "state": "idle"},
        "sensors": [
            {"mac_address": "aa:bb:cc:dd:ee:01", "battery_level": 0.5},
            {"mac_address": "aa:bb:cc:dd:ee:02", "gyro_offset": [0, 0, 1]},
        ],
    });
    let token = tokens.accessory(mac);
    let answer = call_as(
        &router,
        &token,
        Method::POST,
        &format!("/v1/accessory/{mac}/sync"),
        Some(&body.to_string()),
    )
    .await;
    answer.assert_status(200);
    let answer = answer.json();
    assert_eq!(
        answer["accessory"],
        json!({"mac_address": mac, "hardware_model": "v2", "firmware_version": "1.10", "settings_key": "k", "battery_level": 0.8, "state": "idle"})
    );
    assert_eq!(
        answer["sensors"],
        json!([
            {"mac_address": "aa:bb:cc:dd:ee:01", "battery_level": 0.5},
            {"mac_address": "aa:bb:cc:dd:ee:02", "gyro_offset": [0.0, 0.0, 1.0]},
        ])
    );
    assert_eq!(answer["latest_firmware"]["accessory"]["version"], "1.10");
    assert_eq!(answer["latest_firmware"]["sensor"]["version"], "2.0");

    let row = dynamodb
        .get_item()
        .table_name(&table)
        .key("mac_address", AttributeValue::S(mac.into()))
        .key(
            "event_date",
            AttributeValue::S("2026-03-01T09:00:00Z".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("a sync-log row");
    let report: serde_json::Value = serde_json::from_str(row["report"].as_s().unwrap()).unwrap();
    assert_eq!(report["sensors"], answer["sensors"]);

    let too_many = json!({"event_date": "2026-03-01T10:00:00Z", "accessory": {}, "sensors": [
        {"mac_address": "aa:bb:cc:dd:ee:01"}, {"mac_address": "aa:bb:cc:dd:ee:02"},
        {"mac_address": "aa:bb:cc:dd:ee:03"}, {"mac_address": "aa:bb:cc:dd:ee:04"}]});
    let refused = call_as(
        &router,
        &token,
        Method::POST,
        &format!("/v1/accessory/{mac}/sync"),
        Some(&too_many.to_string()),
    )
    .await;
    assert_eq!(
        refused.assert_error(400, "InvalidSchema"),
        "sensors: expected 0 to 3 sensors, got 4"
    );
    let other = call_as(
        &router,
        &tokens.accessory("aa:aa:aa:aa:aa:aa"),
        Method::POST,
        &format!("/v1/accessory/{mac}/sync"),
        Some(&body.to_string()),
    )
    .await;
    other.assert_error(403, "Forbidden");
    let unknown = call_as(
        &router,
        &kit::testing::service_token("x", "hardware"),
        Method::POST,
        "/v1/accessory/aa:aa:aa:aa:aa:aa/sync",
        Some(&body.to_string()),
    )
    .await;
    unknown.assert_error(404, "NoSuchEntity");
}
