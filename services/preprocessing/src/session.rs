//! Sessions: created by an accessory, uploaded to, and moved forward through their statuses with
//! conditional writes, so that concurrent writers never move one backwards or lose an update.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use kit::{ApiError, Datetime, Json, MacAddress, Path, Principal};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Preprocessing;

/// Where a session is; statuses only move forward (down this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    CreateComplete,
    UploadInProgress,
    UploadComplete,
    ProcessingInProgress,
    ProcessingComplete,
    ProcessingFailed,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 6] = [
        SessionStatus::CreateComplete,
        SessionStatus::UploadInProgress,
        SessionStatus::UploadComplete,
        SessionStatus::ProcessingInProgress,
        SessionStatus::ProcessingComplete,
        SessionStatus::ProcessingFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::CreateComplete => "CREATE_COMPLETE",
            SessionStatus::UploadInProgress => "UPLOAD_IN_PROGRESS",
            SessionStatus::UploadComplete => "UPLOAD_COMPLETE",
            SessionStatus::ProcessingInProgress => "PROCESSING_IN_PROGRESS",
            SessionStatus::ProcessingComplete => "PROCESSING_COMPLETE",
            SessionStatus::ProcessingFailed => "PROCESSING_FAILED",
        }
    }

    /// How far along: the two ends of processing are equally far.
    fn rank(self) -> u8 {
        match self {
            SessionStatus::CreateComplete => 0,
            SessionStatus::UploadInProgress => 1,
            SessionStatus::UploadComplete => 2,
            SessionStatus::ProcessingInProgress => 3,
            SessionStatus::ProcessingComplete | SessionStatus::ProcessingFailed => 4,
        }
    }

    /// The statuses a session may be in for a write of `self` to go ahead: not further along,
    /// and not the other end of processing.
    pub fn reachable_from(self) -> Vec<SessionStatus> {
        SessionStatus::ALL
            .into_iter()
            .filter(|from| from.rank() < self.rank() || *from == self)
            .collect()
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionStatus {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    pub id: Uuid,
    pub accessory_id: MacAddress,
    pub sensor_ids: Vec<MacAddress>,
    pub user_id: Uuid,
    pub event_date: Datetime,
    pub session_status: SessionStatus,
    pub created_date: Datetime,
    pub updated_date: Datetime,
}

type Item = HashMap<String, AttributeValue>;

impl Session {
    fn item(&self) -> Item {
        let s = |value: String| AttributeValue::S(value);
        HashMap::from([
            ("id".to_owned(), s(self.id.to_string())),
            ("accessory_id".to_owned(), s(self.accessory_id.to_string())),
            (
                "sensor_ids".to_owned(),
                AttributeValue::L(self.sensor_ids.iter().map(|m| s(m.to_string())).collect()),
            ),
            ("user_id".to_owned(), s(self.user_id.to_string())),
            ("event_date".to_owned(), s(self.event_date.to_string())),
            (
                "session_status".to_owned(),
                s(self.session_status.to_string()),
            ),
            ("created_date".to_owned(), s(self.created_date.to_string())),
            ("updated_date".to_owned(), s(self.updated_date.to_string())),
        ])
    }

    pub fn from_item(item: &Item) -> Result<Session, ApiError> {
        let text = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| ApiError::internal(format!("a session item without {name}")))
        };
        let parse = |name: &str| {
            let value = text(name)?;
            Ok::<_, ApiError>(value.clone())
        };
        let bad =
            |name: &str| ApiError::internal(format!("a session item with a malformed {name}"));
        Ok(Session {
            id: parse("id")?.parse().map_err(|_| bad("id"))?,
            accessory_id: parse("accessory_id")?
                .parse()
                .map_err(|_| bad("accessory_id"))?,
            sensor_ids: item
                .get("sensor_ids")
                .and_then(|v| v.as_l().ok())
                .map(|list| {
                    list.iter()
                        .filter_map(|v| v.as_s().ok()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
            user_id: parse("user_id")?.parse().map_err(|_| bad("user_id"))?,
            event_date: parse("event_date")?
                .parse()
                .map_err(|_| bad("event_date"))?,
            session_status: parse("session_status")?
                .parse()
                .map_err(|()| bad("session_status"))?,
            created_date: parse("created_date")?
                .parse()
                .map_err(|_| bad("created_date"))?,
            updated_date: parse("updated_date")?
                .parse()
                .map_err(|_| bad("updated_date"))?,
        })
    }
}

#[derive(Debug)]
pub struct Sessions {
    dynamodb: kit::Lazy<aws_sdk_dynamodb::Client>,
    s3: kit::Lazy<aws_sdk_s3::Client>,
    table: String,
    bucket: String,
}

pub const USER_INDEX: &str = "user_id-event_date";

impl Sessions {
    pub fn new(sdk: &aws_config::SdkConfig, table: String, bucket: String) -> Sessions {
        Sessions {
            dynamodb: kit::Lazy::new(sdk, aws_sdk_dynamodb::Client::new),
            s3: kit::Lazy::new(sdk, kit::s3_client),
            table,
            bucket,
        }
    }

    /// Stores a new session, or answers the one already stored under its id: the id is named
    /// by what makes a session the same one, so a repeated create finds the first.
    async fn create(&self, session: Session) -> Result<Session, ApiError> {
        let put = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(session.item()))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(session),
            Err(error)
                if error
                    .as_service_error()
                    .and_then(ProvideErrorMetadata::code)
                    == Some("ConditionalCheckFailedException") =>
            {
                self.get(session.id).await
            }
            Err(error) => Err(ApiError::internal(error)),
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<Session, ApiError> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(ApiError::internal)?
            .item
            .ok_or_else(|| ApiError::NoSuchEntity(format!("no session {id}")))?;
        Session::from_item(&item)
    }

    /// Moves a session to `status`, only from a status before it (or the same one): one
    /// conditional write, so a concurrent writer cannot be overwritten backwards.
    pub async fn advance(&self, id: Uuid, status: SessionStatus) -> Result<Session, ApiError> {
        let from = status.reachable_from();
        let names: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let mut update = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .update_expression("SET session_status = :status, updated_date = :now")
            .condition_expression(format!(
                "attribute_exists(id) AND session_status IN ({})",
                names.join(", ")
            ))
            .expression_attribute_values(":status", AttributeValue::S(status.to_string()))
            .expression_attribute_values(":now", AttributeValue::S(Datetime::now().to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        for (name, from) in names.iter().zip(from) {
            update = update.expression_attribute_values(name, AttributeValue::S(from.to_string()));
        }
        match update.send().await {
            Ok(output) => Session::from_item(&output.attributes.unwrap_or_default()),
            Err(error)
                if error
                    .as_service_error()
                    .and_then(ProvideErrorMetadata::code)
                    == Some("ConditionalCheckFailedException") =>
            {
                let current = self.get(id).await?;
                Err(ApiError::DuplicateEntity(format!(
                    "session {id} is {}; it cannot move back to {status}",
                    current.session_status
                )))
            }
            Err(error) => Err(ApiError::internal(error)),
        }
    }

    async fn store_upload(&self, id: Uuid, bytes: Bytes) -> Result<String, ApiError> {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let key = format!("{id}_{millis}");
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/octet-stream")
            .body(bytes.into())
            .send()
            .await
            .map_err(ApiError::internal)?;
        Ok(key)
    }

    /// A user's sessions with an event date in the range, through the user index.
    pub async fn of_user(
        &self,
        user: Uuid,
        start: Datetime,
        end: Datetime,
    ) -> Result<Vec<Session>, ApiError> {
        let mut pages = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .index_name(USER_INDEX)
            .key_condition_expression("user_id = :user AND event_date BETWEEN :start AND :end")
            .expression_attribute_values(":user", AttributeValue::S(user.to_string()))
            .expression_attribute_values(":start", AttributeValue::S(start.to_string()))
            .expression_attribute_values(":end", AttributeValue::S(end.to_string()))
            .into_paginator()
            .items()
            .send();
        let mut sessions = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(ApiError::internal)?;
            sessions.push(Session::from_item(&item)?);
        }
        Ok(sessions)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    event_date: Datetime,
    sensors: Vec<MacAddress>,
}

/// At most as many sensors as an accessory carries (the sync route's limit).
const MOST_SENSORS: usize = 3;

/// The namespace of session ids: fixed, so the same session is named the same on every run.
const SESSION_NAMESPACE: Uuid = uuid::uuid!("987dccb7-0849-4966-a660-e2cc40d23311");

/// A session's id, named (UUID v5) by what makes it the same session: its accessory, its sensors
/// in any order, its user and its event date. Firmware that resends a create whose answer it lost
/// gets the first session back, as the legacy service's name-based ids gave it.
pub fn session_id(
    accessory: &MacAddress,
    sensors: &[MacAddress],
    user: Uuid,
    event_date: Datetime,
) -> Uuid {
    let mut sensors: Vec<&str> = sensors.iter().map(MacAddress::as_str).collect();
    sensors.sort_unstable();
    let name = format!("{accessory}|{}|{user}|{event_date}", sensors.join(","));
    Uuid::new_v5(&SESSION_NAMESPACE, name.as_bytes())
}

pub async fn create(
    State(app): State<Preprocessing>,
    principal: Principal,
    Json(body): Json<NewSession>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Principal::Accessory(accessory) = principal else {
        return Err(ApiError::Forbidden(
            "only an accessory creates sessions".into(),
        ));
    };
    if body.sensors.len() > MOST_SENSORS {
        return Err(ApiError::InvalidSchema(format!(
            "sensors: at most {MOST_SENSORS}, got {}",
            body.sensors.len()
        )));
    }
    let user_id = app.owners.of(&accessory).await?;
    let now = Datetime::now();
    let session = Session {
        id: session_id(&accessory, &body.sensors, user_id, body.event_date),
        accessory_id: accessory,
        sensor_ids: body.sensors,
        user_id,
        event_date: body.event_date,
        session_status: SessionStatus::CreateComplete,
        created_date: now,
        updated_date: now,
    };
    let session = app.sessions.create(session).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "session": session })),
    ))
}

