//! Token verification against a real JWKS endpoint served on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kit::testing::SERVICE_SECRET;
use kit::{ApiError, AuthConfig, IssuerConfig, IssuerKind, MacAddress, Principal, Verifier};
use serde_json::{Value, json};
use uuid::Uuid;

const ACCESSORY_ISSUER: &str = "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_accessory";
const USER_ISSUER: &str = "https://users.biometrix.test";

struct Key {
    kid: &'static str,
    encoding: EncodingKey,
}

fn key(kid: &'static str, der: &[u8]) -> Key {
    Key {
        kid,
        encoding: EncodingKey::from_rsa_der(der),
    }
}

fn first() -> Key {
    key("first", include_bytes!("keys/first.der"))
}

fn second() -> Key {
    key("second", include_bytes!("keys/second.der"))
}

fn jwk(key: &Key) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&key.encoding, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(key.kid.to_owned());
    jwk
}

/// A JWKS endpoint whose key set the test can change, counting how often it is fetched.
#[derive(Clone)]
struct Jwks {
    set: Arc<Mutex<JwkSet>>,
    fetches: Arc<AtomicUsize>,
    /// While set, the endpoint answers 500.
    failing: Arc<std::sync::atomic::AtomicBool>,
    url: String,
}

impl Jwks {
    async fn serve(keys: &[&Key]) -> Jwks {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let jwks = Jwks {
            set: Arc::new(Mutex::new(JwkSet {
                keys: keys.iter().map(|k| jwk(k)).collect(),
            })),
            fetches: Arc::default(),
            failing: Arc::default(),
            url,
        };
        let app = Router::new()
            .route(
                "/.well-known/jwks.json",
                get(|State(jwks): State<Jwks>| async move {
                    use axum::response::IntoResponse;
                    jwks.fetches.fetch_add(1, Ordering::SeqCst);
                    if jwks.failing.load(Ordering::SeqCst) {
                        return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    let set = jwks.set.lock().unwrap().clone();
                    axum::Json(set).into_response()
                }),
            )
            .with_state(jwks.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        jwks
    }

    fn publish(&self, key: &Key) {
        self.set.lock().unwrap().keys.push(jwk(key));
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn issuer(kind: IssuerKind, issuer: &str, jwks: &Jwks, audience: Option<&str>) -> IssuerConfig {
    IssuerConfig {
        kind,
        issuer: issuer.to_owned(),
        jwks_url: jwks.url.clone(),
        audience: audience.map(str::to_owned),
        refetch_cooldown: Duration::ZERO,
        failure_backoff: Duration::ZERO,
    }
}

async fn verifier(jwks: &Jwks) -> Verifier {
    Verifier::new(
        AuthConfig {
            issuers: vec![
                issuer(IssuerKind::Accessory, ACCESSORY_ISSUER, jwks, None),
                issuer(IssuerKind::User, USER_ISSUER, jwks, Some("mobile-app")),
            ],
            service_secret: Some(kit::testing::service_secret().await),
            service_issuer: None,
            service_audience: Some("hardware".into()),
        },
        &kit::testing::secrets().await,
    )
}

fn in_an_hour() -> i64 {
    chrono_now() + 3600
}

fn chrono_now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn rs256(key: &Key, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

fn hs256(secret: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn accessory_claims() -> Value {
    json!({ "iss": ACCESSORY_ISSUER, "exp": in_an_hour(), "cognito:username": "0A:1B:2C:3D:4E:5F", "token_use": "id" })
}

fn rejection(result: Result<Principal, ApiError>) -> String {
    match result {
        Err(ApiError::Unauthorized(message)) => message,
        other => panic!("expected a 401, got {other:?}"),
    }
}

fn mac() -> MacAddress {
    "0a:1b:2c:3d:4e:5f".parse().unwrap()
}

#[tokio::test]
async fn valid_tokens_of_each_kind_are_accepted() {
    let jwks = Jwks::serve(&[&first()]).await;
    let verifier = verifier(&jwks).await;

    let accessory = rs256(&first(), accessory_claims());
    assert_eq!(
        verifier.verify(&accessory).await.unwrap(),
        Principal::Accessory(mac())
    );
    // The scheme is case-insensitive (RFC 7235).
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        assert_eq!(
            verifier
                .verify(&format!("{scheme} {accessory}"))
                .await
                .unwrap(),
            Principal::Accessory(mac()),
            "{scheme}"
        );
    }

    let access_token = rs256(
        &first(),
        json!({ "iss": ACCESSORY_ISSUER, "exp": in_an_hour(), "username": "0a:1b:2c:3d:4e:5f", "token_use": "access" }),
    );
    assert_eq!(
        verifier.verify(&access_token).await.unwrap(),
        Principal::Accessory(mac())
    );

    let user = Uuid::new_v4();
    let user_token = rs256(
        &first(),
        json!({ "iss": USER_ISSUER, "aud": "mobile-app", "exp": in_an_hour(), "sub": format!("us-west-2:{user}"), "token_use": "id" }),
    );
    assert_eq!(
        verifier.verify(&user_token).await.unwrap(),
        Principal::User(user)
    );

    let service = hs256(
        SERVICE_SECRET.as_bytes(),
        json!({ "exp": in_an_hour(), "sub": "preprocessing", "aud": "hardware" }),
    );
    assert_eq!(
        verifier.verify(&service).await.unwrap(),
        Principal::Service {
            subject: "preprocessing".into()
        }
    );
    assert_eq!(jwks.fetches(), 2, "each issuer fetched its keys once");
    verifier.verify(&accessory).await.unwrap();
    verifier.verify(&user_token).await.unwrap();
    assert_eq!(jwks.fetches(), 2, "and then serves them from its cache");
}

#[tokio::test]
async fn an_expired_token_is_rejected() {
    let jwks = Jwks::serve(&[&first()]).await;
    let mut claims = accessory_claims();
    claims["exp"] = json!(chrono_now() - 3600);
    let message = rejection(verifier(&jwks).await.verify(&rs256(&first(), claims)).await);
    assert_eq!(message, "the token has expired");

    let service = hs256(
        SERVICE_SECRET.as_bytes(),
        json!({ "exp": chrono_now() - 3600, "aud": "hardware" }),
    );
    assert_eq!(
        rejection(verifier(&jwks).await.verify(&service).await),
        "the token has expired"
    );
}

#[tokio::test]
async fn a_token_without_expiry_is_rejected() {
    let jwks = Jwks::serve(&[&first()]).await;
    let token = rs256(
        &first(),
        json!({ "iss": ACCESSORY_ISSUER, "cognito:username": "0a:1b:2c:3d:4e:5f" }),
    );
    assert_eq!(
        rejection(verifier(&jwks).await.verify(&token).await),
        "the token lacks the required claim `exp`"
    );
}

#[tokio::test]
async fn a_service_token_works_only_on_the_service_it_names() {
    let jwks = Jwks::serve(&[&first()]).await;
    let hardware = verifier(&jwks).await;
    let secret: kit::ServiceSecret = SERVICE_SECRET.parse().unwrap();
    let for_hardware = secret.issue("preprocessing", "hardware", None);
    assert_eq!(
        hardware.verify(&for_hardware).await.unwrap(),
        Principal::Service {
            subject: "preprocessing".into()
        }
    );
    let for_users = secret.issue("preprocessing", "users", None);
    assert_eq!(
        rejection(hardware.verify(&for_users).await),
        "the token's audience is not accepted"
    );
    let for_nobody = hs256(
        SERVICE_SECRET.as_bytes(),
        json!({ "exp": in_an_hour(), "sub": "preprocessing" }),
    );
    assert_eq!(
        rejection(hardware.verify(&for_nobody).await),
        "the token lacks the required claim `aud`"
    );
    // A service that names no audience of its own takes no service token at all.
    let anonymous = Verifier::new(
        AuthConfig {
            service_secret: Some(kit::testing::service_secret().await),
            ..AuthConfig::default()
        },
        &kit::testing::secrets().await,
    );
    assert_eq!(
        rejection(anonymous.verify(&for_hardware).await),
        "service tokens are not accepted here"
    );
}

#[tokio::test]
async fn only_id_and_access_tokens_are_accepted() {
    let jwks = Jwks::serve(&[&first()]).await;
    let verifier = verifier(&jwks).await;
    for token_use in [None, Some("refresh"), Some("ID")] {
        let mut claims = accessory_claims();
        match token_use {
            Some(token_use) => claims["token_use"] = json!(token_use),
            None => {
                claims.as_object_mut().unwrap().remove("token_use");
            }
        }
        assert_eq!(
            rejection(verifier.verify(&rs256(&first(), claims)).await),
            "the token is neither an ID nor an access token",
            "{token_use:?}"
        );
    }
    // An access token names its accessory in `username`, not `cognito:username`.
    let mut claims = accessory_claims();
    claims["token_use"] = json!("access");
    assert_eq!(
        rejection(verifier.verify(&rs256(&first(), claims)).await),
        "the token names no accessory"
    );
}

#[tokio::test]
async fn a_wrong_issuer_is_rejected() {
    let jwks = Jwks::serve(&[&first()]).await;
    let mut claims = accessory_claims();
    claims["iss"] = json!("https://cognito-idp.us-west-2.amazonaws.com/us-west-2_someoneelse");
    assert_eq!(
        rejection(verifier(&jwks).await.verify(&rs256(&first(), claims)).await),
        "the token's issuer is not accepted"
    );
    assert_eq!(
        jwks.fetches(),
        0,
        "no keys are fetched for an issuer we do not trust"
    );
}

#[tokio::test]
async fn a_wrong_audience_is_rejected_where_one_is_configured() {
    let jwks = Jwks::serve(&[&first()]).await;
    let token = rs256(
        &first(),
        json!({ "iss": USER_ISSUER, "aud": "someone-else", "exp": in_an_hour(), "sub": Uuid::new_v4() }),
    );
    assert_eq!(
        rejection(verifier(&jwks).await.verify(&token).await),
        "the token's audience is not accepted"
    );
}

#[tokio::test]
async fn a_token_signed_by_the_wrong_key_is_rejected() {
    let jwks = Jwks::serve(&[&first()]).await;
    // Signed with the second key, but claiming to be signed with the first.
    let forged = Key {
        kid: "first",
        encoding: second().encoding,
    };
    assert_eq!(
        rejection(
            verifier(&jwks)
                .await
                .verify(&rs256(&forged, accessory_claims()))
                .await
        ),
        "the token's signature does not verify"
    );
    let tampered = {
        let token = rs256(&first(), accessory_claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = accessory_claims();
        claims["cognito:username"] = json!("ff:ff:ff:ff:ff:ff");
        parts[1] = base64url(&claims.to_string());
        parts.join(".")
    };
    assert_eq!(
        rejection(verifier(&jwks).await.verify(&tampered).await),
        "the token's signature does not verify"
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_once_then_rejects() {
    let jwks = Jwks::serve(&[&first()]).await;
    let verifier = verifier(&jwks).await;
    verifier
        .verify(&rs256(&first(), accessory_claims()))
        .await
        .unwrap();
    assert_eq!(jwks.fetches(), 1);

    let stranger = Key {
        kid: "stranger",
        encoding: second().encoding,
    };
    assert_eq!(
        rejection(verifier.verify(&rs256(&stranger, accessory_claims())).await),
        "the token is signed with an unknown key"
    );
    assert_eq!(jwks.fetches(), 2, "an unknown kid triggers one refetch");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_refetching() {
    let jwks = Jwks::serve(&[&first()]).await;
    let verifier = verifier(&jwks).await;
    verifier
        .verify(&rs256(&first(), accessory_claims()))
        .await
        .unwrap();

    jwks.publish(&second());
    assert_eq!(
        verifier
            .verify(&rs256(&second(), accessory_claims()))
            .await
            .unwrap(),
        Principal::Accessory(mac())
    );
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn unknown_kids_cannot_force_a_fetch_per_request() {
    let jwks = Jwks::serve(&[&first()]).await;
    let mut config = issuer(IssuerKind::Accessory, ACCESSORY_ISSUER, &jwks, None);
    config.refetch_cooldown = Duration::from_secs(3600);
    let verifier = Verifier::new(
        AuthConfig {
            issuers: vec![config],
            ..AuthConfig::default()
        },
        &kit::testing::secrets().await,
    );
    verifier
        .verify(&rs256(&first(), accessory_claims()))
        .await
        .unwrap();
    for n in 0..5 {
        let stranger = Key {
            kid: if n % 2 == 0 { "a" } else { "b" },
            encoding: second().encoding,
        };
        rejection(verifier.verify(&rs256(&stranger, accessory_claims())).await);
    }
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let jwks = Jwks::serve(&[&first()]).await;
    let header = base64url(r#"{"alg":"none","typ":"JWT"}"#);
    let claims = base64url(&accessory_claims().to_string());
    for token in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
        assert_eq!(
            rejection(verifier(&jwks).await.verify(&token).await),
            "malformed token"
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_rejected() {
    let jwks = Jwks::serve(&[&first()]).await;
    // The classic confusion attack: use the (public) RSA key material as an HMAC secret.
    let public = serde_json::to_vec(&jwk(&first())).unwrap();
    let forged = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("first".into());
        jsonwebtoken::encode(
            &header,
            &accessory_claims(),
            &EncodingKey::from_secret(&public),
        )
        .unwrap()
    };
    assert_eq!(
        rejection(verifier(&jwks).await.verify(&forged).await),
        "the token's signature does not verify"
    );

    let without_service_tokens = Verifier::new(
        AuthConfig {
            issuers: vec![issuer(IssuerKind::Accessory, ACCESSORY_ISSUER, &jwks, None)],
            ..AuthConfig::default()
        },
        &kit::testing::secrets().await,
    );
    assert_eq!(
        rejection(without_service_tokens.verify(&forged).await),
        "service tokens are not accepted here"
    );
}

#[tokio::test]
async fn other_algorithms_and_garbage_are_rejected() {
    let jwks = Jwks::serve(&[&first()]).await;
    let verifier = verifier(&jwks).await;
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &json!({ "exp": in_an_hour() }),
        &EncodingKey::from_secret(SERVICE_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        rejection(verifier.verify(&hs512).await),
        "tokens signed with HS512 are not accepted"
    );
    for garbage in ["", "Bearer ", "abc", "a.b.c", "Bearer a.b"] {
        rejection(verifier.verify(garbage).await);
    }
}

#[tokio::test]
async fn a_failing_key_endpoint_is_fetched_once_per_backoff_not_once_per_request() {
    let jwks = Jwks::serve(&[&first()]).await;
    jwks.failing.store(true, Ordering::SeqCst);
    let mut config = issuer(IssuerKind::Accessory, ACCESSORY_ISSUER, &jwks, None);
    config.failure_backoff = Duration::from_secs(5);
    let verifier = Arc::new(Verifier::new(
        AuthConfig {
            issuers: vec![config],
            ..AuthConfig::default()
        },
        &kit::testing::secrets().await,
    ));
    // 200 tokens with made-up key ids, all at once.
    let started = std::time::Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..200 {
        let verifier = Arc::clone(&verifier);
        let kid: &'static str = Box::leak(format!("random-{n}").into_boxed_str());
        let token = rs256(
            &Key {
                kid,
                encoding: first().encoding,
            },
            accessory_claims(),
        );
        requests.spawn(async move { verifier.verify(&token).await });
    }
    while let Some(result) = requests.join_next().await {
        let result = result.unwrap();
        assert!(matches!(result, Err(ApiError::Internal(_))), "{result:?}");
    }
    assert_eq!(jwks.fetches(), 1, "one fetch for 200 requests");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nobody waited out the backoff: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_failure_backoff_doubles_and_ends_when_the_endpoint_recovers() {
    let jwks = Jwks::serve(&[&first()]).await;
    jwks.failing.store(true, Ordering::SeqCst);
    let mut config = issuer(IssuerKind::Accessory, ACCESSORY_ISSUER, &jwks, None);
    config.failure_backoff = Duration::from_millis(200);
    let verifier = Verifier::new(
        AuthConfig {
            issuers: vec![config],
            ..AuthConfig::default()
        },
        &kit::testing::secrets().await,
    );
    let token = rs256(&first(), accessory_claims());
    let attempt = || async { verifier.verify(&token).await };
    assert!(attempt().await.is_err());
    assert!(attempt().await.is_err());
    assert_eq!(jwks.fetches(), 1, "within the first 200 ms backoff");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(attempt().await.is_err());
    assert_eq!(jwks.fetches(), 2, "the first backoff is over");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(attempt().await.is_err());
    assert_eq!(jwks.fetches(), 2, "the second backoff is 400 ms");
    jwks.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(attempt().await.unwrap(), Principal::Accessory(mac()));
    assert_eq!(jwks.fetches(), 3);
    assert_eq!(kit::LONGEST_FAILURE_BACKOFF, Duration::from_secs(60));
}

#[tokio::test]
async fn an_unreachable_jwks_endpoint_is_a_server_error_not_a_rejection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let verifier = Verifier::new(
        AuthConfig {
            issuers: vec![IssuerConfig {
                kind: IssuerKind::Accessory,
                issuer: ACCESSORY_ISSUER.into(),
                jwks_url: url,
                audience: None,
                refetch_cooldown: Duration::ZERO,
                failure_backoff: Duration::ZERO,
            }],
            ..AuthConfig::default()
        },
        &kit::testing::secrets().await,
    );
    let result = verifier.verify(&rs256(&first(), accessory_claims())).await;
    assert!(matches!(result, Err(ApiError::Internal(_))), "{result:?}");
}

#[test]
fn config_comes_in_pairs_and_needs_at_least_one_issuer() {
    use kit::Env;
    let error = AuthConfig::from_env(&Env::default(), "hardware").unwrap_err();
    assert!(
        error.to_string().contains("no token issuer is configured"),
        "{error}"
    );

    let half = Env::from_iter([("ACCESSORY_TOKEN_ISSUER", ACCESSORY_ISSUER)]);
    assert_eq!(
        AuthConfig::from_env(&half, "hardware")
            .unwrap_err()
            .to_string(),
        "missing environment variable ACCESSORY_JWKS_URL: ACCESSORY_TOKEN_ISSUER is set, and the two go together"
    );

    let value = Env::from_iter([("SERVICE_TOKEN_SECRET_ARN", SERVICE_SECRET)]);
    let error = AuthConfig::from_env(&value, "hardware")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("malformed environment variable SERVICE_TOKEN_SECRET_ARN: "),
        "{error}"
    );
    assert!(error.contains("is not a secret's ARN"), "{error}");

    let full = Env::from_iter([
        ("ACCESSORY_TOKEN_ISSUER", ACCESSORY_ISSUER),
        ("ACCESSORY_JWKS_URL", "https://example.test/jwks.json"),
        (
            "SERVICE_TOKEN_SECRET_ARN",
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:biometrix/dev/service-tokens-AbCdEf",
        ),
    ]);
    let config = AuthConfig::from_env(&full, "hardware").unwrap();
    assert_eq!(config.issuers.len(), 1);
    assert_eq!(config.service_audience.as_deref(), Some("hardware"));
    assert!(
        !format!("{config:?}").contains(SERVICE_SECRET),
        "Debug redacts the secret"
    );
}

fn base64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
