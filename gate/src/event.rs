//! HTTP requests as API Gateway's REST proxy (payload 1.0) hands them to a function, and the
//! function's answers as API Gateway turns them back into HTTP. Built and read with the
//! `aws_lambda_events` types that `lambda_http` uses on the other side.

use std::collections::HashMap;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue, Method};
use aws_lambda_events::query_map::QueryMap;
use base64::Engine as _;
use lambda_harness::http::Request;

/// Where a request arrived: what API Gateway puts in every event's `requestContext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The API's stage (`v1`, as `apigateway.yaml` names it).
    pub name: String,
    pub api_id: String,
    pub account_id: String,
    /// Content types whose bodies travel base64-encoded (the API's `BinaryMediaTypes`).
    pub binary_media_types: Vec<String>,
}

/// The event for `request`, with `request_id` and the caller's address.
pub fn event(
    request: &Request,
    stage: &Stage,
    request_id: &str,
    source_ip: &str,
) -> Result<ApiGatewayProxyRequest, String> {
    let (raw_path, raw_query) = request
        .path
        .split_once('?')
        .unwrap_or((request.path.as_str(), ""));
    let path = percent_decode(raw_path);
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("{:?} is not an HTTP method", request.method))?;
    let mut headers = HeaderMap::new();
    let mut multi_value_headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        // `headers` keeps the last value of a repeated header, `multiValueHeaders` all of them.
        headers.insert(name.clone(), value.clone());
        multi_value_headers.append(name, value);
    }
    let mut query: HashMap<String, Vec<String>> = HashMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        query
            .entry(percent_decode(name))
            .or_default()
            .push(percent_decode(value));
    }
    let binary = request.header("content-type").is_some_and(|kind| {
        let kind = kind.split(';').next().unwrap_or_default().trim();
        stage
            .binary_media_types
            .iter()
            .any(|t| t == kind || t == "*/*")
    });
    let (body, is_base64_encoded) = match (request.body.is_empty(), binary) {
        (true, _) => (None, false),
        (false, true) => (
            Some(base64::engine::general_purpose::STANDARD.encode(&request.body)),
            true,
        ),
        (false, false) => (
            Some(String::from_utf8_lossy(&request.body).into_owned()),
            false,
        ),
    };

    let now = chrono::Utc::now();
    let mut event = ApiGatewayProxyRequest::default();
    event.resource = Some("/{proxy+}".to_owned());
    event.path = Some(path.clone());
    event.http_method = method.clone();
    event.path_parameters =
        HashMap::from([("proxy".to_owned(), path.trim_start_matches('/').to_owned())]);
    event.query_string_parameters = QueryMap::from(
        query
            .iter()
            .map(|(k, v)| (k.clone(), v.last().cloned().unwrap_or_default()))
            .collect::<HashMap<_, _>>(),
    );
    event.multi_value_query_string_parameters = QueryMap::from(query);
    event.headers = headers;
    event.multi_value_headers = multi_value_headers;
    event.body = body;
    event.is_base64_encoded = is_base64_encoded;
    let context = &mut event.request_context;
    context.resource_path = Some("/{proxy+}".to_owned());
    context.path = Some(path);
    context.http_method = method;
    context.stage = Some(stage.name.clone());
    context.request_id = Some(request_id.to_owned());
    context.account_id = Some(stage.account_id.clone());
    context.apiid = Some(stage.api_id.clone());
    context.protocol = Some("HTTP/1.1".to_owned());
    context.domain_name = request.header("host").map(str::to_owned);
    context.request_time_epoch = now.timestamp_millis();
    // API Gateway's own form of the time, as in `09/Apr/2015:12:34:56 +0000`.
    context.request_time = Some(now.format("%d/%b/%Y:%H:%M:%S %z").to_string());
    context.identity.source_ip = Some(source_ip.to_owned());
    Ok(event)
}

