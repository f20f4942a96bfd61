//! Who owns an accessory, asked of the hardware API with a service token.

use kit::{ApiError, MacAddress, Secret, ServiceSecret};
use uuid::Uuid;

#[derive(Debug)]
pub struct Owners {
    /// Built at the first lookup, so that cold starts that never look an owner up do not build a
    /// connection pool and TLS configuration they will not use.
    http: std::sync::OnceLock<reqwest::Client>,
    hardware_url: String,
    /// The service secret, read from Secrets Manager.
    secret: Secret<ServiceSecret>,
    issuer: Option<String>,
}

impl Owners {
    pub fn new(
        hardware_url: String,
        secret: Secret<ServiceSecret>,
        issuer: Option<String>,
    ) -> Owners {
        Owners {
            http: std::sync::OnceLock::new(),
            hardware_url: hardware_url.trim_end_matches('/').to_owned(),
            secret,
            issuer,
        }
    }

    /// The owner of `mac`; an accessory the hardware API does not know, or one without an owner,
    /// may not record sessions.
    pub async fn of(&self, mac: &MacAddress) -> Result<Uuid, ApiError> {
        let secret = self.secret.get().await?;
        let http = self
            .http
            .get_or_init(|| kit::tls::http_client(std::time::Duration::from_secs(5)));
        let response = http
            .get(format!("{}/accessory/{mac}", self.hardware_url))
            .header(
                "authorization",
                secret
                    .current
                    .issue("preprocessing", "hardware", self.issuer.as_deref()),
            )
            .send()
            .await
            .map_err(ApiError::internal)?;
        match response.status().as_u16() {
            200 => {}
            404 => {
                return Err(ApiError::Forbidden(format!(
                    "accessory {mac} is not registered"
                )));
            }
            status => {
                return Err(ApiError::internal(format!(
                    "the hardware API answered {status} for accessory {mac}"
                )));
            }
        }
        let body: serde_json::Value = response.json().await.map_err(ApiError::internal)?;
        body["accessory"]["owner_id"]
            .as_str()
            .and_then(|owner| owner.parse().ok())
            .ok_or_else(|| {
                ApiError::Forbidden(format!(
                    "accessory {mac} has no owner; set its owner_id before recording sessions"
                ))
            })
    }
}
