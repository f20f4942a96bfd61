//! Accessories in a real (emulated) Cognito user pool: register, log in, and call with the token
//! the pool issued, verified through the kit's JWKS path.

use axum::Router;
use http::Method;
use kit::testing::{Answer, Tokens, call, call_as, service_token};
use kit::{IssuerConfig, IssuerKind};
use serde_json::{Value, json};
use uuid::Uuid;

use hardware::testing::{Pool, pool, strict_pool};

use crate::support::router_with;

const MAC: &str = "0A:1B:2C:3D:4E:5F";
const MAC_LOWER: &str = "0a:1b:2c:3d:4e:5f";

pub struct World {
    pub router: Router,
    pub tokens: Tokens,
}

/// The hardware router on `pool`, accepting the pool's own tokens as accessory tokens (and the
/// test issuer's).
pub async fn world(pool: &Pool) -> World {
    let tokens = Tokens::serve().await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let mut auth = tokens.auth_config("hardware").await;
    auth.issuers.push(IssuerConfig {
        kind: IssuerKind::Accessory,
        issuer: format!("https://cognito-idp.us-west-2.amazonaws.com/{}", pool.id),
        jwks_url: format!("{endpoint}/{}/.well-known/jwks.json", pool.id),
        audience: None,
        refetch_cooldown: std::time::Duration::ZERO,
        failure_backoff: std::time::Duration::ZERO,
    });
    let router = router_with(|config| {
        config.accessory_pool_id = pool.id.clone();
        config.accessory_client_id = pool.client_id.clone();
        config.auth = auth;
    })
    .await;
    World { router, tokens }
}

fn registration() -> Value {
    json!({"password": "correct horse", "hardware_model": "v2", "firmware_version": "1.10", "settings_key": "k1"})
}

pub async fn register(world: &World, mac: &str) -> Answer {
    call(
        &world.router,
        Method::POST,
        &format!("/v1/accessory/{mac}/register"),
        Some(&registration().to_string()),
    )
    .await
}

pub async fn login(world: &World, mac: &str, password: &str) -> Answer {
    call(
        &world.router,
        Method::POST,
        &format!("/hardware/accessory/{mac}/login"),
        Some(&json!({ "password": password }).to_string()),
    )
    .await
}

