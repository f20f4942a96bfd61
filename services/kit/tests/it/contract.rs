//! Every row of the error contract, CORS, routing under both prefixes, and JSON input errors.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use http::{Method, Request, StatusCode};
use kit::{ApiError, AuthConfig, Json, MacAddress, Path, Principal, Verifier};
use serde::Deserialize;
use serde_json::{Value, json};

use kit::testing::{call, send};

#[derive(Deserialize)]
struct NewWidget {
    name: String,
    sizes: Vec<u32>,
    #[serde(default)]
    owner: Option<MacAddress>,
}

async fn fail(Path(name): Path<String>) -> ApiError {
    let detail = || "detail".to_owned();
    match name.as_str() {
        "InvalidSchema" => ApiError::InvalidSchema(detail()),
        "Unauthorized" => ApiError::Unauthorized(detail()),
        "Forbidden" => ApiError::Forbidden(detail()),
        "NoSuchEntity" => ApiError::NoSuchEntity(detail()),
        "UnknownEndpoint" => ApiError::UnknownEndpoint,
        "UnsupportedMethod" => ApiError::UnsupportedMethod,
        "DuplicateEntity" => ApiError::DuplicateEntity(detail()),
        "UnsupportedContentType" => ApiError::UnsupportedContentType(detail()),
        _ => ApiError::internal("connection to db.internal:5432 refused; SELECT * FROM users"),
    }
}

async fn widgets() -> Router {
    let routes = Router::new()
        .route(
            "/widgets",
            post(|Json(w): Json<NewWidget>| async move {
                (
                    StatusCode::CREATED,
                    Json(json!({ "name": w.name, "sizes": w.sizes, "owner": w.owner })),
                )
            }),
        )
        .route(
            "/widgets/{mac}",
            get(|Path(mac): Path<MacAddress>| async move { Json(json!({ "mac": mac })) }),
        )
        .route("/fail/{name}", get(fail))
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("secret internal detail")
                }
            }),
        )
        .route(
            "/whoami",
            get(|principal: Principal| async move { Json(json!(format!("{principal:?}"))) }),
        );
    let auth = AuthConfig {
        service_secret: Some(kit::testing::service_secret().await),
        service_audience: Some("widgets".into()),
        ..AuthConfig::default()
    };
    let verifier = Verifier::new(auth, &kit::testing::secrets().await);
    kit::app("widgets", routes, Arc::new(verifier))
}

