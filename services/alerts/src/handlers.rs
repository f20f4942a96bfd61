//! `POST /alerts` (the pipeline, with a service token) and `GET /alerts/{user_id}` (the user, or
//! a service).

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kit::{ApiError, Datetime, Json, Label, Path, Principal, Query};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Alerts;
use crate::store::{Alert, Incomplete};

const MOST_PER_CALL: usize = 100;
const DEFAULT_PAGE: u32 = 50;
const LARGEST_PAGE: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAlerts {
    alerts: Vec<NewAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAlert {
    user_id: Uuid,
    category: Label,
    subcategory: Label,
    granularity: Label,
    value: Storable,
    event_date: Datetime,
}

/// A number DynamoDB can hold: 0, or a magnitude from 1e-130 up to (not including) 1e126. Any
/// other is refused when the request is read, so that nothing of it is stored and no retry is
/// asked for that could never succeed.
#[derive(Debug, Clone, Copy)]
struct Storable(f64);

impl<'de> Deserialize<'de> for Storable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        let magnitude = value.abs();
        if value == 0.0 || (1e-130..1e126).contains(&magnitude) {
            return Ok(Storable(value));
        }
        Err(serde::de::Error::custom(
            "outside what the store holds: 0, or a magnitude from 1e-130 to 9.99e125",
        ))
    }
}

#[derive(Debug, Serialize)]
pub struct Stored {
    stored: usize,
}

pub async fn store(
    State(alerts): State<Alerts>,
    principal: Principal,
    Json(body): Json<NewAlerts>,
) -> Result<(StatusCode, Json<Stored>), ApiError> {
    if !matches!(principal, Principal::Service { .. }) {
        return Err(ApiError::Forbidden(
            "only the processing pipeline (a service token) stores alerts".into(),
        ));
    }
    let count = body.alerts.len();
    if !(1..=MOST_PER_CALL).contains(&count) {
        return Err(ApiError::InvalidSchema(format!(
            "alerts: expected 1 to {MOST_PER_CALL} alerts, got {count}"
        )));
    }
    let created_date = Datetime::now();
    let new: Vec<Alert> = body
        .alerts
        .into_iter()
        .map(|alert| Alert {
            alert_id: Uuid::new_v4(),
            user_id: alert.user_id,
            category: alert.category.into_string(),
            subcategory: alert.subcategory.into_string(),
            granularity: alert.granularity.into_string(),
            value: alert.value.0,
            event_date: alert.event_date,
            created_date,
        })
        .collect();
    match alerts.store.put_all(&new).await {
        Ok(stored) => Ok((StatusCode::CREATED, Json(Stored { stored }))),
        // Not internal detail: the caller needs the count to know what to send again.
        Err(Incomplete { stored, total }) => Err(ApiError::Unfinished(format!(
            "stored {stored} of {total} alerts before the store stopped accepting writes; \
             the first {stored} in the request are stored, send the rest again"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    start_date: Datetime,
    end_date: Datetime,
    limit: Option<u32>,
    next: Option<String>,
}

/// Where a listing stopped, opaque to clients; bound to the user it lists.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    user_id: Uuid,
    event_key: String,
}

#[derive(Debug, Serialize)]
pub struct Page {
    alerts: Vec<Alert>,
    next: Option<String>,
}

pub async fn list(
    State(alerts): State<Alerts>,
    principal: Principal,
    Path(user_id): Path<Uuid>,
    Query(range): Query<Range>,
) -> Result<Json<Page>, ApiError> {
    match principal {
        Principal::Service { .. } => {}
        Principal::User(caller) if caller == user_id => {}
        _ => {
            return Err(ApiError::Forbidden(
                "a user's alerts are for that user and for services".into(),
            ));
        }
    }
    if range.start_date > range.end_date {
        return Err(ApiError::InvalidSchema(
            "start_date: must not be after end_date".into(),
        ));
    }
    let limit = range.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=LARGEST_PAGE).contains(&limit) {
        return Err(ApiError::InvalidSchema(format!(
            "limit: expected 1 to {LARGEST_PAGE}, got {limit}"
        )));
    }
    let after = range
        .next
        .map(|next| {
            URL_SAFE_NO_PAD
                .decode(next)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Cursor>(&bytes).ok())
                .filter(|cursor| cursor.user_id == user_id)
                .map(|cursor| cursor.event_key)
                .ok_or_else(|| {
                    ApiError::InvalidSchema("next: not a cursor of this user's alerts".into())
                })
        })
        .transpose()?;
    let (page, last) = alerts
        .store
        .page(
            user_id,
            range.start_date,
            range.end_date,
            i32::try_from(limit).unwrap_or(i32::MAX),
            after,
        )
        .await?;
    let next = last.map(|event_key| {
        let cursor =
            serde_json::to_vec(&Cursor { user_id, event_key }).expect("a cursor serialises");
        URL_SAFE_NO_PAD.encode(cursor)
    });
    Ok(Json(Page { alerts: page, next }))
}
