//! Released firmware: its index in DynamoDB, its binaries in S3.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use kit::{ApiError, Json, Path};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Hardware;
use crate::version::Version;

/// The kinds of device that run our firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    Accessory,
    Sensor,
}

impl FromStr for DeviceType {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "accessory" => Ok(DeviceType::Accessory),
            "sensor" => Ok(DeviceType::Sensor),
            _ => Err(ApiError::InvalidSchema(
                "device_type: expected 'accessory' or 'sensor'".into(),
            )),
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceType::Accessory => "accessory",
            DeviceType::Sensor => "sensor",
        })
    }
}

/// One released firmware, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Firmware {
    pub device_type: DeviceType,
    #[serde(serialize_with = "serialize_display")]
    pub version: Version,
    pub created_date: kit::Datetime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

fn serialize_display<S: serde::Serializer>(
    value: &Version,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Where firmware lives: the index table and the bucket of binaries.
#[derive(Debug)]
pub struct FirmwareStore {
    dynamodb: kit::Lazy<aws_sdk_dynamodb::Client>,
    s3: kit::Lazy<aws_sdk_s3::Client>,
    table: String,
    bucket: String,
}

impl FirmwareStore {
    pub fn new(sdk: &aws_config::SdkConfig, table: String, bucket: String) -> FirmwareStore {
        FirmwareStore {
            dynamodb: kit::Lazy::new(sdk, aws_sdk_dynamodb::Client::new),
            s3: kit::Lazy::new(sdk, kit::s3_client),
            table,
            bucket,
        }
    }

    /// Resolves `wanted`, a version or `latest`; a malformed version is as absent as an unknown one.
    pub async fn find(&self, device: DeviceType, wanted: &str) -> Result<Firmware, ApiError> {
        if wanted == "latest" {
            return self.latest(device).await?.ok_or_else(|| {
                ApiError::NoSuchEntity(format!("no {device} firmware has been released"))
            });
        }
        let missing =
            || ApiError::NoSuchEntity(format!("there is no {device} firmware version {wanted}"));
        let version: Version = wanted.parse().map_err(|_| missing())?;
        self.exact(device, version).await?.ok_or_else(missing)
    }

    async fn exact(
        &self,
        device: DeviceType,
        version: Version,
    ) -> Result<Option<Firmware>, ApiError> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("device_type", AttributeValue::S(device.to_string()))
            .key("version", AttributeValue::S(version.to_string()))
            .send()
            .await
            .map_err(ApiError::internal)?
            .item;
        item.map(|item| firmware_from_item(&item)).transpose()
    }

    /// The numerically highest version; versions are strings in the table, so DynamoDB cannot sort them.
    pub async fn latest(&self, device: DeviceType) -> Result<Option<Firmware>, ApiError> {
        let mut pages = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("device_type = :device")
            .expression_attribute_values(":device", AttributeValue::S(device.to_string()))
            .into_paginator()
            .items()
            .send();
        let mut latest: Option<Firmware> = None;
        while let Some(item) = pages.next().await {
            let item = item.map_err(ApiError::internal)?;
            match firmware_from_item(&item) {
                Ok(firmware)
                    if latest
                        .as_ref()
                        .is_none_or(|best| firmware.version > best.version) =>
                {
                    latest = Some(firmware);
                }
                Ok(_) => {}
                Err(_) => tracing::warn!(?item, "skipping a malformed firmware item"),
            }
        }
        Ok(latest)
    }

    /// The binary of a release, from `<device_type>/<version>` in the bucket.
    pub async fn binary(&self, firmware: &Firmware) -> Result<Vec<u8>, ApiError> {
        let key = format!("{}/{}", firmware.device_type, firmware.version);
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        let object = match object {
            Ok(object) => object,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(ApiError::NoSuchEntity(format!(
                    "the binary of {} firmware {} is missing",
                    firmware.device_type, firmware.version
                )));
            }
            Err(error) => return Err(ApiError::internal(error)),
        };
        let bytes = object.body.collect().await.map_err(ApiError::internal)?;
        Ok(bytes.to_vec())
    }
}

fn firmware_from_item(item: &HashMap<String, AttributeValue>) -> Result<Firmware, ApiError> {
    let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok());
    let corrupt =
        |name: &str| ApiError::internal(format!("firmware item has a missing or malformed {name}"));
    Ok(Firmware {
        device_type: text("device_type")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("device_type"))?,
        version: text("version")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("version"))?,
        created_date: text("created_date")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("created_date"))?,
        notes: text("notes").cloned(),
    })
}

/// `GET /firmware/{device_type}/{version}`
pub async fn describe(
    State(hardware): State<Hardware>,
    Path((device_type, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let device: DeviceType = device_type.parse()?;
    let firmware = hardware.firmware.find(device, &version).await?;
    Ok(Json(json!({ "firmware": firmware })))
}

/// `GET /firmware/{device_type}/{version}/download`: the binary itself.
pub async fn download(
    State(hardware): State<Hardware>,
    Path((device_type, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let device: DeviceType = device_type.parse()?;
    let firmware = hardware.firmware.find(device, &version).await?;
    let binary = hardware.firmware.binary(&firmware).await?;
    Ok(([(CONTENT_TYPE, "application/octet-stream")], binary).into_response())
}
