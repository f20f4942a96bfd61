//! Accessories: identities in a Cognito user pool (username = MAC address), their fields kept as
//! `custom:` attributes. Register, log in (answering the first-login password challenge), read
//! and merge-patch.

use std::collections::BTreeMap;

use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::types::{
    AttributeType, AuthFlowType, ChallengeNameType, MessageActionType,
};
use axum::extract::State;
use axum::http::StatusCode;
use kit::{ApiError, Datetime, Json, Label, MacAddress, Path, Principal};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Hardware, Version};

/// The fields a patch may change; `hardware_model` is set once, at registration.
pub const MUTABLE: [&str; 7] = [
    "firmware_version",
    "bluetooth_name",
    "battery_level",
    "memory_level",
    "state",
    "settings_key",
    "owner_id",
];
const NUMBERS: [&str; 2] = ["battery_level", "memory_level"];

/// An accessory as the contract shows it; absent fields are omitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Accessory {
    pub mac_address: String,
    #[serde(flatten)]
    pub fields: BTreeMap<String, Value>,
}

impl Accessory {
    pub fn owner(&self) -> Option<uuid::Uuid> {
        self.fields.get("owner_id")?.as_str()?.parse().ok()
    }

    fn from_attributes(mac: &MacAddress, attributes: &[AttributeType]) -> Accessory {
        let fields = attributes
            .iter()
            .filter_map(|attribute| {
                let name = attribute.name().strip_prefix("custom:")?;
                let value = attribute.value()?;
                let value = if NUMBERS.contains(&name) {
                    Value::from(value.parse::<f64>().ok()?)
                } else {
                    Value::from(value)
                };
                Some((name.to_owned(), value))
            })
            .collect();
        Accessory {
            mac_address: mac.to_string(),
            fields,
        }
    }
}

/// Checks one field of a patch; returns the attribute value to store.
pub fn field_value(name: &str, value: &Value) -> Result<String, String> {
    let text = |value: &Value| {
        value
            .as_str()
            .and_then(|s| s.parse::<Label>().ok())
            .map(Label::into_string)
            .ok_or_else(|| format!("{name}: expected a string of 1 to 256 characters"))
    };
    match name {
        "battery_level" | "memory_level" => value
            .as_f64()
            .filter(|level| (0.0..=1.0).contains(level))
            .map(|level| level.to_string())
            .ok_or_else(|| format!("{name}: expected a number from 0 to 1")),
        "owner_id" => value
            .as_str()
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .map(|id| id.to_string())
            .ok_or_else(|| format!("{name}: expected a UUID")),
        "firmware_version" => {
            let version = text(value)?;
            version
                .parse::<Version>()
                .map(|v| v.to_string())
                .map_err(|_| format!("{name}: expected MAJOR.MINOR or MAJOR.MINOR.PATCH"))
        }
        "bluetooth_name" | "state" | "settings_key" => text(value),
        other => Err(format!(
            "{other}: not a field that can be changed (those are {})",
            MUTABLE.join(", ")
        )),
    }
}

/// A JSON merge patch (RFC 7396) of an accessory: values to set, and fields to remove (`null`).
#[derive(Debug, Default)]
pub struct Patch {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl Patch {
    pub fn parse(patch: &Map<String, Value>, path: &str) -> Result<Patch, ApiError> {
        let mut parsed = Patch::default();
        for (name, value) in patch {
            if !MUTABLE.contains(&name.as_str()) {
                return Err(ApiError::InvalidSchema(format!(
                    "{path}{name}: not a field that can be changed (those are {})",
                    MUTABLE.join(", ")
                )));
            }
            if value.is_null() {
                parsed.remove.push(name.clone());
            } else {
                let value = field_value(name, value)
                    .map_err(|problem| ApiError::InvalidSchema(format!("{path}{problem}")))?;
                parsed.set.push((name.clone(), value));
            }
        }
        Ok(parsed)
    }
}

#[derive(Debug)]
pub struct AccessoryStore {
    cognito: kit::Lazy<aws_sdk_cognitoidentityprovider::Client>,
    pool_id: String,
    client_id: String,
}

fn attribute(name: &str, value: &str) -> AttributeType {
    AttributeType::builder()
        .name(format!("custom:{name}"))
        .value(value)
        .build()
        .expect("a name is set")
}

fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
}

