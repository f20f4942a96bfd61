//! Environments as data (`[workspace.metadata.environments]`), on the emulator with the stand-in:
//! an environment is added by editing the table alone; a pull request's throwaway environment is
//! deployed, invoked, destroyed with its stores and made again; `destroy --expired` removes one
//! whose time to live has passed; names that would not fit are refused before anything is built.

use serde_json::Value;

use crate::deploy::{cloudformation, emulator_post, runtime, stand_in};
use crate::support::{Fixture, assert_refused, stderr, stdout};

fn deploy(fixture: &Fixture, environment: &str) -> std::process::Output {
    fixture.xtask(&[
        "deploy",
        "hardware",
        environment,
        "--local",
        "--json",
        "--timeout",
        "120",
    ])
}

fn succeeded(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_str(&stdout(output)).unwrap_or(Value::Null)
}

fn described(fixture: &Fixture, stack: &str) -> aws_sdk_cloudformation::types::Stack {
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let described = runtime()
        .block_on(
            cloudformation(&endpoint)
                .describe_stacks()
                .stack_name(stack)
                .send(),
        )
        .unwrap();
    described.stacks()[0].clone()
}

/// The stack's tags, by key.
fn tags(fixture: &Fixture, stack: &str) -> std::collections::BTreeMap<String, String> {
    described(fixture, stack)
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// One of the stack's parameters.
fn parameter(fixture: &Fixture, stack: &str, key: &str) -> String {
    described(fixture, stack)
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some(key))
        .and_then(|p| p.parameter_value())
        .unwrap_or_default()
        .to_owned()
}

fn tables(fixture: &Fixture) -> String {
    emulator_post(fixture, "DynamoDB_20120810.ListTables", "dynamodb", "{}")
}

#[test]
fn a_pull_requests_environment_is_deployed_destroyed_with_its_stores_and_made_again() {
    let fixture = stand_in();
    let first = succeeded(&deploy(&fixture, "pr-7"));
    assert_eq!(
        first["stacks"][0]["probes"]["result"], "passed",
        "{first:#}"
    );
    let tagged = tags(&fixture, "hardware-pr-7");
    assert!(tagged.contains_key("biometrix:created-by"), "{tagged:?}");
    let expires = &tagged["biometrix:expires-at"];
    assert!(expires.as_str() > "2026-01-01T00:00:00Z", "{expires}");
    assert!(tables(&fixture).contains("hardware-pr-7-firmware"));

    let invoked = fixture.xtask(&[
        "invoke",
        "hardware",
        "pr-7",
        "GET",
        "/v1/misc/time",
        "--local",
    ]);
    assert!(invoked.status.success(), "{}", stderr(&invoked));

    // Its stores go with it: nothing is kept, nothing blocks the next deploy.
    let destroyed = fixture.xtask(&["destroy", "hardware", "pr-7", "--local", "--json"]);
    let report = succeeded(&destroyed);
    assert_eq!(report["outcome"], "deleted", "{report:#}");
    assert_eq!(report["retained"], serde_json::json!([]), "{report:#}");
    assert!(
        stderr(&destroyed).contains("deleting hardware-pr-7 keeps nothing"),
        "{}",
        stderr(&destroyed)
    );
    let left = tables(&fixture);
    assert!(!left.contains("hardware-pr-7"), "{left}");

    let again = succeeded(&deploy(&fixture, "pr-7"));
    assert_eq!(
        again["stacks"][0]["probes"]["result"], "passed",
        "{again:#}"
    );

    // A new preview borrows dev's secrets (their ARNs), as its entry's secrets-from says.
    let lent =
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:biometrix/dev/service-token-AbCdEf";
    let dev = fixture.xtask(&[
        "deploy",
        "hardware",
        "dev",
        "--local",
        "--json",
        "--timeout",
        "120",
        "--parameter",
        &format!("ServiceTokenSecretArn={lent}"),
    ]);
    succeeded(&dev);
    let borrowed = deploy(&fixture, "pr-8");
    succeeded(&borrowed);
    assert!(
        stderr(&borrowed).contains(
            "pr-8 borrows dev's secrets: DatabaseSecretArn, ServiceTokenSecretArn from hardware-dev"
        ),
        "{}",
        stderr(&borrowed)
    );
    assert_eq!(
        parameter(&fixture, "hardware-pr-8", "ServiceTokenSecretArn"),
        lent
    );

    // A name too long for a bucket is refused before any build.
    let name = "pr-123456789012345678901234567";
    let too_long = deploy(&fixture, name);
    assert_refused(
        &too_long,
        &format!(
            "environment `{name}` makes the bucket name biometrix-hardware-{name}-firmware-us-west-2 \
             (68 characters) in us-west-2, and AWS allows 63: use an environment name of at most \
             25 characters; nothing was built or changed"
        ),
    );
}