#[tokio::test]
async fn register_login_and_call_with_the_pools_own_token() {
    let pool = pool().await;
    let world = world(&pool).await;
    let answer = register(&world, MAC).await;
    answer.assert_status(201);
    assert_eq!(answer.json(), json!({"status": "success"}));

    // The first login meets the pool's new-password challenge and answers it.
    let answer = login(&world, MAC, "correct horse").await;
    answer.assert_status(200);
    let body = answer.json();
    assert_eq!(body["mac_address"], MAC_LOWER);
    let jwt = body["authorization"]["jwt"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> = body["authorization"]["expires"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(expires > chrono::Utc::now());
    // A second login has no challenge left.
    assert_eq!(login(&world, MAC, "correct horse").await.status, 200);

    // The pool's ID token, verified through its JWKS, names the accessory.
    let answer = call_as(
        &world.router,
        &jwt,
        Method::GET,
        &format!("/v1/accessory/{MAC}"),
        None,
    )
    .await;
    answer.assert_status(200);
    assert_eq!(
        answer.json(),
        json!({"accessory": {"mac_address": MAC_LOWER, "hardware_model": "v2", "firmware_version": "1.10", "settings_key": "k1"}})
    );
    let answer = call_as(
        &world.router,
        &format!("Bearer {jwt}"),
        Method::GET,
        "/v1/accessory/aa:bb:cc:dd:ee:ff",
        None,
    )
    .await;
    answer.assert_error(404, "NoSuchEntity");
}

#[tokio::test]
async fn a_password_the_pool_refuses_registers_nothing() {
    let pool = strict_pool().await;
    let world = world(&pool).await;
    // The contract allows it; this pool's policy (upper case, digits, symbols) does not.
    let answer = register(&world, MAC).await;
    assert_eq!(
        answer.assert_error(400, "InvalidSchema"),
        "password: not accepted by the accessory pool's policy (8 to 256 characters, no leading or \
         trailing spaces)"
    );
    // Nothing half-made is left: the same accessory registers with a password the pool takes,
    // and logs in with it at once.
    let strong = json!({"password": "Correct-Horse-1", "hardware_model": "v2", "firmware_version": "1.10", "settings_key": "k1"});
    call(
        &world.router,
        Method::POST,
        &format!("/v1/accessory/{MAC}/register"),
        Some(&strong.to_string()),
    )
    .await
    .assert_status(201);
    login(&world, MAC, "Correct-Horse-1")
        .await
        .assert_status(200);

    let cognito = aws_sdk_cognitoidentityprovider::Client::new(kit::testing::emulator().await);
    let user = cognito
        .admin_get_user()
        .user_pool_id(&pool.id)
        .username(MAC_LOWER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        user.user_status().map(|s| s.as_str()),
        Some("CONFIRMED"),
        "the password is permanent from registration on"
    );
}

#[tokio::test]
async fn a_password_over_256_characters_is_refused_before_the_pool_sees_it() {
    let world = world(&pool().await).await;
    let long = json!({"password": "x".repeat(257), "hardware_model": "v2", "firmware_version": "1.10", "settings_key": "k1"});
    let answer = call(
        &world.router,
        Method::POST,
        &format!("/v1/accessory/{MAC}/register"),
        Some(&long.to_string()),
    )
    .await;
    assert_eq!(
        answer.assert_error(400, "InvalidSchema"),
        "password: expected at most 256 characters"
    );
}

#[tokio::test]
async fn registration_and_login_failures() {
    let pool = pool().await;
    let world = world(&pool).await;
    register(&world, MAC).await;
    let answer = register(&world, MAC_LOWER).await;
    assert_eq!(
        answer.assert_error(409, "DuplicateEntity"),
        format!("accessory {MAC_LOWER} is registered already")
    );
    assert_eq!(
        login(&world, MAC, "wrong horse")
            .await
            .assert_error(401, "Unauthorized"),
        "wrong password"
    );
    assert_eq!(
        login(&world, "aa:bb:cc:dd:ee:ff", "correct horse")
            .await
            .assert_error(404, "NoSuchEntity"),
        "no accessory aa:bb:cc:dd:ee:ff"
    );
    let bad = [
        (
            json!({"password": "short", "hardware_model": "v2", "firmware_version": "1.0", "settings_key": "k"}),
            "password: expected at least 8 characters",
        ),
        (
            json!({"password": " spaced out", "hardware_model": "v2", "firmware_version": "1.0", "settings_key": "k"}),
            "password: must not begin or end with a space",
        ),
        (
            json!({"password": "long enough", "hardware_model": "", "firmware_version": "1.0", "settings_key": "k"}),
            "hardware_model: expected 1 to 256 characters, got 0",
        ),
        (
            json!({"password": "long enough", "hardware_model": "v2", "firmware_version": "one", "settings_key": "k"}),
            "firmware_version: expected MAJOR.MINOR or MAJOR.MINOR.PATCH",
        ),
        (
            json!({"password": "long enough", "hardware_model": "v2", "firmware_version": "1.0"}),
            "body: missing field `settings_key`",
        ),
    ];
    for (body, expected) in bad {
        let answer = call(
            &world.router,
            Method::POST,
            "/v1/accessory/aa:bb:cc:dd:ee:01/register",
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(answer.assert_error(400, "InvalidSchema"), expected);
    }
    let answer = call(
        &world.router,
        Method::POST,
        "/v1/accessory/not-a-mac/register",
        Some(&registration().to_string()),
    )
    .await;
    assert_eq!(
        answer.assert_error(400, "InvalidSchema"),
        "mac: `not-a-mac` is not a MAC address: six two-digit hex groups joined by ':', like \
         0a:1b:2c:3d:4e:5f"
    );
}

#[tokio::test]
async fn a_merge_patch_sets_and_removes_fields() {
    let pool = pool().await;
    let world = world(&pool).await;
    register(&world, MAC).await;
    let owner = Uuid::new_v4();
    let service = service_token("fuzz", "hardware");
    let patch = |body: Value, token: String| {
        let router = world.router.clone();
        async move {
            call_as(
                &router,
                &token,
                Method::PATCH,
                &format!("/v1/accessory/{MAC}"),
                Some(&body.to_string()),
            )
            .await
        }
    };
    let answer = patch(
        json!({"battery_level": 0.5, "memory_level": 1, "state": "charging", "owner_id": owner, "bluetooth_name": "band"}),
        world.tokens.accessory(MAC_LOWER),
    )
    .await;
    answer.assert_status(200);
    assert_eq!(
        answer.json()["accessory"],
        json!({"mac_address": MAC_LOWER, "hardware_model": "v2", "firmware_version": "1.10", "settings_key": "k1",
               "battery_level": 0.5, "memory_level": 1.0, "state": "charging", "owner_id": owner, "bluetooth_name": "band"})
    );
    let answer = patch(
        json!({"state": null, "firmware_version": "1.11"}),
        service.clone(),
    )
    .await;
    let accessory = &answer.json()["accessory"];
    assert_eq!(accessory.get("state"), None, "null removes: {accessory}");
    assert_eq!(accessory["firmware_version"], "1.11");

    // Its owner may read it; another user may not; nobody else may patch it.
    let uri = format!("/v1/accessory/{MAC}");
    assert_eq!(
        call_as(
            &world.router,
            &world.tokens.user(owner),
            Method::GET,
            &uri,
            None
        )
        .await
        .status,
        200
    );
    call_as(
        &world.router,
        &world.tokens.user(Uuid::new_v4()),
        Method::GET,
        &uri,
        None,
    )
    .await
    .assert_error(403, "Forbidden");
    patch(json!({"state": "x"}), world.tokens.user(owner))
        .await
        .assert_error(403, "Forbidden");
    patch(
        json!({"state": "x"}),
        world.tokens.accessory("aa:bb:cc:dd:ee:ff"),
    )
    .await
    .assert_error(403, "Forbidden");

    let bad = [
        (
            json!({"battery_level": 1.5}),
            "battery_level: expected a number from 0 to 1",
        ),
        (json!({"owner_id": "nobody"}), "owner_id: expected a UUID"),
        (
            json!({"hardware_model": "v3"}),
            "hardware_model: not a field that can be changed (those are firmware_version, bluetooth_name, battery_level, memory_level, state, settings_key, owner_id)",
        ),
        (
            json!({"state": ""}),
            "state: expected a string of 1 to 256 characters",
        ),
    ];
    for (body, expected) in bad {
        assert_eq!(
            patch(body, service.clone())
                .await
                .assert_error(400, "InvalidSchema"),
            expected
        );
    }
    patch(json!({"state": "x"}), String::new())
        .await
        .assert_error(401, "Unauthorized");
}
