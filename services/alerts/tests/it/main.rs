//! The alerts API through its router, against a table of its own in the AWS emulator.

use http::Method;
use kit::testing::{Answer, Tokens, call_as, emulator, service_token, table};
use serde_json::{Value, json};
use uuid::Uuid;

struct World {
    router: axum::Router,
    tokens: Tokens,
}

async fn world() -> World {
    let sdk = emulator().await;
    let table = table("alerts", "user_id", Some("event_key"), &[]).await;
    let tokens = Tokens::serve().await;
    let router = alerts::router(alerts::Alerts::new(
        alerts::Config {
            alerts_table: table,
            auth: tokens.auth_config("alerts").await,
        },
        sdk,
    ));
    World { router, tokens }
}

fn alert(user: Uuid, day: u32, value: f64) -> Value {
    json!({
        "user_id": user, "category": "training", "subcategory": "load",
        "granularity": "day", "value": value,
        "event_date": format!("2026-03-{day:02}T10:00:00+02:00"),
    })
}

async fn post(world: &World, token: &str, body: &Value) -> Answer {
    call_as(
        &world.router,
        token,
        Method::POST,
        "/v1/alerts",
        Some(&body.to_string()),
    )
    .await
}

async fn list(world: &World, token: &str, user: Uuid, query: &str) -> Answer {
    call_as(
        &world.router,
        token,
        Method::GET,
        &format!("/alerts/alerts/{user}?{query}"),
        None,
    )
    .await
}

#[tokio::test]
async fn a_hundred_alerts_are_stored_and_read_back_newest_first_page_by_page() {
    let world = world().await;
    let user = Uuid::new_v4();
    // 100 alerts in one call: four batches of DynamoDB's 25.
    let alerts: Vec<Value> = (0..100)
        .map(|i| alert(user, 1 + i % 28, f64::from(i)))
        .collect();
    let answer = post(
        &world,
        &service_token("pipeline", "alerts"),
        &json!({ "alerts": alerts }),
    )
    .await;
    answer.assert_status(201);
    answer.assert_cors();
    assert_eq!(answer.json(), json!({"stored": 100}));

    // The user reads them 30 at a time, newest first, across every page.
    let token = world.tokens.user(user);
    let mut seen = Vec::new();
    let mut query =
        "start_date=2026-03-01T00:00:00Z&end_date=2026-03-31T00:00:00Z&limit=30".to_owned();
    loop {
        let answer = list(&world, &token, user, &query).await;
        answer.assert_status(200);
        let page = answer.json();
        let alerts = page["alerts"].as_array().unwrap().clone();
        assert!(alerts.len() <= 30);
        seen.extend(alerts);
        match page["next"].as_str() {
            Some(next) => {
                query = format!(
                    "start_date=2026-03-01T00:00:00Z&end_date=2026-03-31T00:00:00Z&limit=30&next={next}"
                )
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 100);
    let dates: Vec<&str> = seen
        .iter()
        .map(|a| a["event_date"].as_str().unwrap())
        .collect();
    let mut newest_first = dates.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, newest_first);
    assert_eq!(dates[0], "2026-03-28T08:00:00Z", "stored in UTC");
    let first = &seen[0];
    assert_eq!(first["user_id"], json!(user));
    assert_eq!(first["category"], "training");
    assert!(first["alert_id"].as_str().unwrap().parse::<Uuid>().is_ok());
    let mut ids: Vec<&str> = seen
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100, "every alert once");
}

#[tokio::test]
async fn the_range_bounds_what_is_listed() {
    let world = world().await;
    let user = Uuid::new_v4();
    let alerts: Vec<Value> = (1..=10).map(|day| alert(user, day, 1.0)).collect();
    post(
        &world,
        &service_token("pipeline", "alerts"),
        &json!({ "alerts": alerts }),
    )
    .await;
    let answer = list(
        &world,
        &service_token("app-backend", "alerts"),
        user,
        "start_date=2026-03-03T08:00:00Z&end_date=2026-03-05T08:00:00Z",
    )
    .await;
    let dates: Vec<String> = answer.json()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["event_date"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        dates,
        [
            "2026-03-05T08:00:00Z",
            "2026-03-04T08:00:00Z",
            "2026-03-03T08:00:00Z"
        ]
    );
    assert_eq!(answer.json()["next"], Value::Null);
}

