//! `deploy --local` checks each release with its service's probes, through the local gateway,
//! and rolls a failing one back by itself: the stand-in's `broken-init` release never starts.

use serde_json::Value;

use crate::deploy::{deploy, deployed, function_code, key, release, stand_in};
use crate::support::{Fixture, stderr, stdout};

/// A deploy expected to fail its probes: its stderr and its one stack's report.
pub fn failed(fixture: &Fixture, extra: &[&str]) -> (String, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let output = deploy(fixture, &args);
    assert!(
        !output.status.success(),
        "the deploy passed:\n{}",
        stderr(&output)
    );
    let report: Value = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|_| panic!("no report:\n{}", stderr(&output)));
    (stderr(&output), report["stacks"][0].clone())
}

#[test]
fn a_release_that_fails_its_probes_is_rolled_back_by_itself() {
    let fixture = stand_in();
    crate::release::commit(&fixture, "good");
    let (good, _) = deployed(&fixture, &[]);
    assert_eq!(good["probes"]["result"], "passed", "{good:#}");
    let good_code = function_code(&fixture);

    release(&fixture, "broken-init");
    let (said, stack) = failed(&fixture, &[]);
    assert_eq!(stack["probes"]["result"], "rolled_back", "{stack:#}");
    assert!(
        stack["probes"]["failed"]
            .as_str()
            .unwrap()
            .starts_with("probe GET /v1/misc/time (200) at http://127.0.0.1:"),
        "{stack:#}"
    );
    assert!(
        stack["probes"]["failed"]
            .as_str()
            .unwrap()
            .contains("/v1/misc/time got 502"),
        "{stack:#}"
    );
    assert_eq!(
        stack["probes"]["restored"]["ApigatewayExecuteArtifactKey"],
        key(&good)
    );
    // The release before is named by its keys: the function's and the pre-traffic gate's.
    let restored = said
        .split_once("Rolled back by itself to the release before: ")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        restored.starts_with(&format!("{}, ", key(&good)))
            && restored.contains("runs again, and it passes its probes"),
        "{said}"
    );
    assert_eq!(
        function_code(&fixture),
        good_code,
        "the good code runs again"
    );

    // The history says so, and status shows it.
    let status = fixture.xtask(&["status", "hardware", "dev", "--local"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status)
            .contains("rolled back by itself (probe): probe GET /v1/misc/time (200) at "),
        "{}",
        stdout(&status)
    );

    // With --no-rollback the failed release stays, and the deploy still fails.
    let (said, stack) = failed(&fixture, &["--no-rollback"]);
    assert_eq!(stack["probes"]["result"], "failed", "{stack:#}");
    assert!(
        said.contains("The release stays, as --no-rollback asks"),
        "{said}"
    );
    assert_ne!(
        function_code(&fixture),
        good_code,
        "the failed release runs"
    );
}

#[test]
fn a_first_deploy_that_fails_its_probes_has_nothing_to_go_back_to() {
    let fixture = stand_in();
    release(&fixture, "broken-init");
    let (said, stack) = failed(&fixture, &[]);
    assert_eq!(stack["outcome"], "created");
    assert_eq!(stack["probes"]["result"], "failed", "{stack:#}");
    assert!(
        said.contains("It was the stack's first deploy, so there is nothing to roll back to"),
        "{said}"
    );
}

#[test]
fn a_probe_that_does_not_parse_is_refused_before_anything_is_built() {
    let fixture = stand_in();
    let manifest = fixture.root.join("services/hardware/Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[[package.metadata.lambda.probes]]\npath = \"/v1/x\"\nstatuss = 200\n");
    std::fs::write(&manifest, &text).unwrap();
    let output = deploy(&fixture, &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(
            "services/hardware/Cargo.toml: [package.metadata.lambda] is malformed: unknown field \
             `statuss`"
        ),
        "{}",
        stderr(&output)
    );
    std::fs::write(
        &manifest,
        text.replace("statuss = 200", "status = 200\nmethod = \"get\""),
    )
    .unwrap();
    let output = deploy(&fixture, &[]);
    assert!(
        stderr(&output).contains("the probe `get /v1/x (200)` is malformed"),
        "{}",
        stderr(&output)
    );
    assert!(
        !fixture.root.join("target/lambda").exists(),
        "nothing was packaged"
    );
}
