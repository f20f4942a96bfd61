//! What the gate decides for CodeDeploy's `BeforeAllowTraffic` hook: the new version is invoked
//! directly, one REST proxy event per probe, and only when every probe gets its answer does the
//! gate report `Succeeded`, which lets CodeDeploy move traffic to it. Anything else (a wrong
//! status, a missing key, a function error, an answer that is not a proxy response, no answer by
//! the deadline) reports `Failed`, and CodeDeploy rolls the deployment back before any traffic
//! moved.

use aws_sdk_codedeploy::types::LifecycleEventStatus;

use crate::event::{self, Stage};
use crate::probe::{Failed, Probe, shown};

/// What the gate checks, from its function's environment (set by `cloudformation/apigateway.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The service's function, by name.
    pub function: String,
    /// The version CodeDeploy is about to shift traffic to.
    pub version: String,
    /// The probes, as the service declares them; only the store-free ones are sent.
    pub probes: Vec<Probe>,
    /// Where the events say they arrived.
    pub stage: Stage,
}

impl Target {
    /// Reads the target from variables; an absent or malformed one is named.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Target, String> {
        let required = |name: &str| {
            var(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} is not set"))
        };
        let probes: Vec<Probe> = serde_json::from_str(&required("PROBES")?)
            .map_err(|error| format!("PROBES is not a list of probes: {error}"))?;
        if let Some(problem) = probes.iter().find_map(Probe::malformed) {
            return Err(format!("PROBES: {problem}"));
        }
        Ok(Target {
            function: required("TARGET_FUNCTION")?,
            version: required("TARGET_VERSION")?,
            probes,
            stage: Stage {
                name: required("API_STAGE")?,
                api_id: required("API_ID")?,
                account_id: required("ACCOUNT_ID")?,
                binary_media_types: Vec::new(),
            },
        })
    }

    /// The event that carries `probe` to the function, as API Gateway would send it.
    pub fn event(&self, probe: &Probe, request_id: &str) -> Result<Vec<u8>, String> {
        let host = format!("{}.execute-api.amazonaws.com", self.stage.api_id);
        let event = event::event(&probe.request(&host), &self.stage, request_id, "127.0.0.1")?;
        serde_json::to_vec(&event).map_err(|error| error.to_string())
    }
}

/// What Lambda's `Invoke` gave back for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoked {
    /// `FunctionError`: `Unhandled` when the function failed (at init too), absent otherwise.
    pub function_error: Option<String>,
    pub payload: Vec<u8>,
}

/// What is wrong with the version's answer to `probe`, or nothing when it is the expected one.
pub fn judge(probe: &Probe, invoked: &Invoked) -> Option<String> {
    if let Some(kind) = &invoked.function_error {
        return Some(format!(
            "a function error ({kind}): {}",
            shown(&invoked.payload)
        ));
    }
    match event::answer(&invoked.payload) {
        // What API Gateway answers a caller for a response it cannot read.
        Err(problem) => Some(format!("502 ({problem})")),
        Ok(answer) => probe.verdict(answer.status, &answer.body),
    }
}

/// What the gate reports: `Succeeded` only when no probe failed.
pub fn status(failed: Option<&Failed>) -> LifecycleEventStatus {
    match failed {
        None => LifecycleEventStatus::Succeeded,
        Some(_) => LifecycleEventStatus::Failed,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const PROBES: &str = r#"[{"path": "/v1/misc/time", "status": 200, "keys": ["current_date"]}]"#;

    fn target() -> Target {
        Target::from_env(env(&[
            ("PROBES", PROBES),
            ("TARGET_FUNCTION", "hardware-dev-apigateway-execute"),
            ("TARGET_VERSION", "7"),
            ("API_STAGE", "v1"),
            ("API_ID", "a1b2c3"),
            ("ACCOUNT_ID", "123456789012"),
        ]))
        .unwrap()
    }

    #[test]
    fn the_target_is_read_from_the_environment_and_every_gap_is_named() {
        let target = target();
        assert_eq!(target.version, "7");
        assert_eq!(target.probes[0].label(), "GET /v1/misc/time (200)");
        assert_eq!(
            Target::from_env(env(&[("PROBES", PROBES)])).unwrap_err(),
            "TARGET_FUNCTION is not set"
        );
        assert!(
            Target::from_env(env(&[("PROBES", "{}")]))
                .unwrap_err()
                .starts_with("PROBES is not a list of probes")
        );
        let malformed = r#"[{"path": "/misc/time", "status": 200}]"#;
        assert!(
            Target::from_env(env(&[("PROBES", malformed)]))
                .unwrap_err()
                .contains("`GET /misc/time (200)` is malformed")
        );
    }

    #[test]
    fn events_are_rest_proxy_events_for_the_probe() {
        let target = target();
        let event: serde_json::Value =
            serde_json::from_slice(&target.event(&target.probes[0], "gate-1").unwrap()).unwrap();
        assert_eq!(event["httpMethod"], "GET");
        assert_eq!(event["path"], "/v1/misc/time");
        assert_eq!(event["requestContext"]["stage"], "v1");
        assert_eq!(event["requestContext"]["apiId"], "a1b2c3");
        assert_eq!(event["requestContext"]["requestId"], "gate-1");
        assert_eq!(event["headers"]["host"], "a1b2c3.execute-api.amazonaws.com");
    }

    /// The answers Lambda's `Invoke` documents: a proxy response, a function error (what a
    /// function that fails at init or panics gives), and a payload that is not a proxy response.
    #[test]
    fn each_kind_of_invocation_result_is_judged() {
        let probe = &target().probes[0];
        let answered = |payload: &str| Invoked {
            function_error: None,
            payload: payload.as_bytes().to_vec(),
        };
        assert_eq!(
            judge(
                probe,
                &answered(r#"{"statusCode": 200, "body": "{\"current_date\": \"2026-12-01\"}"}"#)
            ),
            None
        );
        assert_eq!(
            judge(
                probe,
                &answered(r#"{"statusCode": 500, "body": "{\"message\": \"ServerError\"}"}"#)
            ),
            Some(r#"500 {"message": "ServerError"}"#.into())
        );
        assert_eq!(
            judge(probe, &answered(r#"{"statusCode": 200, "body": "{}"}"#)),
            Some("200 without `current_date`: {}".into())
        );
        let crashed = Invoked {
            function_error: Some("Unhandled".into()),
            payload: br#"{"errorType": "Runtime.ExitError", "errorMessage": "exit status 1"}"#
                .to_vec(),
        };
        assert!(
            judge(probe, &crashed)
                .unwrap()
                .starts_with("a function error (Unhandled): {\"errorType\": \"Runtime.ExitError\"")
        );
        assert!(
            judge(probe, &answered("null"))
                .unwrap()
                .starts_with("502 (the function's response is not a proxy response")
        );
    }

    #[test]
    fn only_a_release_with_no_failed_probe_succeeds() {
        assert_eq!(status(None), LifecycleEventStatus::Succeeded);
        let failed = Failed {
            probe: "GET /v1/misc/time (200)".into(),
            answer: "500".into(),
        };
        assert_eq!(status(Some(&failed)), LifecycleEventStatus::Failed);
    }
}
