//! The hardware service's configuration, as the template sets it.

use kit::{AuthConfig, ConfigError, Env};

#[derive(Debug, Clone)]
pub struct Config {
    /// DynamoDB table of released firmware, keyed by `device_type` and `version`.
    pub firmware_table: String,
    /// S3 bucket holding each firmware binary at `<device_type>/<version>`.
    pub firmware_bucket: String,
    pub auth: AuthConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        Ok(Config {
            firmware_table: env
                .required("FIRMWARE_TABLE", "the DynamoDB table of released firmware")?,
            firmware_bucket: env
                .required("FIRMWARE_BUCKET", "the S3 bucket of firmware binaries")?,
            auth: AuthConfig::from_env(env)?,
        })
    }
}
