//! Test helpers for services (feature `testing`): drive a router in-process and check what it
//! answers against the contract.

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON; panics, showing the body, when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status, showing the body when it differs (a failing test's best clue).
    pub fn assert_status(&self, status: u16) -> &Answer {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// A header's value; panics when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// Asserts one row of the error contract (status, `Status` header, `{"message"}` body, CORS)
    /// and returns the message.
    pub fn assert_error(&self, status: u16, name: &str) -> String {
        self.assert_status(status);
        assert_eq!(self.header("status"), name);
        assert_eq!(self.header("content-type"), "application/json");
        let body = self.json();
        let object = body.as_object().expect("error body is an object");
        assert_eq!(object.len(), 1, "error body has only a message: {body}");
        object["message"]
            .as_str()
            .expect("message is a string")
            .to_owned()
    }

    /// Asserts the CORS headers every response carries.
    pub fn assert_cors(&self) {
        assert_eq!(self.header("access-control-allow-origin"), "*");
        assert_eq!(
            self.header("access-control-allow-methods"),
            "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT"
        );
        assert_eq!(
            self.header("access-control-allow-headers"),
            "Content-Type,Authorization,X-Amz-Date,X-Api-Key,X-Amz-Security-Token"
        );
    }
}

/// Sends one request through `router`, as the Lambda adapter or the local server would.
pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("routers are infallible");
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body
            .collect()
            .await
            .expect("body reads")
            .to_bytes()
            .to_vec(),
    }
}

/// Sends `method uri`, with `body` as JSON when given.
pub async fn call(router: &Router, method: Method, uri: &str, body: Option<&str>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::from(b.to_owned())).unwrap_or_default();
    send(router, request.body(body).unwrap()).await
}

/// `GET uri`.
pub async fn get(router: &Router, uri: &str) -> Answer {
    call(router, Method::GET, uri, None).await
}

/// The HS256 secret the tests' services accept for service tokens.
pub const SERVICE_SECRET: &str = "a service secret of at least 32 bytes";

/// Token issuers for tests: a JWKS endpoint on 127.0.0.1 serving one RSA key, for an accessory
/// issuer and a user issuer, and the service secret. Tokens it mints verify through the kit's
/// real JWKS path.
#[derive(Clone)]
pub struct Tokens {
    jwks_url: String,
    key: std::sync::Arc<jsonwebtoken::EncodingKey>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

const TEST_KID: &str = "test";
pub const ACCESSORY_ISSUER: &str = "https://accessories.biometrix.test";
pub const USER_ISSUER: &str = "https://users.biometrix.test";

impl Tokens {
    /// Serves the JWKS on a free local port for as long as the process runs.
    pub async fn serve() -> Tokens {
        use jsonwebtoken::jwk::{Jwk, JwkSet};
        // A test-only key, committed with the tests; it guards nothing.
        let key = jsonwebtoken::EncodingKey::from_rsa_der(include_bytes!(
            "../../tests/it/keys/first.der"
        ));
        let mut jwk = Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256)
            .expect("the test key converts to a JWK");
        jwk.common.key_id = Some(TEST_KID.to_owned());
        let set = serde_json::to_string(&JwkSet { keys: vec![jwk] }).expect("JWKS serialises");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port for the JWKS");
        let jwks_url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("bound")
        );
        let app = Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || async move { set }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Tokens {
            jwks_url,
            key: std::sync::Arc::new(key),
        }
    }

    /// What `service` accepts: accessory and user tokens from this issuer, and service tokens for it
    /// (signed with [`SERVICE_SECRET`], which the emulator's Secrets Manager holds).
    pub async fn auth_config(&self, service: &str) -> crate::AuthConfig {
        let issuer = |kind, issuer: &str| crate::IssuerConfig {
            kind,
            issuer: issuer.to_owned(),
            jwks_url: self.jwks_url.clone(),
            audience: None,
            refetch_cooldown: std::time::Duration::ZERO,
            failure_backoff: std::time::Duration::ZERO,
        };
        crate::AuthConfig {
            issuers: vec![
                issuer(crate::IssuerKind::Accessory, ACCESSORY_ISSUER),
                issuer(crate::IssuerKind::User, USER_ISSUER),
            ],
            service_secret: Some(service_secret().await),
            service_issuer: None,
            service_audience: Some(service.to_owned()),
        }
    }

    fn rs256(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(TEST_KID.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).expect("the token signs")
    }

    /// An ID token of the accessory user pool for `mac`.
    pub fn accessory(&self, mac: &str) -> String {
        self.rs256(&serde_json::json!({
            "iss": ACCESSORY_ISSUER, "exp": in_an_hour(), "cognito:username": mac, "token_use": "id",
        }))
    }

    /// A user's ID token.
    pub fn user(&self, user: uuid::Uuid) -> String {
        self.rs256(&serde_json::json!({
            "iss": USER_ISSUER, "exp": in_an_hour(), "sub": user, "token_use": "id",
        }))
    }
}

