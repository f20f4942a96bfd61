//! The emulator and seeded stores.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::types::CreateBucketConfiguration;
use axum::Router;
use hardware::{Config, Hardware};
use kit::AuthConfig;

pub use kit::testing::emulator;

/// A firmware table and bucket of their own, with unique names so tests can run in parallel.
pub struct FirmwareStores {
    pub table: String,
    pub bucket: String,
    dynamodb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
}

impl FirmwareStores {
    pub async fn create() -> FirmwareStores {
        let sdk = emulator().await;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let stores = FirmwareStores {
            table: kit::testing::table("firmware", "device_type", Some("version"), &[]).await,
            bucket: format!("firmware-{suffix}"),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            s3: kit::s3_client(sdk),
        };
        let region = sdk.region().expect("AWS_REGION is set").to_string();
        stores
            .s3
            .create_bucket()
            .bucket(&stores.bucket)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(region.as_str().into())
                    .build(),
            )
            .send()
            .await
            .expect("the emulator creates the firmware bucket");
        stores
    }

    /// Records a release in the index; `extra` adds attributes such as `notes`.
    pub async fn release(
        &self,
        device_type: &str,
        version: &str,
        created_date: &str,
        extra: &[(&str, &str)],
    ) {
        let mut put = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("device_type", AttributeValue::S(device_type.into()))
            .item("version", AttributeValue::S(version.into()))
            .item("created_date", AttributeValue::S(created_date.into()));
        for (name, value) in extra {
            put = put.item(*name, AttributeValue::S((*value).into()));
        }
        put.send()
            .await
            .expect("the emulator stores the firmware item");
    }

    pub async fn upload(&self, key: &str, bytes: &[u8]) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(bytes.to_vec().into())
            .send()
            .await
            .expect("the emulator stores the firmware binary");
    }

    pub async fn router(&self) -> Router {
        router_for(self.table.clone(), self.bucket.clone()).await
    }
}

/// The hardware router with the test configuration, adjusted by `adjust`.
pub async fn router_with(adjust: impl FnOnce(&mut Config)) -> Router {
    let mut config = test_config("firmware-unused".into(), "firmware-unused".into()).await;
    adjust(&mut config);
    hardware::router(Hardware::new(config, emulator().await))
}

pub async fn test_config(firmware_table: String, firmware_bucket: String) -> Config {
    Config {
        firmware_table,
        firmware_bucket,
        sync_table: "sync-unused".into(),
        database: kit::testing::no_database().await,
        accessory_pool_id: "us-west-2_nopool".into(),
        accessory_client_id: "no-client".into(),
        auth: AuthConfig {
            service_secret: Some(kit::testing::service_secret().await),
            service_audience: Some("hardware".into()),
            ..AuthConfig::default()
        },
    }
}

pub async fn router_for(firmware_table: String, firmware_bucket: String) -> Router {
    let config = test_config(firmware_table, firmware_bucket).await;
    router_with(|adjusted| *adjusted = config).await
}

/// The binary of accessory firmware 1.10: every byte value, so any text mangling shows.
pub fn accessory_1_10_binary() -> Vec<u8> {
    (0..=255u8).rev().chain(0..=255u8).collect()
}

/// A table and bucket with the releases the tests expect.
pub async fn seeded() -> Arc<FirmwareStores> {
    let stores = FirmwareStores::create().await;
    stores
        .release("accessory", "1.9", "2026-01-10T08:00:00Z", &[])
        .await;
    stores
        .release(
            "accessory",
            "1.10",
            "2026-02-01T09:30:00Z",
            &[("notes", "fixes pairing")],
        )
        .await;
    stores
        .release("accessory", "1.2.3", "2025-06-01T12:00:00Z", &[])
        .await;
    stores
        .release("sensor", "2.0", "2026-03-01T00:00:00Z", &[])
        .await;
    stores
        .upload("accessory/1.10", &accessory_1_10_binary())
        .await;
    stores.upload("accessory/1.9", b"firmware 1.9").await;
    Arc::new(stores)
}
