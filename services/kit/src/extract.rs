//! Extractors whose rejections follow the error contract, naming what was wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body; a response body when returned.
///
/// A body that is not JSON, or JSON of the wrong shape, is a `400 InvalidSchema` whose message
/// names the offending field (`sensors[1].battery_level: …`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Body(bytes) = Body::from_request(request, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// A request body as bytes, up to [`crate::BODY_LIMIT`]; a larger one is a `413 PayloadTooLarge`.
#[derive(Debug, Clone, Default)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(format!(
                        "the request body is larger than the {} MB an API accepts",
                        crate::BODY_LIMIT / (1024 * 1024)
                    ))
                } else {
                    ApiError::InvalidSchema("the request body could not be read".into())
                }
            })
    }
}

/// Parses a JSON document, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidSchema(
            "the request body is empty; expected JSON".into(),
        ));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the request body is not valid JSON ({inner})")
        } else {
            // Where in the text is no help to the client; the path says where in the document.
            let text = inner.to_string();
            let text = match text.rsplit_once(" at line ") {
                Some((message, position)) if position.contains(" column ") => message.to_owned(),
                _ => text,
            };
            if path == "." {
                format!("body: {text}")
            } else {
                format!("{path}: {text}")
            }
        };
        ApiError::InvalidSchema(message)
    })
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; one that does not parse is a `400 InvalidSchema` in the contract's words:
/// `id: `me` is not a UUID`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                // A type that parses itself reports no name: the route's only parameter has it.
                let only =
                    match axum::extract::RawPathParams::from_request_parts(parts, state).await {
                        Ok(params) if params.iter().count() == 1 => params
                            .iter()
                            .next()
                            .map(|(key, value)| (key.to_owned(), value.to_owned())),
                        _ => None,
                    };
                Err(ApiError::InvalidSchema(path_message(
                    error.into_kind(),
                    only,
                )))
            }
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

/// What a client is told about a path parameter that does not parse: its name, its value (cut
/// short), and what it should have been, as the contract names the types. The type is known
/// from its parser's message: ours ([`crate::MacAddress`]) and the `uuid` crate's.
fn path_message(kind: axum::extract::path::ErrorKind, only: Option<(String, String)>) -> String {
    use axum::extract::path::ErrorKind;
    let (key, value, why) = match (kind, only) {
        (
            ErrorKind::DeserializeError {
                key,
                value,
                message,
            },
            _,
        ) => (key, value, message),
        (
            ErrorKind::ParseErrorAtKey {
                key,
                value,
                expected_type,
            },
            _,
        ) => (key, value, expected_type.to_owned()),
        (ErrorKind::Message(message), Some((key, value))) => (key, value, message),
        (other, _) => return format!("the path is malformed: {other}"),
    };
    let value: String = value.chars().take(64).collect();
    let expected = if why.starts_with("UUID parsing failed") {
        "a UUID, like 2b8c6e3a-5f0e-4d5b-9a61-1f2d3c4b5a69".to_owned()
    } else if let Some(rest) = why.strip_prefix("invalid MAC address: expected ") {
        format!("a MAC address: {rest}")
    } else {
        format!("valid: {why}")
    };
    format!("{key}: `{value}` is not {expected}")
}

/// Query-string parameters; a missing or malformed one is a `400 InvalidSchema` naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::QueryRejection;
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(error)) => {
                Err(ApiError::InvalidSchema(format!(
                    "invalid query string: {}",
                    std::error::Error::source(&error)
                        .map_or_else(|| error.to_string(), ToString::to_string)
                )))
            }
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use http::Method;

    use super::Path;
    use crate::MacAddress;

    async fn rejection(uri: &str) -> String {
        let router = Router::new()
            .route("/session/{id}", get(|Path(_): Path<uuid::Uuid>| async {}))
            .route("/sensor/{mac}", get(|Path(_): Path<MacAddress>| async {}));
        crate::testing::call(&router, Method::GET, uri, None)
            .await
            .assert_error(400, "InvalidSchema")
    }

    #[tokio::test]
    async fn a_path_parameter_that_does_not_parse_is_named_in_the_contracts_words() {
        assert_eq!(
            rejection("/session/me").await,
            "id: `me` is not a UUID, like 2b8c6e3a-5f0e-4d5b-9a61-1f2d3c4b5a69"
        );
        assert_eq!(
            rejection("/sensor/0a:1b").await,
            "mac: `0a:1b` is not a MAC address: six two-digit hex groups joined by ':', like \
             0a:1b:2c:3d:4e:5f"
        );
        let long = "x".repeat(300);
        assert!(rejection(&format!("/session/{long}")).await.len() < 140);
    }
}