impl AccessoryStore {
    pub fn new(sdk: &aws_config::SdkConfig, pool_id: String, client_id: String) -> AccessoryStore {
        AccessoryStore {
            cognito: kit::Lazy::new(sdk, aws_sdk_cognitoidentityprovider::Client::new),
            pool_id,
            client_id,
        }
    }

    /// Registers the accessory with its password as the permanent one, all or nothing: when the
    /// pool refuses the password, the identity just created is deleted again, so registering can
    /// be retried and no accessory is left that could never log in.
    pub async fn register(&self, mac: &MacAddress, body: &Registration) -> Result<(), ApiError> {
        let created = self
            .cognito
            .admin_create_user()
            .user_pool_id(&self.pool_id)
            .username(mac.as_str())
            // No temporary password: Cognito makes a throwaway one, replaced below.
            .message_action(MessageActionType::Suppress)
            .user_attributes(attribute("hardware_model", &body.hardware_model))
            .user_attributes(attribute("firmware_version", &body.firmware_version))
            .user_attributes(attribute("settings_key", &body.settings_key))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(error) if code(&error) == Some("UsernameExistsException") => {
                return Err(ApiError::DuplicateEntity(format!(
                    "accessory {mac} is registered already"
                )));
            }
            Err(error) => return Err(ApiError::internal(error)),
        }
        // The pool checks the password against its policy here.
        let set = self
            .cognito
            .admin_set_user_password()
            .user_pool_id(&self.pool_id)
            .username(mac.as_str())
            .password(&body.password)
            .permanent(true)
            .send()
            .await;
        let Err(error) = set else {
            return Ok(());
        };
        let refused = code(&error) == Some("InvalidPasswordException");
        self.cognito
            .admin_delete_user()
            .user_pool_id(&self.pool_id)
            .username(mac.as_str())
            .send()
            .await
            .map_err(ApiError::internal)?;
        Err(if refused {
            ApiError::InvalidSchema(format!(
                "password: not accepted by the accessory pool's policy ({})",
                Password::RULE
            ))
        } else {
            ApiError::internal(error)
        })
    }

    /// Logs in. Returns the ID token and its lifetime in seconds. Registration sets the permanent
    /// password, so no challenge comes; an accessory registered before it did (with a temporary
    /// password) meets the pool's new-password challenge once, answered with the same password.
    pub async fn login(&self, mac: &MacAddress, password: &str) -> Result<(String, i32), ApiError> {
        let refused = |error: &SdkError<_, _>| match code(error) {
            Some("NotAuthorizedException") => Some(ApiError::Unauthorized("wrong password".into())),
            Some("UserNotFoundException") => {
                Some(ApiError::NoSuchEntity(format!("no accessory {mac}")))
            }
            _ => None,
        };
        let started = self
            .cognito
            .admin_initiate_auth()
            .user_pool_id(&self.pool_id)
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::AdminUserPasswordAuth)
            .auth_parameters("USERNAME", mac.as_str())
            .auth_parameters("PASSWORD", password)
            .send()
            .await;
        let started = match started {
            Ok(output) => output,
            Err(error) => return Err(refused(&error).unwrap_or_else(|| ApiError::internal(error))),
        };
        let result = if started.challenge_name() == Some(&ChallengeNameType::NewPasswordRequired) {
            self.cognito
                .admin_respond_to_auth_challenge()
                .user_pool_id(&self.pool_id)
                .client_id(&self.client_id)
                .challenge_name(ChallengeNameType::NewPasswordRequired)
                .challenge_responses("USERNAME", mac.as_str())
                .challenge_responses("NEW_PASSWORD", password)
                .set_session(started.session().map(str::to_owned))
                .send()
                .await
                .map_err(ApiError::internal)?
                .authentication_result
        } else {
            started.authentication_result
        };
        let result = result.ok_or_else(|| {
            ApiError::internal(
                "the accessory pool answered with neither tokens nor a known challenge",
            )
        })?;
        let token = result
            .id_token()
            .ok_or_else(|| ApiError::internal("the accessory pool issued no ID token"))?;
        Ok((token.to_owned(), result.expires_in()))
    }

    pub async fn get(&self, mac: &MacAddress) -> Result<Accessory, ApiError> {
        match self
            .cognito
            .admin_get_user()
            .user_pool_id(&self.pool_id)
            .username(mac.as_str())
            .send()
            .await
        {
            Ok(user) => Ok(Accessory::from_attributes(mac, user.user_attributes())),
            Err(error) if code(&error) == Some("UserNotFoundException") => {
                Err(ApiError::NoSuchEntity(format!("no accessory {mac}")))
            }
            Err(error) => Err(ApiError::internal(error)),
        }
    }

    /// Applies a merge patch; the accessory must exist.
    pub async fn patch(&self, mac: &MacAddress, patch: &Patch) -> Result<Accessory, ApiError> {
        self.get(mac).await?;
        if !patch.set.is_empty() {
            self.cognito
                .admin_update_user_attributes()
                .user_pool_id(&self.pool_id)
                .username(mac.as_str())
                .set_user_attributes(Some(
                    patch
                        .set
                        .iter()
                        .map(|(name, value)| attribute(name, value))
                        .collect(),
                ))
                .send()
                .await
                .map_err(ApiError::internal)?;
        }
        if !patch.remove.is_empty() {
            self.cognito
                .admin_delete_user_attributes()
                .user_pool_id(&self.pool_id)
                .username(mac.as_str())
                .set_user_attribute_names(Some(
                    patch
                        .remove
                        .iter()
                        .map(|name| format!("custom:{name}"))
                        .collect(),
                ))
                .send()
                .await
                .map_err(ApiError::internal)?;
        }
        self.get(mac).await
    }
}

