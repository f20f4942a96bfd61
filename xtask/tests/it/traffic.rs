//! How a release reaches the API on the emulator: a version per release, the `live` alias that API
//! Gateway invokes moved to it (by the emulator's CodeDeploy, `it/canary.rs` shows it shifting), and
//! the pre-traffic gate told which version to probe.

use base64::Engine as _;
use serde_json::Value;

use crate::deploy::{deploy, deployed, key, lambda_get, release, stand_in};
use crate::support::assert_refused;

const FUNCTION: &str = "hardware-dev-apigateway-execute";
const GATE: &str = "hardware-dev-pre-traffic-gate";

/// The version `live` names, and that version's `CodeSha256` as Lambda reports it.
pub fn live(fixture: &crate::support::Fixture) -> (String, String) {
    // ListAliases: the emulator answers GetAlias with a 201.
    let aliases = lambda_get(fixture, &format!("{FUNCTION}/aliases"));
    let alias = aliases["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["Name"] == "live")
        .expect("the function has a live alias")
        .clone();
    let version = alias["FunctionVersion"].as_str().unwrap().to_owned();
    let function = lambda_get(fixture, &format!("{FUNCTION}?Qualifier={version}"));
    let hash = function["Configuration"]["CodeSha256"]
        .as_str()
        .unwrap()
        .to_owned();
    (version, hash)
}

/// An artifact key's SHA-256 as Lambda spells a code hash.
fn lambda_hash(key: &str) -> String {
    let hex = key.rsplit('/').next().unwrap().trim_end_matches(".zip");
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn gate_variables(fixture: &crate::support::Fixture) -> Value {
    lambda_get(fixture, GATE)["Configuration"]["Environment"]["Variables"].clone()
}

#[test]
fn each_release_is_a_version_that_live_and_the_gate_follow() {
    let fixture = stand_in();
    let (first, _) = deployed(&fixture, &[]);
    let (first_version, first_hash) = live(&fixture);
    assert_eq!(
        first_hash,
        lambda_hash(&key(&first)),
        "live runs the deployed zip"
    );
    let gate = gate_variables(&fixture);
    assert_eq!(gate["TARGET_FUNCTION"], FUNCTION);
    assert_eq!(gate["TARGET_VERSION"], first_version.as_str());
    let probes: Value = serde_json::from_str(gate["PROBES"].as_str().unwrap()).unwrap();
    assert_eq!(
        probes[0]["path"], "/v1/misc/time",
        "the service's own probes"
    );
    assert!(
        first["artifact_keys"]["PreTrafficGateArtifactKey"]
            .as_str()
            .unwrap()
            .starts_with("lambdas/hardware/pre-traffic-gate/"),
        "{first:#}"
    );

    // New code: a new version, and live moves to it.
    release(&fixture, "second");
    let (second, _) = deployed(&fixture, &[]);
    let (second_version, second_hash) = live(&fixture);
    assert_ne!(second_version, first_version);
    assert_eq!(second_hash, lambda_hash(&key(&second)));
    assert_eq!(
        gate_variables(&fixture)["TARGET_VERSION"],
        second_version.as_str()
    );

    // Nothing new: nothing published, live stays.
    let (unchanged, _) = deployed(&fixture, &[]);
    assert_eq!(unchanged["outcome"], "unchanged");
    assert_eq!(live(&fixture).0, second_version);

    // The earlier version is kept, for CodeDeploy to move live back to.
    let kept = lambda_get(&fixture, &format!("{FUNCTION}?Qualifier={first_version}"));
    assert_eq!(kept["Configuration"]["CodeSha256"], first_hash.as_str());
}

#[test]
fn traffic_and_what_deploy_sets_are_checked_before_building() {
    let fixture = stand_in();
    let output = deploy(&fixture, &["--traffic", "slow"]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("unknown traffic policy `slow`: known ones are all-at-once, linear, canary"),
        "{said}"
    );
    for owned in [
        "DeploymentConfiguration",
        "ApigatewayExecuteCodeSha256",
        "ReleaseDigest",
    ] {
        let output = deploy(&fixture, &["--parameter", &format!("{owned}=x")]);
        assert_refused(
            &output,
            &format!("deploy sets the parameter {owned} itself; leave out --parameter {owned}=…"),
        );
    }
    assert!(
        !fixture.root.join("target/lambda").exists(),
        "nothing was packaged"
    );
}
