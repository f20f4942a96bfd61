//! The users API through its router, against a real PostgreSQL database of its own.

use http::Method;
use kit::testing::{Tokens, call, call_as, database, service_token};
use serde_json::json;
use uuid::Uuid;

struct World {
    router: axum::Router,
    tokens: Tokens,
    client: tokio_postgres::Client,
}

async fn world() -> World {
    let url = database().await;
    let tokens = Tokens::serve().await;
    let client = kit::testing::connect(&url).await;
    let router = users::router(users::Users::new(
        users::Config {
            database: kit::testing::secret(&url).await,
            auth: tokens.auth_config("users").await,
        },
        kit::testing::emulator().await,
    ));
    World {
        router,
        tokens,
        client,
    }
}

const ATHLETE: Uuid = Uuid::from_u128(0x0b5a_0e1e_7e57_4a11_9f00_0000_0000_0001);
const COACH: Uuid = Uuid::from_u128(0x0b5a_0e1e_7e57_4a11_9f00_0000_0000_0002);
const TEAM: Uuid = Uuid::from_u128(0x7ea0_0000_0000_4000_8000_0000_0000_0001);
const OTHER_TEAM: Uuid = Uuid::from_u128(0x7ea0_0000_0000_4000_8000_0000_0000_0002);
const GROUP_A: Uuid = Uuid::from_u128(0x9900_0000_0000_4000_8000_0000_0000_000a);
const GROUP_B: Uuid = Uuid::from_u128(0x9900_0000_0000_4000_8000_0000_0000_000b);

async fn seed(world: &World) {
    world
        .client
        .batch_execute(&format!(
            "INSERT INTO users (id, role, mass_kg, created_at, updated_at) VALUES
               ('{ATHLETE}', 'athlete', 72.5, '2026-01-02T03:04:05Z', '2026-02-03T04:05:06+02:00'),
               ('{COACH}', 'coach', NULL, '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z');
             INSERT INTO teams_users (team_id, user_id, created_at) VALUES
               ('{OTHER_TEAM}', '{ATHLETE}', '2026-03-01T00:00:00Z'),
               ('{TEAM}', '{ATHLETE}', '2026-01-05T00:00:00Z');
             INSERT INTO training_groups_users (training_group_id, user_id) VALUES
               ('{GROUP_B}', '{ATHLETE}'), ('{GROUP_A}', '{ATHLETE}');"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_user_reads_themself_under_both_prefixes() {
    let world = world().await;
    seed(&world).await;
    let token = world.tokens.user(ATHLETE);
    for prefix in ["/v1", "/users"] {
        let answer = call_as(
            &world.router,
            &token,
            Method::GET,
            &format!("{prefix}/user/{ATHLETE}/"),
            None,
        )
        .await;
        answer.assert_status(200);
        answer.assert_cors();
        assert_eq!(
            answer.json(),
            json!({"user": {
                "user_id": ATHLETE,
                "role": "athlete",
                "created_date": "2026-01-02T03:04:05Z",
                "updated_date": "2026-02-03T02:05:06Z",
                "team_id": TEAM,
                "training_group_ids": [GROUP_A, GROUP_B],
                "mass": {"kg": 72.5, "lb": 159.84},
            }})
        );
    }
}

#[tokio::test]
async fn a_service_reads_anyone_and_absent_facts_are_null() {
    let world = world().await;
    seed(&world).await;
    let answer = call_as(
        &world.router,
        &service_token("alerts", "users"),
        Method::GET,
        &format!("/v1/user/{COACH}"),
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["user"],
        json!({
            "user_id": COACH, "role": "coach",
            "created_date": "2025-01-01T00:00:00Z", "updated_date": "2025-01-01T00:00:00Z",
            "team_id": null, "training_group_ids": [], "mass": null,
        })
    );
}

#[tokio::test]
async fn other_users_and_accessories_are_forbidden() {
    let world = world().await;
    seed(&world).await;
    let uri = format!("/v1/user/{ATHLETE}");
    let answer = call_as(
        &world.router,
        &world.tokens.user(COACH),
        Method::GET,
        &uri,
        None,
    )
    .await;
    assert_eq!(
        answer.assert_error(403, "Forbidden"),
        "a user's token reads only that user"
    );
    let answer = call_as(
        &world.router,
        &world.tokens.accessory("0a:1b:2c:3d:4e:5f"),
        Method::GET,
        &uri,
        None,
    )
    .await;
    answer.assert_error(403, "Forbidden");
}

#[tokio::test]
async fn unknown_malformed_and_unauthenticated_requests() {
    let world = world().await;
    seed(&world).await;
    let stranger = Uuid::new_v4();
    let answer = call_as(
        &world.router,
        &world.tokens.user(stranger),
        Method::GET,
        &format!("/v1/user/{stranger}"),
        None,
    )
    .await;
    assert_eq!(
        answer.assert_error(404, "NoSuchEntity"),
        format!("no user {stranger}")
    );

    let answer = call_as(
        &world.router,
        &service_token("alerts", "users"),
        Method::GET,
        "/v1/user/not-a-uuid",
        None,
    )
    .await;
    let message = answer.assert_error(400, "InvalidSchema");
    assert_eq!(
        message,
        "user_id: `not-a-uuid` is not a UUID, like 2b8c6e3a-5f0e-4d5b-9a61-1f2d3c4b5a69"
    );

    let answer = call(
        &world.router,
        Method::GET,
        &format!("/v1/user/{ATHLETE}"),
        None,
    )
    .await;
    answer.assert_error(401, "Unauthorized");
    let answer = call_as(
        &world.router,
        &world.tokens.user(ATHLETE),
        Method::DELETE,
        &format!("/v1/user/{ATHLETE}"),
        None,
    )
    .await;
    answer.assert_error(405, "UnsupportedMethod");
}

#[tokio::test]
async fn a_database_that_is_down_is_a_500_without_details() {
    let tokens = Tokens::serve().await;
    let router = users::router(users::Users::new(
        users::Config {
            database: kit::testing::no_database().await,
            auth: tokens.auth_config("users").await,
        },
        kit::testing::emulator().await,
    ));
    let answer = call_as(
        &router,
        &service_token("alerts", "users"),
        Method::GET,
        &format!("/v1/user/{ATHLETE}"),
        None,
    )
    .await;
    assert_eq!(
        answer.assert_error(500, "ServerError"),
        "internal server error"
    );
}
