//! `POST /status`: the caller's sessions in a date range, grouped by status.

use std::collections::BTreeMap;

use axum::extract::State;
use kit::{ApiError, Datetime, Json, Principal};
use serde::Deserialize;

use crate::Preprocessing;
use crate::session::SessionStatus;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    start_date: Datetime,
    end_date: Datetime,
}

/// The groups the contract lists; a session still at CREATE_COMPLETE has nothing to show yet.
const GROUPS: [SessionStatus; 5] = [
    SessionStatus::UploadInProgress,
    SessionStatus::UploadComplete,
    SessionStatus::ProcessingInProgress,
    SessionStatus::ProcessingComplete,
    SessionStatus::ProcessingFailed,
];

pub async fn list(
    State(app): State<Preprocessing>,
    principal: Principal,
    Json(range): Json<Range>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Principal::User(user) = principal else {
        return Err(ApiError::Forbidden(
            "status lists a user's own sessions; use a user's token".into(),
        ));
    };
    if range.start_date > range.end_date {
        return Err(ApiError::InvalidSchema(
            "start_date: must not be after end_date".into(),
        ));
    }
    let mut groups: BTreeMap<&str, Vec<serde_json::Value>> = GROUPS
        .iter()
        .map(|status| (status.as_str(), Vec::new()))
        .collect();
    let mut sessions = app
        .sessions
        .of_user(user, range.start_date, range.end_date)
        .await?;
    sessions.sort_by_key(|session| std::cmp::Reverse(session.event_date));
    for session in sessions {
        if let Some(group) = groups.get_mut(session.session_status.as_str()) {
            group.push(serde_json::json!(session));
        }
    }
    Ok(Json(serde_json::json!({ "sessions": groups })))
}
