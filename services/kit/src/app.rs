//! Routing glue: turns a service's routes into the complete API that clients see.
//!
//! What every request goes through, outermost first:
//! 1. the path is normalised: Lambda's event path replaces one that API Gateway prefixed with its
//!    stage, and a trailing slash is dropped;
//! 2. a span with the request id is opened, and the outcome is logged;
//! 3. CORS headers go on every response, and `OPTIONS` on any path answers 200;
//! 4. a panic becomes a 500 that says nothing about it;
//! 5. routing under `/v1` and `/<service>`, with contract errors for unknown paths and methods.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use futures_util::FutureExt;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
};
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use lambda_http::RequestExt;
use tracing::Instrument;

use crate::auth::Verifier;
use crate::error::ApiError;

/// The header each response carries its request id in, for support requests.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The largest request body a service reads: what Lambda accepts in a synchronous invocation.
pub const BODY_LIMIT: usize = 6 * 1024 * 1024;

const ALLOW_METHODS: &str = "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT";
const ALLOW_HEADERS: &str = "Content-Type,Authorization,X-Amz-Date,X-Api-Key,X-Amz-Security-Token";

/// A service's routes, with their paths kept: the service's `router()` is built from them, and
/// tests that walk every route (the fuzz tests) read the same list, so there is no second one.
#[derive(Debug)]
pub struct Routes<S> {
    router: Router<S>,
    paths: Vec<&'static str>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            paths: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route, as `axum::Router::route` does (`/accessory/{mac}`).
    pub fn route(mut self, path: &'static str, method_router: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, method_router);
        self.paths.push(path);
        self
    }

    /// The paths, relative to `/v1` and `/<service>`, with `{name}` for each parameter.
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    /// The routes with the state their handlers share, ready for [`app`].
    pub fn with_state(self, state: S) -> Router {
        self.router.with_state(state)
    }
}

/// Mounts `routes` under `/v1` and `/<service>` and wraps them in everything the contract asks of
/// every response. The result is what Lambda and the local server both run.
pub fn app(service: &str, routes: Router, verifier: Arc<Verifier>) -> Router {
    let routes = routes.method_not_allowed_fallback(unsupported_method);
    let routed = Router::new()
        .nest("/v1", routes.clone())
        .nest(&format!("/{service}"), routes)
        .fallback(unknown_endpoint);
    // Every layer wraps the routed app as a whole, once: normalising must happen before routing,
    // and `Router::layer` on the routed app would wrap each of its routes, twice over (under `/v1`
    // and `/<service>`), at every cold start.
    Router::new()
        .fallback_service(routed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn(cors))
        .layer(middleware::from_fn(trace))
        .layer(axum::Extension(verifier))
        .layer(middleware::map_request(normalize_path))
}

async fn unknown_endpoint() -> ApiError {
    ApiError::UnknownEndpoint
}

async fn unsupported_method() -> ApiError {
    ApiError::UnsupportedMethod
}

async fn normalize_path(mut request: Request) -> Request {
    let mut path = request.uri().path().to_owned();
    // Requests that came through Lambda carry the event's own path, which has no stage prefix.
    let raw = request.extensions().raw_http_path();
    if !raw.is_empty() {
        raw.clone_into(&mut path);
    }
    while path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if path != request.uri().path() {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(path_and_query) = path_and_query.parse() {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

async fn trace(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .lambda_context_ref()
        .map(|context| context.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    async move {
        let started = Instant::now();
        let mut response = next.run(request).await;
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if response.status().is_server_error() {
            tracing::error!(status, elapsed_ms, "responded");
        } else {
            tracing::info!(status, elapsed_ms, "responded");
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response
                .headers_mut()
                .insert(REQUEST_ID_HEADER.clone(), value);
        }
        response
    }
    .instrument(span)
    .await
}

async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    response
}

async fn catch_panic(request: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => ApiError::internal("a handler panicked").into_response(),
    }
}
