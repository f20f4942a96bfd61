//! Small public helpers for devices without a clock or a random source.

use kit::{Datetime, Json};
use serde_json::{Value, json};
use uuid::Uuid;

pub async fn uuid() -> Json<Value> {
    Json(json!({ "uuid": Uuid::new_v4() }))
}

pub async fn time() -> Json<Value> {
    Json(json!({ "current_date": Datetime::now() }))
}
