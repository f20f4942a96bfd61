//! The hardware API's integration tests, against the AWS emulator started by `scripts/test`.

mod accessory;
mod bootstrap;
mod firmware;
mod lambda;
mod misc;
mod sensor;
mod support;
mod sync;
