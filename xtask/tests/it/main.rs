//! The release tool's integration tests: the real binary on a tiny fixture workspace.

mod bench;
mod bootstrap;
mod canary;
mod cli;
mod deploy;
mod destroy;
mod environments;
mod fencing;
mod gc;
mod iam;
mod integrity;
mod invoke;
mod logs;
mod outcomes;
mod package;
mod prebuilt;
mod probe;
mod promote;
mod publish;
mod release;
mod serve;
mod snapshots;
mod support;
mod traffic;
mod up;
mod up_services;
