//! The hardware API: accessories, sensors and firmware for the biometrix fleet.
//!
//! [`router`] is the whole API; `main.rs` only reads the configuration, builds the clients once and
//! serves the router on Lambda or locally.

mod accessory;
mod config;
mod firmware;
mod misc;
mod sensor;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod version;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, patch, post};
use kit::Verifier;
use kit::db::Database;

pub use accessory::{Accessory, AccessoryStore};
pub use config::Config;
pub use firmware::{DeviceType, FirmwareStore};
pub use sensor::Sensor;
pub use sync::SyncLog;
pub use version::Version;

/// Everything a request handler needs, built once per cold start.
#[derive(Debug, Clone)]
pub struct Hardware {
    accessories: Arc<AccessoryStore>,
    firmware: Arc<FirmwareStore>,
    database: Arc<Database>,
    sync_log: Arc<SyncLog>,
    verifier: Arc<Verifier>,
}

impl Hardware {
    /// Builds the clients; cheap, as nothing is fetched until a request needs it.
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Hardware {
        let secrets = kit::SecretStore::new(sdk);
        Hardware {
            accessories: Arc::new(AccessoryStore::new(
                sdk,
                config.accessory_pool_id,
                config.accessory_client_id,
            )),
            database: Arc::new(Database::new(&secrets, config.database)),
            sync_log: Arc::new(SyncLog::new(sdk, config.sync_table)),
            firmware: Arc::new(FirmwareStore::new(
                sdk,
                config.firmware_table,
                config.firmware_bucket,
            )),
            verifier: Arc::new(Verifier::new(config.auth, &secrets)),
        }
    }
}

/// Every route of the API, relative to `/v1` and `/hardware`.
pub fn routes() -> kit::Routes<Hardware> {
    kit::Routes::new()
        .route("/accessory/{mac}/register", post(accessory::register))
        .route("/accessory/{mac}/login", post(accessory::login))
        .route(
            "/accessory/{mac}",
            get(accessory::get).patch(accessory::patch),
        )
        .route("/accessory/{mac}/sync", post(sync::sync))
        .route("/sensor/{mac}", patch(sensor::patch_one))
        .route("/sensor", patch(sensor::patch_many))
        .route("/firmware/{device_type}/{version}", get(firmware::describe))
        .route(
            "/firmware/{device_type}/{version}/download",
            get(firmware::download),
        )
        .route("/misc/uuid", get(misc::uuid))
        .route("/misc/time", get(misc::time))
}

/// The complete API, under both `/v1` and `/hardware`.
pub fn router(hardware: Hardware) -> Router {
    let verifier = Arc::clone(&hardware.verifier);
    kit::app("hardware", routes().with_state(hardware), verifier)
}