/// The emulator's secret holding [`SERVICE_SECRET`], created once per test process.
pub async fn service_secret() -> crate::SecretArn {
    static ARN: tokio::sync::OnceCell<crate::SecretArn> = tokio::sync::OnceCell::const_new();
    ARN.get_or_init(|| secret(SERVICE_SECRET)).await.clone()
}

/// A secret of its own in the emulator's Secrets Manager, holding `value`; returns its ARN.
pub async fn secret(value: &str) -> crate::SecretArn {
    let created = aws_sdk_secretsmanager::Client::new(emulator().await)
        .create_secret()
        .name(format!("test/{}", uuid::Uuid::new_v4().simple()))
        .secret_string(value)
        .send()
        .await
        .expect("the emulator creates the secret");
    created
        .arn()
        .expect("a created secret has an ARN")
        .parse()
        .expect("the emulator's ARNs are secrets' ARNs")
}

/// A secret holding the URL of a database that is not there (nothing listens on port 1), for
/// services whose tests never reach it.
pub async fn no_database() -> crate::SecretArn {
    static ARN: tokio::sync::OnceCell<crate::SecretArn> = tokio::sync::OnceCell::const_new();
    ARN.get_or_init(|| secret("postgres://nobody@127.0.0.1:1/none"))
        .await
        .clone()
}

/// Where services under test read their secrets: the emulator's Secrets Manager.
pub async fn secrets() -> crate::SecretStore {
    crate::SecretStore::new(emulator().await)
}

/// A service-to-service token from `subject` for the service `audience`, signed with
/// [`SERVICE_SECRET`].
pub fn service_token(subject: &str, audience: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": subject, "aud": audience, "exp": in_an_hour() }),
        &jsonwebtoken::EncodingKey::from_secret(SERVICE_SECRET.as_bytes()),
    )
    .expect("the token signs")
}

fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

/// Sends `method uri` with `Authorization: <token>`, and `body` as JSON when given.
pub async fn call_as(
    router: &Router,
    token: &str,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", token);
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::from(b.to_owned())).unwrap_or_default();
    send(router, request.body(body).expect("the request builds")).await
}

/// A fresh database of its own on the test PostgreSQL server (`DATABASE_URL`, which
/// `scripts/test` sets), with every migration applied; returns its URL.
#[cfg(feature = "postgres")]
pub async fn database() -> String {
    let admin = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: these tests need PostgreSQL; run them with scripts/test")
    });
    let connect = |url: String| async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at DATABASE_URL ({e}): run the tests with scripts/test"
                )
            });
        tokio::spawn(connection);
        client
    };
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    connect(admin.clone())
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("the test database is created");
    let (base, _) = admin
        .rsplit_once('/')
        .expect("DATABASE_URL ends with /<database>");
    let url = format!("{base}/{name}");
    let mut client = connect(url.clone()).await;
    crate::db::migrate(&mut client)
        .await
        .expect("the migrations apply");
    url
}

/// The AWS emulator's SDK configuration (`AWS_ENDPOINT_URL`, which `scripts/test` sets). Fails
/// loudly, never skips, when the emulator is not there, and refuses anything but a local one.
pub async fn emulator() -> &'static aws_config::SdkConfig {
    static SDK: tokio::sync::OnceCell<aws_config::SdkConfig> = tokio::sync::OnceCell::const_new();
    SDK.get_or_init(|| async {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
            panic!("AWS_ENDPOINT_URL is not set: these tests need the AWS emulator; run them with scripts/test")
        });
        assert!(
            endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
            "AWS_ENDPOINT_URL={endpoint} is not a local emulator; tests never touch real AWS"
        );
        aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
    })
    .await
}

mod fuzz;
pub use fuzz::{Fuzz, FuzzReport};

/// A DynamoDB table of its own in the emulator, named `<prefix>-<random>`, keyed by string
/// attributes `hash` and (if given) `range`, each index being `(name, hash, range)`; returns its
/// name.
pub async fn table(
    prefix: &str,
    hash: &str,
    range: Option<&str>,
    indexes: &[(&str, &str, &str)],
) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let key = |attribute: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(kind)
            .build()
            .expect("a key is complete")
    };
    let mut attributes = vec![hash];
    attributes.extend(range);
    for (_, index_hash, index_range) in indexes {
        attributes.extend([*index_hash, *index_range]);
    }
    attributes.sort_unstable();
    attributes.dedup();
    let mut create = aws_sdk_dynamodb::Client::new(emulator().await)
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(hash, KeyType::Hash));
    if let Some(range) = range {
        create = create.key_schema(key(range, KeyType::Range));
    }
    for attribute in attributes {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("an attribute is complete"),
        );
    }
    for (index, index_hash, index_range) in indexes {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(*index)
                .key_schema(key(index_hash, KeyType::Hash))
                .key_schema(key(index_range, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("an index is complete"),
        );
    }
    create.send().await.expect("the emulator creates the table");
    name
}

/// A connection to a test database (see [`database`]), for seeding and checking it.
#[cfg(feature = "postgres")]
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test database ({e})"));
    tokio::spawn(connection);
    client
}
