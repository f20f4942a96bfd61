//! `GET /misc/uuid` and `GET /misc/time`.

use std::collections::HashSet;

use http::StatusCode;
use kit::Datetime;

use kit::testing::get;

use crate::support::router_for;

async fn router() -> axum::Router {
    // These routes touch no store; the names only have to be well-formed.
    router_for("unused".into(), "unused".into()).await
}

#[tokio::test]
async fn uuid_is_a_fresh_lowercase_v4() {
    let router = router().await;
    let mut seen = HashSet::new();
    for uri in ["/v1/misc/uuid", "/hardware/misc/uuid", "/v1/misc/uuid/"] {
        let answer = get(&router, uri).await;
        assert_eq!(answer.status, StatusCode::OK);
        let body = answer.json();
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        let text = body["uuid"].as_str().unwrap();
        let uuid = uuid::Uuid::parse_str(text).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(text, uuid.hyphenated().to_string());
        assert!(seen.insert(text.to_owned()), "a fresh one each time");
    }
}

#[tokio::test]
async fn time_is_now_in_utc_seconds() {
    let router = router().await;
    let before = chrono::Utc::now().timestamp();
    let answer = get(&router, "/hardware/misc/time").await;
    let after = chrono::Utc::now().timestamp();
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let text = body["current_date"].as_str().unwrap();
    assert_eq!(text.len(), "2026-11-28T09:30:00Z".len(), "{text}");
    assert!(text.ends_with('Z'), "{text}");
    let at = text.parse::<Datetime>().unwrap().as_utc().timestamp();
    assert!(
        (before..=after).contains(&at),
        "{before} <= {at} <= {after}"
    );
}