/// A password: 8 to 256 characters (Cognito's longest), no leading or trailing spaces.
#[derive(Debug)]
pub struct Password(String);

impl Password {
    /// The rule, as messages name it.
    pub const RULE: &'static str = "8 to 256 characters, no leading or trailing spaces";
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let length = text.chars().count();
        if length < 8 {
            return Err(serde::de::Error::custom("expected at least 8 characters"));
        }
        if length > 256 {
            return Err(serde::de::Error::custom("expected at most 256 characters"));
        }
        if text.trim() != text {
            return Err(serde::de::Error::custom(
                "must not begin or end with a space",
            ));
        }
        Ok(Password(text))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationBody {
    password: Password,
    hardware_model: Label,
    firmware_version: Version,
    settings_key: Label,
}

/// What registration stores, checked.
#[derive(Debug)]
pub struct Registration {
    password: String,
    hardware_model: String,
    firmware_version: String,
    settings_key: String,
}

pub async fn register(
    State(hardware): State<Hardware>,
    Path(mac): Path<MacAddress>,
    Json(body): Json<RegistrationBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let registration = Registration {
        password: body.password.0,
        hardware_model: body.hardware_model.into_string(),
        firmware_version: body.firmware_version.to_string(),
        settings_key: body.settings_key.into_string(),
    };
    hardware.accessories.register(&mac, &registration).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"status": "success"})),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    password: String,
}

pub async fn login(
    State(hardware): State<Hardware>,
    Path(mac): Path<MacAddress>,
    Json(body): Json<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let (jwt, expires_in) = hardware.accessories.login(&mac, &body.password).await?;
    let expires =
        Datetime::from_utc(chrono::Utc::now() + chrono::Duration::seconds(i64::from(expires_in)));
    Ok(Json(serde_json::json!({
        "authorization": {"jwt": jwt, "expires": expires},
        "mac_address": mac,
    })))
}

/// The accessory itself, any service, and (to read) the accessory's owner.
fn may_touch(
    principal: &Principal,
    mac: &MacAddress,
    owner: Option<uuid::Uuid>,
) -> Result<(), ApiError> {
    match principal {
        Principal::Accessory(caller) if caller == mac => Ok(()),
        Principal::Service { .. } => Ok(()),
        Principal::User(user) if owner == Some(*user) => Ok(()),
        _ => Err(ApiError::Forbidden(format!(
            "only accessory {mac} itself, its owner or a service may do that"
        ))),
    }
}

pub async fn get(
    State(hardware): State<Hardware>,
    principal: Principal,
    Path(mac): Path<MacAddress>,
) -> Result<Json<Value>, ApiError> {
    // Who may read depends on the owner, so an unknown accessory is a 404 to anyone authenticated.
    let accessory = hardware.accessories.get(&mac).await?;
    may_touch(&principal, &mac, accessory.owner())?;
    Ok(Json(serde_json::json!({ "accessory": accessory })))
}

pub async fn patch(
    State(hardware): State<Hardware>,
    principal: Principal,
    Path(mac): Path<MacAddress>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    may_touch(&principal, &mac, None)?;
    let patch = Patch::parse(&body, "")?;
    let accessory = hardware.accessories.patch(&mac, &patch).await?;
    Ok(Json(serde_json::json!({ "accessory": accessory })))
}
