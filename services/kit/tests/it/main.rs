//! The kit's integration tests: one binary, so it links once.

mod auth;
mod contract;
mod db;
mod secrets;
