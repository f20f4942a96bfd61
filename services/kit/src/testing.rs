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
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {:?}",
            String::from_utf8_lossy(&self.body)
        );
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
