//! One stack brought to a template: the template as read (`template`), the pure decisions about a
//! stack in each state (`decide`), the change-set engine (`change`), what it says to people
//! (`explain`) and following an operation's events (`watch`).

pub mod change;
pub mod decide;
mod explain;
pub mod template;
pub mod watch;

pub use change::{Applied, Change, Engine, ExecutionFailed, Outcome, Phase, Source};
pub use template::Template;
