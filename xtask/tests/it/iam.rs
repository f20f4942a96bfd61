//! The release tool needs nothing but an environment's deployer policy: publish, deploy, rollback
//! and promote run on the emulator with IAM enforced and credentials holding only that policy
//! (`--as-deployer-of`), one environment's deployer is refused another's stacks and keys, and a
//! policy missing one action the tool uses fails where it is used.

use serde_json::Value;

use crate::deploy::{release, stand_in};
use crate::release::{commit, refused};
use crate::support::{Fixture, stderr, stdout};

/// `args` with `--local --as-deployer-of <environment>` and a test's timeout.
fn as_deployer(fixture: &Fixture, environment: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--local", "--as-deployer-of", environment]);
    fixture.xtask(&all)
}

fn succeeded(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_str(&stdout(output)).unwrap_or(Value::Null)
}

#[test]
fn the_pipeline_runs_with_only_its_environments_rights() {
    let fixture = stand_in();
    commit(&fixture, "first");

    let published = as_deployer(&fixture, "dev", &["publish", "hardware", "dev", "--json"]);
    succeeded(&published);
    assert!(
        stderr(&published).contains("acting as dev's deployer"),
        "{}",
        stderr(&published)
    );
    let first = succeeded(&as_deployer(
        &fixture,
        "dev",
        &["deploy", "hardware", "dev", "--json", "--timeout", "120"],
    ));
    assert_eq!(
        first["stacks"][0]["probes"]["result"], "passed",
        "{first:#}"
    );
    release(&fixture, "second");
    commit(&fixture, "second");
    succeeded(&as_deployer(
        &fixture,
        "dev",
        &["deploy", "hardware", "dev", "--json", "--timeout", "120"],
    ));
    succeeded(&as_deployer(
        &fixture,
        "dev",
        &["rollback", "hardware", "dev", "--json", "--timeout", "120"],
    ));

    // dev's deployer reaches nothing of qa: refused at the first thing it would write.
    let trespass = as_deployer(
        &fixture,
        "dev",
        &["deploy", "hardware", "qa", "--timeout", "120"],
    );
    refused(&trespass, "AccessDenied");

    // qa's deploys as qa; production's promotes what qa runs, reading qa and writing production.
    succeeded(&as_deployer(
        &fixture,
        "qa",
        &["deploy", "hardware", "qa", "--json", "--timeout", "120"],
    ));
    let promoted = succeeded(&as_deployer(
        &fixture,
        "production",
        &[
            "promote",
            "hardware",
            "qa",
            "production",
            "--json",
            "--timeout",
            "120",
        ],
    ));
    assert_eq!(
        promoted["stacks"][0]["stack"], "hardware-production",
        "{promoted:#}"
    );
    // ... and qa's cannot promote into production.
    let promote = as_deployer(
        &fixture,
        "qa",
        &[
            "promote",
            "hardware",
            "qa",
            "production",
            "--timeout",
            "120",
        ],
    );
    refused(&promote, "AccessDenied");

    // The emulator's administrator still does everything, IAM enforced or not.
    let status = fixture.xtask(&["status", "hardware", "production", "--local", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
}

#[test]
fn a_deployer_policy_missing_an_action_the_tool_uses_fails_where_it_is_used() {
    let fixture = stand_in();
    commit(&fixture, "first");
    let pipeline = fixture.root.join("cloudformation/pipeline.yaml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let planted = text.replacen(
        "              - cloudformation:DescribeStackEvents\n",
        "",
        1,
    );
    assert_ne!(planted, text, "the action was in the policy");
    std::fs::write(&pipeline, planted).unwrap();
    let output = as_deployer(
        &fixture,
        "dev",
        &["deploy", "hardware", "dev", "--timeout", "120"],
    );
    refused(&output, "cloudformation:DescribeStackEvents");
}