#[tokio::test]
async fn a_body_over_what_lambda_accepts_is_payload_too_large_in_the_contract_shape() {
    let app = widgets().await;
    let limit = kit::BODY_LIMIT;
    let padding = " ".repeat(limit);
    let too_large = format!("{{\"name\": \"w\", \"sizes\": []}}{padding}");
    let answer = call(&app, Method::POST, "/v1/widgets", Some(&too_large)).await;
    let message = answer.assert_error(413, "PayloadTooLarge");
    answer.assert_cors();
    assert_eq!(
        message,
        "the request body is larger than the 6 MB an API accepts"
    );
    // Just under the limit is read (and here answered, since the JSON is fine).
    let fits = format!(
        "{{\"name\": \"w\", \"sizes\": []}}{}",
        " ".repeat(limit - 40)
    );
    call(&app, Method::POST, "/v1/widgets", Some(&fits))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn every_error_row_has_its_status_header_and_message() {
    let rows = [
        (400, "InvalidSchema"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (404, "NoSuchEntity"),
        (404, "UnknownEndpoint"),
        (405, "UnsupportedMethod"),
        (409, "DuplicateEntity"),
        (415, "UnsupportedContentType"),
        (500, "ServerError"),
    ];
    let app = widgets().await;
    for (status, name) in rows {
        let answer = call(&app, Method::GET, &format!("/v1/fail/{name}"), None).await;
        let message = answer.assert_error(status, name);
        answer.assert_cors();
        match name {
            "UnknownEndpoint" => assert_eq!(message, "no such endpoint"),
            "UnsupportedMethod" => {
                assert_eq!(message, "this endpoint does not support that method")
            }
            "ServerError" => assert_eq!(message, "internal server error"),
            _ => assert_eq!(message, "detail"),
        }
    }
}

#[tokio::test]
async fn a_server_error_never_echoes_its_cause() {
    let app = widgets().await;
    let answer = call(&app, Method::GET, "/v1/fail/anything-else", None).await;
    assert_eq!(
        answer.assert_error(500, "ServerError"),
        "internal server error"
    );
    let body = String::from_utf8(answer.body.clone()).unwrap();
    assert!(
        !body.contains("db.internal") && !body.contains("SELECT"),
        "{body}"
    );
}

#[tokio::test]
async fn a_panic_is_a_silent_500_and_the_service_keeps_serving() {
    let app = widgets().await;
    let answer = call(&app, Method::GET, "/v1/panic", None).await;
    assert_eq!(
        answer.assert_error(500, "ServerError"),
        "internal server error"
    );
    answer.assert_cors();
    assert!(!String::from_utf8_lossy(&answer.body).contains("secret"));
    let after = call(&app, Method::GET, "/v1/widgets/0a:1b:2c:3d:4e:5f", None).await;
    assert_eq!(after.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_are_unknown_endpoints() {
    let app = widgets().await;
    for path in [
        "/",
        "/v1",
        "/v1/nothing",
        "/widgets/a/b/c",
        "/v2/widgets",
        "/hardware/widgets",
    ] {
        let answer = call(&app, Method::GET, path, None).await;
        assert_eq!(
            answer.assert_error(404, "UnknownEndpoint"),
            "no such endpoint",
            "{path}"
        );
        answer.assert_cors();
    }
}

#[tokio::test]
async fn a_known_path_with_another_method_is_unsupported() {
    let app = widgets().await;
    for (method, path) in [
        (Method::DELETE, "/v1/widgets"),
        (Method::PUT, "/widgets/widgets/0a:1b:2c:3d:4e:5f"),
    ] {
        let answer = call(&app, method, path, None).await;
        answer.assert_error(405, "UnsupportedMethod");
        answer.assert_cors();
    }
}

#[tokio::test]
async fn options_answers_200_with_cors_on_any_path() {
    let app = widgets().await;
    for path in ["/v1/widgets", "/widgets/fail/x", "/not/a/route", "/"] {
        let answer = call(&app, Method::OPTIONS, path, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        answer.assert_cors();
    }
}

#[tokio::test]
async fn both_prefixes_and_a_trailing_slash_reach_the_same_route() {
    let app = widgets().await;
    for path in [
        "/v1/widgets/0A:1B:2C:3D:4E:5F",
        "/v1/widgets/0A:1B:2C:3D:4E:5F/",
        "/widgets/widgets/0a:1b:2c:3d:4e:5f",
        "/widgets/widgets/0a:1b:2c:3d:4e:5f//",
    ] {
        let answer = call(&app, Method::GET, path, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(
            answer.json(),
            json!({ "mac": "0a:1b:2c:3d:4e:5f" }),
            "{path}"
        );
        assert_eq!(answer.header("content-type"), "application/json");
        answer.assert_cors();
        assert!(!answer.header("x-request-id").is_empty());
    }
}

#[tokio::test]
async fn a_malformed_path_parameter_is_invalid_schema() {
    let app = widgets().await;
    let answer = call(&app, Method::GET, "/v1/widgets/0a:1b:2c:3d:4e", None).await;
    let message = answer.assert_error(400, "InvalidSchema");
    assert!(message.contains("is not a MAC address"), "{message}");
}

#[tokio::test]
async fn json_errors_name_the_offending_field() {
    let app = widgets().await;
    let cases = [
        (
            "{\"name\": \"a\", \"sizes\": [1]",
            "the request body is not valid JSON",
        ),
        ("not json", "the request body is not valid JSON"),
        ("", "the request body is empty; expected JSON"),
        ("{\"sizes\": [1]}", "body: missing field `name`"),
        (
            "{\"name\": 5, \"sizes\": []}",
            "name: invalid type: integer `5`, expected a string",
        ),
        (
            "{\"name\": \"a\", \"sizes\": [1, -2]}",
            "sizes[1]: invalid value: integer `-2`, expected u32",
        ),
        (
            "{\"name\": \"a\", \"sizes\": [], \"owner\": \"zz\"}",
            "owner: invalid MAC address",
        ),
        (
            "[1, 2]",
            "[0]: invalid type: integer `1`, expected a string",
        ),
        (
            "true",
            "body: invalid type: boolean `true`, expected struct NewWidget",
        ),
    ];
    for (body, expected) in cases {
        let answer = call(&app, Method::POST, "/v1/widgets", Some(body)).await;
        let message = answer.assert_error(400, "InvalidSchema");
        assert!(message.starts_with(expected), "{body:?}: {message:?}");
    }
    let created = call(
        &app,
        Method::POST,
        "/widgets/widgets",
        Some("{\"name\": \"a\", \"sizes\": [3]}"),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        created.json(),
        json!({ "name": "a", "sizes": [3], "owner": Value::Null })
    );
}

#[tokio::test]
async fn a_route_behind_a_token_refuses_requests_without_one() {
    let app = widgets().await;
    let answer = call(&app, Method::GET, "/v1/whoami", None).await;
    let message = answer.assert_error(401, "Unauthorized");
    assert_eq!(
        message,
        "this endpoint needs a token in the Authorization header"
    );
    answer.assert_cors();

    let request = Request::get("/v1/whoami")
        .header("authorization", "Bearer not.a.token")
        .body(Default::default());
    let answer = send(&app, request.unwrap()).await;
    assert_eq!(answer.assert_error(401, "Unauthorized"), "malformed token");
}
