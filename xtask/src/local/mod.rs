//! This machine: the local AWS emulator, a local PostgreSQL, the stores a service's template
//! declares (created in the emulator, and seeded), and the processes that run them. The only layer
//! below the commands that starts long-running processes (through `process`).

pub mod account;
pub mod emulator;
pub mod postgres;
pub mod process;
pub mod provision;
pub mod state;

pub use account::{Session, connect};