/// The session's accessory, its user, or a service.
fn may_touch(principal: &Principal, session: &Session) -> Result<(), ApiError> {
    match principal {
        Principal::Accessory(mac) if *mac == session.accessory_id => Ok(()),
        Principal::User(user) if *user == session.user_id => Ok(()),
        Principal::Service { .. } => Ok(()),
        _ => Err(ApiError::Forbidden(format!(
            "session {} belongs to another accessory and user",
            session.id
        ))),
    }
}

pub async fn get(
    State(app): State<Preprocessing>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = app.sessions.get(id).await?;
    may_touch(&principal, &session)?;
    Ok(Json(serde_json::json!({ "session": session })))
}

pub async fn upload(
    State(app): State<Preprocessing>,
    principal: Principal,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    kit::Body(body): kit::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.split(';').next().map(str::trim) != Some("application/octet-stream") {
        return Err(ApiError::UnsupportedContentType(
            "uploads are Content-Type: application/octet-stream".into(),
        ));
    }
    let session = app.sessions.get(id).await?;
    may_touch(&principal, &session)?;
    // The status first: an upload to a session that has moved on stores nothing.
    let session = app
        .sessions
        .advance(id, SessionStatus::UploadInProgress)
        .await?;
    let key = app.sessions.store_upload(id, body).await?;
    tracing::info!(%id, key, "stored an upload");
    Ok(Json(serde_json::json!({ "session": session })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPatch {
    session_status: String,
}

pub async fn patch(
    State(app): State<Preprocessing>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Json(body): Json<StatusPatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if body.session_status != SessionStatus::UploadComplete.as_str() {
        return Err(ApiError::InvalidSchema(format!(
            "session_status: only {} may be set here",
            SessionStatus::UploadComplete
        )));
    }
    let session = app.sessions.get(id).await?;
    may_touch(&principal, &session)?;
    let session = app
        .sessions
        .advance(id, SessionStatus::UploadComplete)
        .await?;
    Ok(Json(serde_json::json!({ "session": session })))
}

#[cfg(test)]
mod tests {
    use super::SessionStatus::*;
    use super::*;

    #[test]
    fn statuses_are_reached_only_from_earlier_ones_or_themselves() {
        assert_eq!(
            UploadInProgress.reachable_from(),
            [CreateComplete, UploadInProgress]
        );
        assert_eq!(
            UploadComplete.reachable_from(),
            [CreateComplete, UploadInProgress, UploadComplete]
        );
        // Neither end of processing can become the other.
        assert!(
            !ProcessingFailed
                .reachable_from()
                .contains(&ProcessingComplete)
        );
        assert!(
            !ProcessingComplete
                .reachable_from()
                .contains(&ProcessingFailed)
        );
        assert_eq!(CreateComplete.reachable_from(), [CreateComplete]);
        for status in SessionStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
    }

    #[test]
    fn a_session_is_named_by_accessory_sensors_in_any_order_user_and_event_date() {
        let mac = |s: &str| s.parse::<MacAddress>().unwrap();
        let (accessory, a, b) = (
            mac("0a:1b:2c:3d:4e:5f"),
            mac("AA:BB:CC:DD:EE:01"),
            mac("aa:bb:cc:dd:ee:02"),
        );
        let user = Uuid::from_u128(7);
        let date: Datetime = "2026-03-01T10:00:00+01:00".parse().unwrap();
        let id = session_id(&accessory, &[a.clone(), b.clone()], user, date);
        assert_eq!(id.get_version_num(), 5);
        assert_eq!(
            id,
            session_id(
                &accessory,
                &[b.clone(), a.clone()],
                user,
                "2026-03-01T09:00:00Z".parse().unwrap()
            ),
            "sensor order and the date's offset do not make another session"
        );
        for other in [
            session_id(&a, &[accessory.clone(), b.clone()], user, date),
            session_id(&accessory, std::slice::from_ref(&a), user, date),
            session_id(
                &accessory,
                &[a.clone(), b.clone()],
                Uuid::from_u128(8),
                date,
            ),
            session_id(
                &accessory,
                &[a, b],
                user,
                "2026-03-01T09:00:01Z".parse().unwrap(),
            ),
        ] {
            assert_ne!(id, other);
        }
    }
}
