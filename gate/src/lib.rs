//! What a release is checked with before it takes traffic, shared by the release tool and the
//! pre-traffic gate function:
//!
//! - [`probe`]: a service's probes (declared in its `Cargo.toml`), the verdict on an answer, and
//!   the backoff their retries follow;
//! - [`event`]: an HTTP request as API Gateway's REST proxy hands it to a function, and the
//!   function's answer as API Gateway turns it back into HTTP: the one builder that the local
//!   gateway, `invoke` and the gate all use;
//! - [`hook`]: what the gate decides from the new version's answers, for CodeDeploy's
//!   `BeforeAllowTraffic` lifecycle hook.
//!
//! The gate itself (`src/main.rs`) is deployed with each service's API stack (see
//! `cloudformation/apigateway.yaml`).

pub mod event;
pub mod hook;
pub mod probe;
