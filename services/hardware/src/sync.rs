//! `POST /accessory/{mac}/sync`: an accessory reports its state and its sensors'; the service
//! stores both, appends a row to the sync log, and answers with the latest firmware.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::extract::State;
use kit::{ApiError, Datetime, Json, MacAddress, Path, Principal};
use serde_json::{Map, Value, json};

use crate::accessory::Patch;
use crate::firmware::DeviceType;
use crate::{Hardware, sensor};

/// An accessory carries at most three sensors.
const MOST_SENSORS: usize = 3;

/// The sync log: one row per (accessory, event date). A sync sent again with the same event date
/// replaces its row, so a retried request is harmless.
#[derive(Debug)]
pub struct SyncLog {
    dynamodb: kit::Lazy<aws_sdk_dynamodb::Client>,
    table: String,
}

impl SyncLog {
    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> SyncLog {
        SyncLog {
            dynamodb: kit::Lazy::new(sdk, aws_sdk_dynamodb::Client::new),
            table,
        }
    }

    async fn append(
        &self,
        mac: &MacAddress,
        event_date: Datetime,
        report: &Value,
    ) -> Result<(), ApiError> {
        let item = HashMap::from([
            ("mac_address".to_owned(), AttributeValue::S(mac.to_string())),
            (
                "event_date".to_owned(),
                AttributeValue::S(event_date.to_string()),
            ),
            ("report".to_owned(), AttributeValue::S(report.to_string())),
            (
                "synced_date".to_owned(),
                AttributeValue::S(Datetime::now().to_string()),
            ),
        ]);
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(ApiError::internal)?;
        Ok(())
    }
}

pub async fn sync(
    State(hardware): State<Hardware>,
    principal: Principal,
    Path(mac): Path<MacAddress>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    match &principal {
        Principal::Accessory(caller) if *caller == mac => {}
        Principal::Service { .. } => {}
        _ => {
            return Err(ApiError::Forbidden(format!(
                "only accessory {mac} itself or a service may sync it"
            )));
        }
    }
    if let Some(other) = body
        .keys()
        .find(|key| !["event_date", "accessory", "sensors"].contains(&key.as_str()))
    {
        return Err(ApiError::InvalidSchema(format!("{other}: unknown field")));
    }
    let event_date: Datetime = body
        .get("event_date")
        .and_then(Value::as_str)
        .and_then(|date| date.parse().ok())
        .ok_or_else(|| {
            ApiError::InvalidSchema("event_date: expected an ISO 8601 datetime".into())
        })?;
    let accessory = body
        .get("accessory")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ApiError::InvalidSchema("accessory: expected an object of accessory fields".into())
        })?;
    let accessory = Patch::parse(accessory, "accessory.")?;
    let sensors = match body.get("sensors") {
        Some(Value::Array(items)) => sensor::parse_list(items, "sensors", 0, MOST_SENSORS)?,
        None => Vec::new(),
        Some(_) => return Err(ApiError::InvalidSchema("sensors: expected a list".into())),
    };

    let accessory = hardware.accessories.patch(&mac, &accessory).await?;
    let sensors = sensor::apply_all(&hardware, &sensors).await?;
    let report = json!({ "accessory": accessory, "sensors": sensors });
    hardware.sync_log.append(&mac, event_date, &report).await?;
    let latest = |device| {
        let firmware = hardware.firmware.clone();
        async move { firmware.latest(device).await }
    };
    Ok(Json(json!({
        "accessory": accessory,
        "sensors": sensors,
        "latest_firmware": {
            "accessory": latest(DeviceType::Accessory).await?,
            "sensor": latest(DeviceType::Sensor).await?,
        },
    })))
}
