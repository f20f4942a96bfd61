//! Sensors in a real PostgreSQL database of their own: merge patches, one or many at once.

use http::Method;
use kit::testing::{Answer, Tokens, call_as, database, service_token};
use serde_json::{Value, json};

use crate::support::router_with;

struct World {
    router: axum::Router,
    tokens: Tokens,
    client: tokio_postgres::Client,
}

async fn world() -> World {
    let url = database().await;
    let tokens = Tokens::serve().await;
    let client = kit::testing::connect(&url).await;
    let auth = tokens.auth_config("hardware").await;
    let database = kit::testing::secret(&url).await;
    let router = router_with(|config| {
        config.database = database;
        config.auth = auth;
    })
    .await;
    World {
        router,
        tokens,
        client,
    }
}

async fn patch(world: &World, uri: &str, body: Value) -> Answer {
    call_as(
        &world.router,
        &world.tokens.accessory("0a:1b:2c:3d:4e:5f"),
        Method::PATCH,
        uri,
        Some(&body.to_string()),
    )
    .await
}

async fn stored(world: &World) -> Vec<String> {
    world
        .client
        .query("SELECT mac_address FROM sensors ORDER BY mac_address", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_patch_creates_then_merges() {
    let world = world().await;
    let answer = patch(
        &world,
        "/v1/sensor/AA:BB:CC:DD:EE:01",
        json!({"firmware_version": "2.1", "battery_level": 0.5, "gyro_offset": [0.1, -0.2, 3]}),
    )
    .await;
    answer.assert_status(201);
    assert_eq!(
        answer.json(),
        json!({"sensor": {"mac_address": "aa:bb:cc:dd:ee:01", "firmware_version": "2.1", "battery_level": 0.5, "gyro_offset": [0.1, -0.2, 3.0]}})
    );
    // Absent fields stay, null clears, values replace.
    let answer = patch(
        &world,
        "/hardware/sensor/aa:bb:cc:dd:ee:01",
        json!({"battery_level": null, "memory_level": 0.25}),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["sensor"],
        json!({"mac_address": "aa:bb:cc:dd:ee:01", "firmware_version": "2.1", "memory_level": 0.25, "gyro_offset": [0.1, -0.2, 3.0]})
    );
    let bad = [
        (
            json!({"gyro_offset": [1, 2]}),
            "gyro_offset: expected exactly 3 numbers",
        ),
        (
            json!({"battery_level": -0.1}),
            "battery_level: expected a number from 0 to 1",
        ),
        (
            json!({"firmware_version": "two"}),
            "firmware_version: expected MAJOR.MINOR or MAJOR.MINOR.PATCH",
        ),
        (
            json!({"colour": "red"}),
            "colour: not a field of a sensor (those are firmware_version, battery_level, memory_level, gyro_offset)",
        ),
    ];
    for (body, expected) in bad {
        assert_eq!(
            patch(&world, "/v1/sensor/aa:bb:cc:dd:ee:01", body)
                .await
                .assert_error(400, "InvalidSchema"),
            expected
        );
    }
    let answer = call_as(
        &world.router,
        &world.tokens.user(uuid::Uuid::new_v4()),
        Method::PATCH,
        "/v1/sensor/aa:bb:cc:dd:ee:01",
        Some("{}"),
    )
    .await;
    answer.assert_error(403, "Forbidden");
}

#[tokio::test]
async fn many_sensors_change_in_one_transaction_or_not_at_all() {
    let world = world().await;
    let answer = patch(
        &world,
        "/v1/sensor",
        json!({"sensors": [
            {"mac_address": "aa:bb:cc:dd:ee:01", "battery_level": 1},
            {"mac_address": "AA:BB:CC:DD:EE:02", "memory_level": 0},
        ]}),
    )
    .await;
    answer.assert_status(200);
    assert_eq!(
        answer.json()["sensors"][1],
        json!({"mac_address": "aa:bb:cc:dd:ee:02", "memory_level": 0.0})
    );
    assert_eq!(
        stored(&world).await,
        ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]
    );

    // The database refuses the third: the first two of that request are rolled back with it.
    world.client.batch_execute(
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER refuse BEFORE INSERT ON sensors FOR EACH ROW
           WHEN (NEW.mac_address = 'ff:ff:ff:ff:ff:ff') EXECUTE FUNCTION refuse();",
    ).await.unwrap();
    let answer = patch(
        &world,
        "/v1/sensor",
        json!({"sensors": [
            {"mac_address": "aa:bb:cc:dd:ee:03", "battery_level": 1},
            {"mac_address": "aa:bb:cc:dd:ee:01", "battery_level": 0},
            {"mac_address": "ff:ff:ff:ff:ff:ff", "battery_level": 1},
        ]}),
    )
    .await;
    assert_eq!(
        answer.assert_error(500, "ServerError"),
        "internal server error"
    );
    assert_eq!(
        stored(&world).await,
        ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]
    );
    let level: f64 = world
        .client
        .query_one(
            "SELECT battery_level FROM sensors WHERE mac_address = 'aa:bb:cc:dd:ee:01'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        level, 1.0,
        "the update of a sensor in the failed request was rolled back"
    );

    let bad = [
        (
            json!({"sensors": []}),
            "sensors: expected 1 to 100 sensors, got 0",
        ),
        (
            json!({"sensors": [{"battery_level": 1}]}),
            "sensors[0].mac_address: expected a MAC address",
        ),
        (
            json!({"sensors": [{"mac_address": "aa:bb:cc:dd:ee:09", "battery_level": 2}]}),
            "sensors[0].battery_level: expected a number from 0 to 1",
        ),
        (json!({}), "sensors: expected a list of sensors"),
    ];
    for (body, expected) in bad {
        assert_eq!(
            patch(&world, "/v1/sensor", body)
                .await
                .assert_error(400, "InvalidSchema"),
            expected
        );
    }
    let answer = call_as(
        &world.router,
        &service_token("x", "hardware"),
        Method::PATCH,
        "/v1/sensor",
        Some(&json!({"sensors": [{"mac_address": "aa:bb:cc:dd:ee:04"}]}).to_string()),
    )
    .await;
    assert_eq!(answer.status, 200);
}
