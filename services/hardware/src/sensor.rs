//! Sensors, in the legacy PostgreSQL database: merge patches of one sensor or of several in one
//! transaction (all or nothing).

use axum::extract::State;
use axum::http::StatusCode;
use kit::{ApiError, Json, MacAddress, Path, Principal};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use crate::{Hardware, Version};

/// The fields of a sensor a patch may set, which are also its columns.
const FIELDS: [&str; 4] = [
    "firmware_version",
    "battery_level",
    "memory_level",
    "gyro_offset",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sensor {
    pub mac_address: MacAddress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_level: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_level: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gyro_offset: Option<Vec<f64>>,
}

/// One column's new value: `None` clears it (a `null` in the patch).
#[derive(Debug, Clone)]
enum Column {
    Text(Option<String>),
    Number(Option<f64>),
    Numbers(Option<Vec<f64>>),
}

impl Column {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Text(value) => value,
            Column::Number(value) => value,
            Column::Numbers(value) => value,
        }
    }
}

/// A checked merge patch of one sensor.
#[derive(Debug, Clone)]
pub struct SensorPatch {
    pub mac: MacAddress,
    columns: Vec<(&'static str, Column)>,
}

impl SensorPatch {
    /// Checks `patch`; problems name the field, under `path` (like `sensors[1].`).
    pub fn parse(
        mac: MacAddress,
        patch: &Map<String, Value>,
        path: &str,
    ) -> Result<SensorPatch, ApiError> {
        let mut columns = Vec::new();
        for (name, value) in patch {
            let invalid = |what: &str| ApiError::InvalidSchema(format!("{path}{name}: {what}"));
            let Some(field) = FIELDS.iter().find(|f| *f == name) else {
                return Err(invalid(&format!(
                    "not a field of a sensor (those are {})",
                    FIELDS.join(", ")
                )));
            };
            let column = match (*field, value) {
                ("firmware_version", Value::Null) => Column::Text(None),
                ("firmware_version", value) => Column::Text(Some(
                    value
                        .as_str()
                        .and_then(|v| v.parse::<Version>().ok())
                        .ok_or_else(|| invalid("expected MAJOR.MINOR or MAJOR.MINOR.PATCH"))?
                        .to_string(),
                )),
                ("gyro_offset", Value::Null) => Column::Numbers(None),
                ("gyro_offset", value) => Column::Numbers(Some(
                    value
                        .as_array()
                        .filter(|items| items.len() == 3)
                        .and_then(|items| {
                            items.iter().map(Value::as_f64).collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| invalid("expected exactly 3 numbers"))?,
                )),
                (_, Value::Null) => Column::Number(None),
                (_, value) => Column::Number(Some(
                    value
                        .as_f64()
                        .filter(|level| (0.0..=1.0).contains(level))
                        .ok_or_else(|| invalid("expected a number from 0 to 1"))?,
                )),
            };
            columns.push((*field, column));
        }
        Ok(SensorPatch { mac, columns })
    }

    /// Inserts or merges; returns the sensor and whether it was created.
    async fn apply(&self, client: &impl GenericClient) -> Result<(Sensor, bool), ApiError> {
        let mut names = vec!["mac_address"];
        let mut values: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let mac = self.mac.as_str();
        values.push(&mac);
        for (name, column) in &self.columns {
            names.push(name);
            values.push(column.as_sql());
        }
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let mut updates: Vec<String> = self
            .columns
            .iter()
            .map(|(name, _)| format!("{name} = EXCLUDED.{name}"))
            .collect();
        updates.push("updated_at = now()".to_owned());
        // Column names come from FIELDS only; values are parameters.
        let sql = format!(
            "INSERT INTO sensors ({}) VALUES ({}) ON CONFLICT (mac_address) DO UPDATE SET {} \
             RETURNING (xmax = 0) AS created, mac_address, firmware_version, battery_level, \
             memory_level, gyro_offset",
            names.join(", "),
            placeholders.join(", "),
            updates.join(", ")
        );
        let row = client
            .query_one(&sql, &values)
            .await
            .map_err(ApiError::internal)?;
        let mac: String = row.get("mac_address");
        Ok((
            Sensor {
                mac_address: mac.parse().map_err(ApiError::internal)?,
                firmware_version: row.get("firmware_version"),
                battery_level: row.get("battery_level"),
                memory_level: row.get("memory_level"),
                gyro_offset: row.get("gyro_offset"),
            },
            row.get("created"),
        ))
    }
}

/// Applies every patch in one transaction: all of them, or none.
pub async fn apply_all(
    hardware: &Hardware,
    patches: &[SensorPatch],
) -> Result<Vec<Sensor>, ApiError> {
    let mut client = hardware.database.connection().await?;
    let transaction = client.transaction().await.map_err(ApiError::internal)?;
    let mut sensors = Vec::new();
    for patch in patches {
        sensors.push(patch.apply(&transaction).await?.0);
    }
    transaction.commit().await.map_err(ApiError::internal)?;
    Ok(sensors)
}

/// Accessories keep their sensors up to date, and services may; users may not.
fn may_write(principal: &Principal) -> Result<(), ApiError> {
    match principal {
        Principal::Accessory(_) | Principal::Service { .. } => Ok(()),
        Principal::User(_) => Err(ApiError::Forbidden(
            "sensors are written by accessories and services".into(),
        )),
    }
}

pub async fn patch_one(
    State(hardware): State<Hardware>,
    principal: Principal,
    Path(mac): Path<MacAddress>,
    Json(body): Json<Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    may_write(&principal)?;
    let patch = SensorPatch::parse(mac, &body, "")?;
    let client = hardware.database.connection().await?;
    let (sensor, created) = patch.apply(&*client).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(serde_json::json!({ "sensor": sensor }))))
}

/// Parses `{"sensors": [Sensor with mac_address, …]}` entries (at most `most`).
pub fn parse_list(
    items: &[Value],
    field: &str,
    least: usize,
    most: usize,
) -> Result<Vec<SensorPatch>, ApiError> {
    if !(least..=most).contains(&items.len()) {
        return Err(ApiError::InvalidSchema(format!(
            "{field}: expected {least} to {most} sensors, got {}",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let path = format!("{field}[{index}].");
            let mut object = item.as_object().cloned().ok_or_else(|| {
                ApiError::InvalidSchema(format!("{field}[{index}]: expected an object"))
            })?;
            let mac = object
                .remove("mac_address")
                .and_then(|mac| mac.as_str().and_then(|m| m.parse::<MacAddress>().ok()))
                .ok_or_else(|| {
                    ApiError::InvalidSchema(format!("{path}mac_address: expected a MAC address"))
                })?;
            SensorPatch::parse(mac, &object, &path)
        })
        .collect()
}

/// The most sensors one request may change.
const MOST_PER_CALL: usize = 100;

pub async fn patch_many(
    State(hardware): State<Hardware>,
    principal: Principal,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    may_write(&principal)?;
    let items = body
        .get("sensors")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::InvalidSchema("sensors: expected a list of sensors".into()))?;
    if let Some(other) = body.keys().find(|key| *key != "sensors") {
        return Err(ApiError::InvalidSchema(format!("{other}: unknown field")));
    }
    let patches = parse_list(items, "sensors", 1, MOST_PER_CALL)?;
    let sensors = apply_all(&hardware, &patches).await?;
    Ok(Json(serde_json::json!({ "sensors": sensors })))
}
