//! Every deployed byte matches its key: objects overwritten in the bucket (with forged metadata)
//! are refused by rollback and promote and shown by status, code Lambda runs that is not its key's
//! is shown by status, and rollback takes no other service's key.

use serde_json::Value;

use crate::deploy::{deployed, key, release, runtime, s3, sdk, stand_in};
use crate::release::{commit, refused};
use crate::support::{Fixture, stderr, stdout};

const BUCKET: &str = "biometrix-infrastructure-us-west-2";

/// Puts `body` at `key` with the metadata publish writes, claiming the key's own hash.
fn tamper(fixture: &Fixture, key: &str, body: &[u8]) {
    let named = key
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_suffix(".zip"))
        .or_else(|| key.split('/').nth(2))
        .unwrap()
        .to_owned();
    let client = s3(&fixture.emulator().unwrap().0);
    let put = client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(body.to_vec().into())
        .metadata("sha256", named)
        .metadata("git-commit", "0".repeat(40));
    runtime().block_on(put.send()).unwrap();
}

fn status(fixture: &Fixture, environment: &str) -> (Value, String) {
    let json = fixture.xtask(&["status", "hardware", environment, "--local", "--json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let text = fixture.xtask(&["status", "hardware", environment, "--local"]);
    (serde_json::from_str(&stdout(&json)).unwrap(), stdout(&text))
}

#[test]
fn tampered_objects_are_refused_and_shown() {
    let fixture = stand_in();
    commit(&fixture, "first");
    let (first, _) = deployed(&fixture, &[]);
    release(&fixture, "second");
    commit(&fixture, "second");
    let (second, _) = deployed(&fixture, &[]);

    // The first release's zip is overwritten: rollback refuses it before anything changes.
    tamper(&fixture, &key(&first), b"not the zip that was built");
    let output = fixture.xtask(&["rollback", "hardware", "dev", "--local"]);
    refused(
        &output,
        &format!("s3://{BUCKET}/{} holds bytes whose SHA-256 is", key(&first)),
    );
    assert!(
        stderr(&output).contains("nothing was changed"),
        "{}",
        stderr(&output)
    );
    let (now, _) = status(&fixture, "dev");
    assert_eq!(now["functions"][0]["artifact_key"], key(&second));

    // A key of another service is refused, whatever its bytes.
    let other = format!("lambdas/users/apigateway-execute/{}.zip", "a".repeat(64));
    let output = fixture.xtask(&["rollback", "hardware", "dev", "--local", "--to", &other]);
    refused(
        &output,
        &format!("{other} is an artifact of service users, not of hardware"),
    );

    // dev's template is overwritten: promote refuses it.
    let history = now["history"][0]["template_key"]
        .as_str()
        .unwrap()
        .to_owned();
    tamper(&fixture, &history, b"Resources: {}\n");
    let output = fixture.xtask(&["promote", "hardware", "dev", "qa", "--local"]);
    refused(
        &output,
        &format!("s3://{BUCKET}/{history} holds bytes whose SHA-256 is"),
    );
    let (qa, _) = status(&fixture, "qa");
    assert_eq!(qa["status"], Value::Null, "qa was not created");

    // The running release's zip is overwritten: status says so, and not that HEAD is the same.
    tamper(&fixture, &key(&second), b"also not it");
    let (report, text) = status(&fixture, "dev");
    assert_eq!(report["functions"][0]["intact"], false, "{report:#}");
    assert_eq!(
        report["functions"][0]["commit"],
        Value::Null,
        "forged metadata is not believed"
    );
    assert_eq!(report["head"]["would_change_code"], Value::Null);
    assert!(text.contains("TAMPERED in the bucket"), "{text}");
    assert!(!text.contains("would not change the code"), "{text}");
}

#[test]
fn code_that_is_not_its_keys_is_shown_by_status() {
    let fixture = stand_in();
    commit(&fixture, "first");
    let (stack, _) = deployed(&fixture, &[]);
    // Someone updates the function by hand, with the gate's zip.
    let gate = stack["artifact_keys"]["PreTrafficGateArtifactKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let lambda = aws_sdk_lambda::Client::new(&sdk(&fixture.emulator().unwrap().0));
    runtime()
        .block_on(
            lambda
                .update_function_code()
                .function_name("hardware-dev-apigateway-execute")
                .s3_bucket(BUCKET)
                .s3_key(&gate)
                .send(),
        )
        .unwrap();
    let (report, text) = status(&fixture, "dev");
    let running = report["functions"][0]["running_sha256"].as_str().unwrap();
    assert!(gate.contains(running), "{report:#}");
    assert!(
        text.contains(&format!(
            "MISMATCH: apigateway-execute runs code whose SHA-256 is {running}, not the one its \
             key names"
        )),
        "{text}"
    );
    assert!(!text.contains("would not change the code"), "{text}");
    let _ = key(&stack);
}

/// A template replaced in the bucket after rollback verified it, while the rollback waits to send
/// its change set: CloudFormation reads the version that was verified (the URL names it), and the
/// stack runs exactly those bytes, which rollback then checks with `GetTemplate`.
#[test]
fn a_template_replaced_while_a_rollback_waits_is_not_what_gets_deployed() {
    let fixture = stand_in();
    commit(&fixture, "first");
    let (first, _) = deployed(&fixture, &[]);
    release(&fixture, "second");
    commit(&fixture, "second");
    deployed(&fixture, &[]);
    let (report, _) = status(&fixture, "dev");
    let template_key = report["history"][1]["template_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        first["template_url"]
            .as_str()
            .unwrap()
            .contains(&format!("{template_key}?versionId=")),
        "deploy pins the template version: {} {template_key}",
        first["template_url"]
    );

    let rollback = crate::fencing::Paused::run(
        &fixture,
        fixture.command(&["rollback", "hardware", "dev", "--local", "--json"]),
        "create-change-set",
    );
    // Verified and waiting: now the template is replaced by something else under its key.
    tamper(&fixture, &template_key, b"Resources: {}\n");
    let (output, said) = rollback.resume();
    assert!(output.status.success(), "{said}");

    let (report, text) = status(&fixture, "dev");
    let templates = report["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2, "{report:#}");
    assert_eq!(templates[0]["key"], template_key.as_str());
    assert!(
        template_key.contains(templates[0]["sha256"].as_str().unwrap()),
        "the stack runs the verified bytes, not the replacement: {report:#}"
    );
    assert!(!text.contains("TEMPLATE MISMATCH"), "{text}");
}

/// A stack changed behind the release tool's back to a template other than its key's: status
/// shows it in red and fails, and a deploy that finds it refuses to call the release good.
#[test]
fn a_stack_whose_template_is_not_its_keys_is_shown_by_status() {
    use aws_sdk_cloudformation::types::{Capability, ChangeSetType, Parameter};
    let fixture = stand_in();
    commit(&fixture, "first");
    deployed(&fixture, &[]);
    let client = crate::deploy::cloudformation(&fixture.emulator().unwrap().0);
    runtime().block_on(async {
        let stack = client
            .describe_stacks()
            .stack_name("hardware-dev")
            .send()
            .await
            .unwrap()
            .stacks()[0]
            .clone();
        let body = client
            .get_template()
            .stack_name("hardware-dev")
            .send()
            .await
            .unwrap()
            .template_body()
            .unwrap()
            .to_owned();
        let parameters = stack
            .parameters()
            .iter()
            .map(|p| {
                Parameter::builder()
                    .parameter_key(p.parameter_key().unwrap())
                    .use_previous_value(true)
                    .build()
            })
            .collect();
        let changed = client
            .create_change_set()
            .stack_name("hardware-dev")
            .change_set_name("by-hand")
            .change_set_type(ChangeSetType::Update)
            .template_body(format!("{body}\n# edited by hand, not what was verified\n"))
            .set_parameters(Some(parameters))
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await
            .unwrap();
        client
            .execute_change_set()
            .change_set_name(changed.id().unwrap())
            .send()
            .await
            .unwrap();
    });

    let json = fixture.xtask(&["status", "hardware", "dev", "--local", "--json"]);
    assert!(!json.status.success(), "a mismatch fails status");
    let report: Value = serde_json::from_str(&stdout(&json)).unwrap();
    let root = &report["templates"][0];
    assert!(
        !root["key"]
            .as_str()
            .unwrap()
            .contains(root["sha256"].as_str().unwrap()),
        "{report:#}"
    );
    assert!(
        stderr(&json).contains("error: stack hardware-dev runs a template whose SHA-256 is"),
        "{}",
        stderr(&json)
    );
    let text = fixture.xtask(&["status", "hardware", "dev", "--local"]);
    assert!(
        stdout(&text).contains("TEMPLATE MISMATCH: stack hardware-dev runs a template"),
        "{}",
        stdout(&text)
    );
}
