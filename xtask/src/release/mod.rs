//! The release core, with no clap and no printing of its own (results are returned; progress goes
//! through `Progress`): plan and build the zips, upload them, and bring stacks to them through
//! change sets, one deploy per stack, with a history of what was released.

pub mod artifact;
pub mod bootstrap;
pub mod compile;
pub mod deployer;
pub mod elf;
pub mod gc;
pub mod history;
pub mod integrity;
pub mod lease;
pub mod lock;
pub mod manifest;
pub mod package;
pub mod probe;
pub mod report;
pub mod rollout;
pub mod stack;
pub mod traffic;
pub mod upload;