/// An answer to send back: status, headers and the body's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The function's response as API Gateway sends it on: `headers` and `multiValueHeaders` merged
/// (a name in both keeps the multi-value list), a base64 body decoded. A response that is not a
/// proxy response is refused, as API Gateway refuses it (502).
pub fn answer(response: &[u8]) -> Result<Answer, String> {
    let response: ApiGatewayProxyResponse = serde_json::from_slice(response)
        .map_err(|error| format!("the function's response is not a proxy response: {error}"))?;
    let status = u16::try_from(response.status_code)
        .ok()
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("statusCode {} is not an HTTP status", response.status_code))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for name in response.multi_value_headers.keys() {
        for value in response.multi_value_headers.get_all(name) {
            headers.push((
                name.to_string(),
                value.to_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    for (name, value) in &response.headers {
        if !response.multi_value_headers.contains_key(name) {
            headers.push((
                name.to_string(),
                value.to_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    let body = match response.body {
        None | Some(Body::Empty) => Vec::new(),
        Some(Body::Text(text)) if response.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|error| format!("the function's base64 body does not decode: {error}"))?
        }
        Some(Body::Text(text)) => text.into_bytes(),
        Some(Body::Binary(bytes)) => bytes,
        Some(_) => Vec::new(),
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// `%XX` escapes decoded, as API Gateway decodes the path it hands over.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> Stage {
        Stage {
            name: "v1".into(),
            api_id: "local".into(),
            account_id: "123456789012".into(),
            binary_media_types: vec!["application/octet-stream".into()],
        }
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    /// The fields a recorded event from API Gateway has, in the shape `lambda_http` reads.
    fn recorded(fixture: &str) -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../services/hardware/tests/fixtures/apigw")
            .join(fixture);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    #[test]
    fn events_have_the_shape_of_recorded_ones() {
        for (fixture, path, host) in [
            (
                "firmware-latest.service-domain.json",
                "/v1/firmware/accessory/latest",
                "hardware.dev.biometrix.example",
            ),
            (
                "misc-time.apis-domain.trailing-slash.json",
                "/hardware/misc/time/",
                "apis.dev.biometrix.example",
            ),
        ] {
            let built = event(
                &request("GET", path, &[("host", host), ("accept", "*/*")], b""),
                &stage(),
                "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "203.0.113.7",
            )
            .unwrap();
            let built = serde_json::to_value(&built).unwrap();
            let recorded = recorded(fixture);
            for field in [
                "resource",
                "path",
                "httpMethod",
                "pathParameters",
                "body",
                "isBase64Encoded",
            ] {
                assert_eq!(built[field], recorded[field], "{fixture}: {field}");
            }
            for field in ["resourcePath", "path", "httpMethod", "stage", "domainName"] {
                assert_eq!(
                    built["requestContext"][field], recorded["requestContext"][field],
                    "{fixture}: requestContext.{field}"
                );
            }
            assert_eq!(built["headers"]["host"], host);
            assert_eq!(
                built["multiValueHeaders"]["accept"],
                serde_json::json!(["*/*"])
            );
            assert_eq!(
                built["requestContext"]["identity"]["sourceIp"],
                "203.0.113.7"
            );
            // What lambda_http does with it: the same request the recorded event makes.
            let request: ApiGatewayProxyRequest = serde_json::from_value(built).unwrap();
            assert_eq!(request.path.as_deref(), Some(path));
        }
    }

    #[test]
    fn queries_and_escapes_are_decoded_and_binary_bodies_are_base64() {
        let built = event(
            &request(
                "POST",
                "/v1/a%20b?x=1&x=2&y=%2F",
                &[("content-type", "application/octet-stream")],
                &[0, 159, 255],
            ),
            &stage(),
            "id",
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(built.path.as_deref(), Some("/v1/a b"));
        assert_eq!(built.query_string_parameters.first("x"), Some("2"));
        assert_eq!(
            built.multi_value_query_string_parameters.all("x"),
            Some(vec!["1", "2"])
        );
        assert_eq!(built.query_string_parameters.first("y"), Some("/"));
        assert!(built.is_base64_encoded);
        assert_eq!(built.body.as_deref(), Some("AJ//"));
        let text = event(
            &request(
                "POST",
                "/v1/a",
                &[("content-type", "application/json")],
                b"{}",
            ),
            &stage(),
            "id",
            "127.0.0.1",
        )
        .unwrap();
        assert!(!text.is_base64_encoded);
        assert_eq!(text.body.as_deref(), Some("{}"));
    }

    #[test]
    fn answers_merge_headers_and_decode_base64_bodies() {
        let answer = answer(
            br#"{"statusCode": 201, "headers": {"content-type": "application/octet-stream", "x-one": "a"},
                 "multiValueHeaders": {"x-one": ["b", "c"]}, "body": "AJ//", "isBase64Encoded": true}"#,
        )
        .unwrap();
        assert_eq!(answer.status, 201);
        assert_eq!(answer.body, [0, 159, 255]);
        let mut headers = answer.headers.clone();
        headers.sort();
        assert_eq!(
            headers,
            [
                (
                    "content-type".to_owned(),
                    "application/octet-stream".to_owned()
                ),
                ("x-one".to_owned(), "b".to_owned()),
                ("x-one".to_owned(), "c".to_owned()),
            ]
        );
        assert!(super::answer(b"{\"body\": \"no status\"}").is_err());
        assert!(super::answer(b"not json").is_err());
    }
}