#[tokio::test]
async fn only_services_store_and_only_the_user_or_a_service_reads() {
    let world = world().await;
    let user = Uuid::new_v4();
    let body = json!({ "alerts": [alert(user, 1, 1.0)] });
    let answer = post(&world, &world.tokens.user(user), &body).await;
    answer.assert_error(403, "Forbidden");
    let answer = post(&world, &world.tokens.accessory("0a:1b:2c:3d:4e:5f"), &body).await;
    answer.assert_error(403, "Forbidden");
    let answer = post(&world, "not a token", &body).await;
    answer.assert_error(401, "Unauthorized");

    let query = "start_date=2026-03-01T00:00:00Z&end_date=2026-03-31T00:00:00Z";
    let answer = list(&world, &world.tokens.user(Uuid::new_v4()), user, query).await;
    answer.assert_error(403, "Forbidden");
    let answer = list(&world, &world.tokens.user(user), user, query).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn malformed_requests_name_what_is_wrong() {
    let world = world().await;
    let service = service_token("pipeline", "alerts");
    let user = Uuid::new_v4();
    let many: Vec<Value> = (0..101).map(|_| alert(user, 1, 1.0)).collect();
    let cases = [
        (
            json!({ "alerts": [] }),
            "alerts: expected 1 to 100 alerts, got 0",
        ),
        (
            json!({ "alerts": many }),
            "alerts: expected 1 to 100 alerts, got 101",
        ),
        (
            json!({ "alerts": [{"user_id": "nope", "category": "a", "subcategory": "b", "granularity": "c", "value": 1, "event_date": "2026-03-01T00:00:00Z"}] }),
            "alerts[0].user_id: UUID parsing failed: invalid character: found `n` at 0",
        ),
        (
            json!({ "alerts": [{"user_id": user, "category": "", "subcategory": "b", "granularity": "c", "value": 1, "event_date": "2026-03-01T00:00:00Z"}] }),
            "alerts[0].category: expected 1 to 256 characters, got 0",
        ),
        (
            json!({ "alerts": [{"user_id": user, "category": "a", "subcategory": "b", "granularity": "c", "event_date": "2026-03-01T00:00:00Z"}] }),
            "alerts[0]: missing field `value`",
        ),
        // Valid JSON numbers the store cannot hold: refused before anything is stored.
        (
            json!({ "alerts": [alert(user, 1, 1.0), alert(user, 2, 1e300)] }),
            "alerts[1].value: outside what the store holds: 0, or a magnitude from 1e-130 to 9.99e125",
        ),
        (
            json!({ "alerts": [alert(user, 1, 1e-200)] }),
            "alerts[0].value: outside what the store holds: 0, or a magnitude from 1e-130 to 9.99e125",
        ),
        (
            json!({ "alerts": [alert(user, 1, -1.5e200)] }),
            "alerts[0].value: outside what the store holds: 0, or a magnitude from 1e-130 to 9.99e125",
        ),
    ];
    for (body, expected) in cases {
        let answer = post(&world, &service, &body).await;
        assert_eq!(answer.assert_error(400, "InvalidSchema"), expected);
    }
    // Not even the storable alerts of a refused request were stored.
    let stored = list(
        &world,
        &service,
        user,
        "start_date=2026-03-01T00:00:00Z&end_date=2026-03-31T00:00:00Z",
    )
    .await;
    assert_eq!(stored.json()["alerts"], json!([]));

    let bad_queries = [
        (
            "end_date=2026-03-31T00:00:00Z",
            "invalid query string: missing field `start_date`",
        ),
        (
            "start_date=2026-04-01T00:00:00Z&end_date=2026-03-31T00:00:00Z",
            "start_date: must not be after end_date",
        ),
        (
            "start_date=2026-03-01T00:00:00Z&end_date=2026-03-31T00:00:00Z&limit=0",
            "limit: expected 1 to 100, got 0",
        ),
        (
            "start_date=2026-03-01T00:00:00Z&end_date=2026-03-31T00:00:00Z&next=garbage",
            "next: not a cursor of this user's alerts",
        ),
    ];
    for (query, expected) in bad_queries {
        let answer = list(&world, &service, user, query).await;
        assert_eq!(
            answer.assert_error(400, "InvalidSchema"),
            expected,
            "{query}"
        );
    }
}

#[tokio::test]
async fn a_store_that_refuses_writes_is_a_500_with_the_count_stored() {
    let tokens = Tokens::serve().await;
    let router = alerts::router(alerts::Alerts::new(
        alerts::Config {
            alerts_table: "no-such-table".into(),
            auth: tokens.auth_config("alerts").await,
        },
        emulator().await,
    ));
    let user = Uuid::new_v4();
    let answer = call_as(
        &router,
        &service_token("pipeline", "alerts"),
        Method::POST,
        "/v1/alerts",
        Some(&json!({ "alerts": [alert(user, 1, 1.0)] }).to_string()),
    )
    .await;
    let message = answer.assert_error(500, "ServerError");
    assert!(message.starts_with("stored 0 of 1 alerts"), "{message}");
    assert!(
        !message.contains("ResourceNotFound"),
        "no SDK text: {message}"
    );
}
