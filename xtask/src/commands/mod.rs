//! The commands, one file (or folder) each: each parses its own flags (with the shared ones from
//! `cli`), calls into `release`, `aws` and `local`, and prints its result. No command imports
//! another; what two commands share lives in a layer below them.

pub mod bench;
pub mod bootstrap;
pub mod deploy;
pub mod destroy;
pub mod gc;
pub mod invoke;
pub mod lambda_run;
pub mod logs;
pub mod package;
pub mod promote;
pub mod publish;
pub mod reset_history;
pub mod rollback;
pub mod serve;
pub mod status;
pub mod stop;
pub mod up;