#[test]
fn an_environment_is_added_by_editing_the_table_alone_and_expired_ones_are_destroyed() {
    let fixture = stand_in();
    let refused = deploy(&fixture, "staging");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("unknown environment `staging`"),
        "{}",
        stderr(&refused)
    );

    // One entry in the table, and staging deploys, built and shifted as it declares; a
    // throwaway one with a five-second life is made too.
    let manifest = fixture.manifest();
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[workspace.metadata.environments.staging]\nprofile = \"release\"\ntraffic = \
         \"linear\"\nprotected = true\n\n[workspace.metadata.environments.\"tmp-*\"]\nprofile = \
         \"fast\"\ntraffic = \"all-at-once\"\nstores = \"deleted\"\ntime-to-live = \"5s\"\n\n\
         [workspace.metadata.environments.elsewhere]\nprofile = \"fast\"\ntraffic = \
         \"all-at-once\"\naccount = \"210987654321\"\n\n\
         [workspace.metadata.environments.faraway]\nprofile = \"fast\"\ntraffic = \
         \"all-at-once\"\nregion = \"eu-west-1\"\n",
    );
    std::fs::write(&manifest, text).unwrap();
    // An environment that lives in another account or region is never deployed from this one.
    assert_refused(
        &deploy(&fixture, "elsewhere"),
        "elsewhere lives in account 210987654321 ([workspace.metadata.environments] in \
         Cargo.toml), and these credentials are of account 123456789012: use that account's \
         profile (AWS_PROFILE) or role; nothing was changed",
    );
    assert_refused(
        &deploy(&fixture, "faraway"),
        "faraway lives in eu-west-1 ([workspace.metadata.environments] in Cargo.toml), not \
         us-west-2: pass --region eu-west-1; nothing was changed",
    );
    let staging = succeeded(&deploy(&fixture, "staging"));
    assert_eq!(
        staging["stacks"][0]["probes"]["result"], "passed",
        "{staging:#}"
    );
    assert_eq!(
        parameter(&fixture, "hardware-staging", "DeploymentConfiguration"),
        "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
    );
    let refused = fixture.xtask(&["destroy", "hardware", "staging", "--local"]);
    assert!(
        stderr(&refused).contains("staging is protected") && !refused.status.success(),
        "{}",
        stderr(&refused)
    );

    succeeded(&deploy(&fixture, "tmp-1"));
    // Not yet expired: left alone.
    let early = fixture.xtask(&["destroy", "--expired", "--local", "--json"]);
    assert_eq!(succeeded(&early), serde_json::json!([]));
    std::thread::sleep(std::time::Duration::from_secs(6));
    let expired = fixture.xtask(&["destroy", "--expired", "--local", "--json"]);
    let report = succeeded(&expired);
    let stacks: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["stack"].as_str().unwrap())
        .collect();
    assert_eq!(stacks, ["hardware-tmp-1"], "{report:#}");
    // staging, protected and without a time to live, is still there.
    assert!(tags(&fixture, "hardware-staging").contains_key("biometrix:created-by"));
}
