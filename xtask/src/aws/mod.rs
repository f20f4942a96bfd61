//! AWS, and nothing above it: the SDK's configuration and the calls the release tool makes of S3,
//! CloudFormation, Lambda and CloudWatch Logs, each with the context a failure needs. Every list follows every page.

pub mod clock;
pub mod cloudformation;
pub mod config;
pub mod lambda;
pub mod logs;
pub mod s3;

pub use config::{
    Connection, DEFAULT_REGION, check_credentials, check_home, region_of, s3_client, sdk_config,
    sdk_config_of, template_key_of, template_url,
};
