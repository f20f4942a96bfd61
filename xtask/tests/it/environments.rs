//! Environments as data (`[workspace.metadata.environments]`), on the emulator with the stand-in:
//! an environment is added by editing the table alone; a pull request's throwaway environment is
//! deployed, invoked, served by up, destroyed with its stores and made again; `destroy --expired` removes one
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
    // up serves it too, behind a local API Gateway.
    let port = crate::support::free_port();
    let (child, _, _) = crate::up::up_in(&fixture, "pr-7", port);
    assert!(crate::up::answered(port, "/v1/misc/time").starts_with("first "));
    crate::up::stop(child);

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
    let staging = succeeded(&deploy(&fixture, "staging"));
    assert_eq!(
        staging["stacks"][0]["probes"]["result"], "passed",
        "{staging:#}"
    );
    assert_eq!(
        parameter(&fixture, "hardware-staging", "DeploymentConfiguration"),
        "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
    );
    // An environment that lives in another account or region is never deployed from another:
    // here through the AWS path (no --local), aimed at the emulator, whose credentials are of its
    // default account.
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let in_aws = |environment: &str| {
        fixture
            .command(&["deploy", "hardware", environment, "--timeout", "120"])
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-west-2")
            .output()
            .unwrap()
    };
    assert_refused(
        &in_aws("elsewhere"),
        "elsewhere lives in account 210987654321 ([workspace.metadata.environments] in \
         Cargo.toml), and these credentials are of account 123456789012: use that account's \
         profile (AWS_PROFILE) or role; nothing was changed",
    );
    assert_refused(
        &in_aws("faraway"),
        "faraway lives in eu-west-1 ([workspace.metadata.environments] in Cargo.toml), not \
         us-west-2: pass --region eu-west-1; nothing was changed",
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

/// The emulator as an administrator of `account`, through STS as AWS crosses accounts.
fn in_account(endpoint: &str, account: &str) -> aws_config::SdkConfig {
    let assumed = runtime()
        .block_on(
            aws_sdk_sts::Client::new(&crate::deploy::sdk(endpoint))
                .assume_role()
                .role_arn(format!("arn:aws:iam::{account}:role/test"))
                .role_session_name("test")
                .send(),
        )
        .unwrap();
    let credentials = assumed.credentials().unwrap();
    crate::deploy::sdk_as(
        endpoint,
        credentials.access_key_id(),
        credentials.secret_access_key(),
    )
}

#[test]
fn promote_carries_exactly_what_dev_runs_into_another_account() {
    let fixture = stand_in();
    let manifest = fixture.manifest();
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[workspace.metadata.environments.vault]\nprofile = \"release\"\ntraffic = \"canary\"\n\
         protected = true\naccount = \"210987654321\"\n",
    );
    std::fs::write(&manifest, text).unwrap();
    let dev = succeeded(&deploy(&fixture, "dev"));
    let key = crate::deploy::key(&dev["stacks"][0]);

    // vault's rule holds across accounts: only release builds, unless asked.
    let promote = |extra: &[&str]| {
        let mut args = vec![
            "promote",
            "hardware",
            "dev",
            "vault",
            "--local",
            "--json",
            "--timeout",
            "120",
        ];
        args.extend_from_slice(extra);
        fixture.xtask(&args)
    };
    let refused = promote(&[]);
    assert!(
        !refused.status.success() && stderr(&refused).contains("vault runs only release builds"),
        "{}",
        stderr(&refused)
    );
    let promoted = succeeded(&promote(&["--allow-fast-profile"]));
    let stack = &promoted["stacks"][0];
    assert_eq!(crate::deploy::key(stack), key, "{promoted:#}");
    assert_eq!(stack["probes"]["result"], "passed", "{promoted:#}");

    // It runs in vault's account, not dev's, with vault's traffic policy and the very bytes.
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let vault = in_account(&endpoint, "210987654321");
    let described = runtime()
        .block_on(
            aws_sdk_cloudformation::Client::new(&vault)
                .describe_stacks()
                .stack_name("hardware-vault")
                .send(),
        )
        .unwrap();
    let parameters: std::collections::BTreeMap<&str, &str> = described.stacks()[0]
        .parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?, p.parameter_value()?)))
        .collect();
    assert_eq!(parameters["ApigatewayExecuteArtifactKey"], key);
    // Its own bucket (S3's names are global): the bytes were carried there.
    let bucket = "biometrix-infrastructure-210987654321-us-west-2";
    assert_eq!(parameters["ArtifactBucket"], bucket);
    assert_eq!(
        parameters["DeploymentConfiguration"],
        "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&vault)
            .force_path_style(true)
            .build(),
    );
    let zip = runtime()
        .block_on(async {
            s3.get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
        })
        .unwrap()
        .into_bytes();
    use sha2::Digest as _;
    let hash: String = sha2::Sha256::digest(&zip)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(key.contains(&hash), "{key} holds bytes hashing to {hash}");
    // dev's account has no vault stack.
    let here = runtime().block_on(
        cloudformation(&endpoint)
            .describe_stacks()
            .stack_name("hardware-vault")
            .send(),
    );
    assert!(here.is_err(), "{here:?}");
}
