//! The hardware service's configuration, as the template sets it.

use kit::{AuthConfig, ConfigError, Env, SecretArn};

#[derive(Debug, Clone)]
pub struct Config {
    /// DynamoDB table of released firmware, keyed by `device_type` and `version`.
    pub firmware_table: String,
    /// S3 bucket holding each firmware binary at `<device_type>/<version>`.
    pub firmware_bucket: String,
    /// DynamoDB table of accessory syncs, keyed by `mac_address` and `event_date`.
    pub sync_table: String,
    /// The secret holding the URL of the legacy PostgreSQL database, where sensors live.
    pub database: SecretArn,
    /// The Cognito user pool of accessories (username = MAC address).
    pub accessory_pool_id: String,
    /// Its app client, allowed the admin password flow.
    pub accessory_client_id: String,
    pub auth: AuthConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        Ok(Config {
            firmware_table: env
                .required("FIRMWARE_TABLE", "the DynamoDB table of released firmware")?,
            firmware_bucket: env
                .required("FIRMWARE_BUCKET", "the S3 bucket of firmware binaries")?,
            sync_table: env.required("SYNC_TABLE", "the DynamoDB table of accessory syncs")?,
            database: env.required_parsed(
                "DATABASE_SECRET_ARN",
                "the secret holding the URL of the legacy PostgreSQL database (sensors)",
            )?,
            accessory_pool_id: env.required(
                "ACCESSORY_USER_POOL_ID",
                "the Cognito user pool of accessories",
            )?,
            accessory_client_id: env.required(
                "ACCESSORY_CLIENT_ID",
                "the accessory pool's app client, allowed ADMIN_USER_PASSWORD_AUTH",
            )?,
            auth: AuthConfig::from_env(env, "hardware")?,
        })
    }
}
