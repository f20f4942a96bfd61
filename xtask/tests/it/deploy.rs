//! `deploy --local` end to end: the repository's real templates, a stand-in `hardware` service
//! small enough to build in seconds, and an emulator of the fixture's own (started by deploy
//! itself, stopped when the fixture is dropped), so scenarios cannot disturb each other.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{Fixture, assert_refused, stderr, stdout};

const FUNCTION: &str = "hardware-dev-apigateway-execute";
const STACK: &str = "hardware-dev";

/// The stand-in workspace with this repository's templates.
pub fn stand_in() -> Fixture {
    let fixture = Fixture::copy("stand-in");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cloudformation");
    for file in [
        "infrastructure.yaml",
        "pipeline.yaml",
        "apigateway.yaml",
        "hardware-environment.yaml",
        "preprocessing-environment.yaml",
        "users-environment.yaml",
        "alerts-environment.yaml",
    ] {
        std::fs::copy(
            templates.join(file),
            fixture.root.join("cloudformation").join(file),
        )
        .unwrap();
    }
    // The environments the real workspace declares, so that the stand-in deploys to the same.
    let root = std::fs::read_to_string(templates.join("../Cargo.toml")).unwrap();
    let start = root.find("[workspace.metadata.environments").unwrap();
    let end = start + root[start..].find("[workspace.lints").unwrap();
    let manifest = fixture.manifest();
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push('\n');
    text.push_str(&root[start..end]);
    std::fs::write(&manifest, text).unwrap();
    fixture
}

/// `deploy hardware dev --local` with a test's timeout, and `extra` flags.
pub fn deploy_command(fixture: &Fixture, extra: &[&str]) -> std::process::Command {
    let mut args = vec!["deploy", "hardware", "dev", "--local", "--timeout", "120"];
    args.extend_from_slice(extra);
    fixture.command(&args)
}

pub fn deploy(fixture: &Fixture, extra: &[&str]) -> Output {
    deploy_command(fixture, extra)
        .output()
        .expect("the xtask binary runs")
}

/// Starts `deploy --json` in the background.
fn spawn_deploy(fixture: &Fixture) -> std::process::Child {
    deploy_command(fixture, &["--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Deploys with --json and returns the one stack's report (and the whole report).
pub fn deployed(fixture: &Fixture, extra: &[&str]) -> (Value, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let output = deploy(fixture, &args);
    assert!(
        output.status.success(),
        "deploy failed:\n{}",
        stderr(&output)
    );
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let stacks = report["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 1, "{report:#}");
    (stacks[0].clone(), report)
}

pub fn key(stack: &Value) -> String {
    stack["artifact_keys"]["ApigatewayExecuteArtifactKey"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn release(fixture: &Fixture, name: &str) {
    let main = fixture.root.join("services/hardware/src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    let (before, after) = source.split_once("const RELEASE: &str = \"").unwrap();
    let rest = after.split_once('"').unwrap().1;
    std::fs::write(
        &main,
        format!("{before}const RELEASE: &str = \"{name}\"{rest}"),
    )
    .unwrap();
}

/// One HTTP/1.0 request to the fixture's emulator; returns the body of a 200.
fn request(fixture: &Fixture, method: &str, path: &str, headers: &str) -> String {
    request_with_body(fixture, method, path, headers, "")
}

fn request_with_body(
    fixture: &Fixture,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> String {
    let (endpoint, _) = fixture
        .emulator()
        .expect("deploy --local started an emulator");
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.contains(" 200 "), "{method} {path}: {head}\n{body}");
    body.to_owned()
}

/// The emulator routes by the credential scope of the signature; it does not check it.
fn authorization(service: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-west-2/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n"
    )
}

/// A JSON-protocol call (`X-Amz-Target`) to the fixture's emulator, like DynamoDB's; its body.
pub fn emulator_post(fixture: &Fixture, target: &str, service: &str, body: &str) -> String {
    let headers = format!(
        "{}X-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.0\r\n",
        authorization(service)
    );
    request_with_body(fixture, "POST", "/", &headers, body)
}

/// An object of the fixture's artifact bucket, which must exist.
pub fn bucket_object(fixture: &Fixture, key: &str) -> String {
    let path = format!("/biometrix-infrastructure-us-west-2/{key}");
    request(fixture, "GET", &path, &authorization("s3"))
}

/// Puts `body` at `key` in the fixture's artifact bucket, as someone other than the tool would.
pub fn bucket_put(fixture: &Fixture, key: &str, body: &[u8]) {
    let client = s3(&fixture.emulator().expect("an emulator runs").0);
    runtime()
        .block_on(
            client
                .put_object()
                .bucket("biometrix-infrastructure-us-west-2")
                .key(key)
                .body(body.to_vec().into())
                .send(),
        )
        .unwrap();
}

/// The text at `key` in the fixture's artifact bucket; `None` when there is nothing.
pub fn bucket_get(fixture: &Fixture, key: &str) -> Option<String> {
    bucket_bytes(fixture, key).map(|bytes| String::from_utf8(bytes).unwrap())
}

/// The bytes at `key` in the fixture's artifact bucket; `None` when there is nothing.
pub fn bucket_bytes(fixture: &Fixture, key: &str) -> Option<Vec<u8>> {
    let client = s3(&fixture.emulator().expect("an emulator runs").0);
    runtime().block_on(async {
        let object = client
            .get_object()
            .bucket("biometrix-infrastructure-us-west-2")
            .key(key)
            .send()
            .await
            .ok()?;
        Some(object.body.collect().await.ok()?.into_bytes().to_vec())
    })
}

/// A Lambda API `GET` on the fixture's emulator (`/2015-03-31/functions/...`), as JSON.
pub fn lambda_get(fixture: &Fixture, path: &str) -> Value {
    let body = request(
        fixture,
        "GET",
        &format!("/2015-03-31/functions/{path}"),
        &authorization("lambda"),
    );
    serde_json::from_str(&body).unwrap()
}

/// What the function runs, according to Lambda itself (not the stack's parameters).
pub fn function_code(fixture: &Fixture) -> String {
    let function = lambda_get(fixture, FUNCTION);
    function["Code"]["Location"].as_str().unwrap().to_owned()
}

/// The requests the emulator received while `during` ran, as its recorder keeps them.
pub fn requests_during(fixture: &Fixture, during: impl FnOnce()) -> Vec<Value> {
    request(fixture, "POST", "/moto-api/recorder/start-recording", "");
    during();
    let recording = request(fixture, "GET", "/moto-api/recorder/download-recording", "");
    request(fixture, "POST", "/moto-api/recorder/stop-recording", "");
    recording
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

/// The CloudFormation actions the emulator received while `during` ran.
pub fn actions_during(fixture: &Fixture, during: impl FnOnce()) -> Vec<String> {
    requests_during(fixture, during)
        .into_iter()
        .map(|request| {
            let body = request["body"].as_str().unwrap_or_default().to_owned();
            let action = body
                .split('&')
                .find_map(|pair| pair.strip_prefix("Action="))
                .map(str::to_owned);
            action.unwrap_or_else(|| {
                format!(
                    "{} {}",
                    request["method"].as_str().unwrap_or_default(),
                    request["url"].as_str().unwrap_or_default()
                )
            })
        })
        .collect()
}

#[test]
fn deploy_creates_then_updates_only_what_changed() {
    let fixture = stand_in();

    // 1. The first deploy creates the stack, and the function runs the published zip.
    let output = deploy(&fixture, &["--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let first = &report["stacks"][0];
    assert_eq!(first["stack"], STACK);
    assert_eq!(first["outcome"], "created");
    assert_eq!(first["status"], "CREATE_COMPLETE");
    assert!(
        first["change_set_id"]
            .as_str()
            .is_some_and(|id| id.contains(":changeSet/xtask-deploy-")),
        "{first:#}"
    );
    let first_key = key(first);
    assert!(
        first_key.starts_with("lambdas/hardware/apigateway-execute/"),
        "{first_key}"
    );
    assert!(
        function_code(&fixture).ends_with(&format!("/{first_key}")),
        "{}",
        function_code(&fixture)
    );
    assert_eq!(
        report["uploaded"], 4,
        "the function's zip, the gate's and two templates: {report:#}"
    );
    let log = stderr(&output);
    assert!(
        log.contains("change set for hardware-dev:\n  ACTION LOGICAL ID"),
        "{log}"
    );
    assert!(log.contains("  Add    Function "), "{log}");
    assert!(
        log.contains(
            "CREATE_COMPLETE                              hardware-dev (AWS::CloudFormation::Stack)"
        ),
        "{log}"
    );

    // 2. Changed code: a new key, and the function's code follows it.
    release(&fixture, "second");
    let (second, report) = deployed(&fixture, &[]);
    assert_eq!(second["outcome"], "updated");
    assert_eq!(second["status"], "UPDATE_COMPLETE");
    let second_key = key(&second);
    assert_ne!(second_key, first_key);
    assert!(function_code(&fixture).ends_with(&format!("/{second_key}")));
    assert_eq!(report["uploaded"], 1, "only the new zip: {report:#}");

    // 3. Unchanged: nothing uploaded, no change set made, let alone executed.
    let mut unchanged = None;
    let actions = actions_during(&fixture, || unchanged = Some(deployed(&fixture, &[])));
    let (third, report) = unchanged.unwrap();
    assert_eq!(third["outcome"], "unchanged");
    assert_eq!(third["change_set_id"], Value::Null);
    assert_eq!(key(&third), second_key);
    assert_eq!(
        (report["uploaded"].clone(), report["bytes_sent"].clone()),
        (0.into(), 0.into())
    );
    for forbidden in ["CreateChangeSet", "ExecuteChangeSet", "UpdateStack"] {
        assert!(
            !actions.iter().any(|a| a == forbidden),
            "{forbidden} was called: {actions:?}"
        );
    }
    assert!(
        !actions
            .iter()
            .any(|a| a.starts_with("PUT") && a.contains("/lambdas/")),
        "{actions:?}"
    );
    assert!(function_code(&fixture).ends_with(&format!("/{second_key}")));
}

#[test]
fn every_service_template_deploys() {
    let fixture = stand_in();
    let output = fixture.xtask(&[
        "deploy",
        "--all",
        "dev",
        "--local",
        "--timeout",
        "120",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let stacks: Vec<(&str, &str)> = report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stack"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stacks,
        [
            ("alerts-dev", "CREATE_COMPLETE"),
            ("hardware-dev", "CREATE_COMPLETE"),
            ("preprocessing-dev", "CREATE_COMPLETE"),
            ("users-dev", "CREATE_COMPLETE"),
        ]
    );
    for stack in report["stacks"].as_array().unwrap() {
        let kinds: Vec<&str> = stack["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"AWS::Lambda::Function"), "{stack:#}");
        assert!(kinds.contains(&"AWS::CloudFormation::Stack"), "{stack:#}");
    }
}

#[test]
fn a_failed_deploy_says_why_and_the_previous_code_keeps_serving() {
    let fixture = stand_in();
    let (first, _) = deployed(&fixture, &[]);
    let first_key = key(&first);

    // New code and a template whose function refers to a role that does not exist.
    release(&fixture, "broken");
    let template = fixture
        .root
        .join("cloudformation/hardware-environment.yaml");
    let good = std::fs::read_to_string(&template).unwrap();
    let broken = good.replace("!GetAtt FunctionRole.Arn", "!GetAtt FunctionRoel.Arn");
    assert_ne!(broken, good);
    std::fs::write(&template, broken).unwrap();

    let output = deploy(&fixture, &[]);
    assert!(!output.status.success(), "{}", stdout(&output));
    let log = stderr(&output);
    assert!(
        log.contains("references undefined resource FunctionRoel"),
        "the reason is shown:\n{log}"
    );
    assert!(
        log.contains("nothing was executed, so the stack runs what it ran before (the change set was deleted)"),
        "{log}"
    );
    assert!(
        function_code(&fixture).ends_with(&format!("/{first_key}")),
        "the function still runs the previous zip: {}",
        function_code(&fixture)
    );

    // The lock was released: fixed, the next deploy goes through.
    std::fs::write(&template, good).unwrap();
    release(&fixture, "fixed");
    let (fixed, _) = deployed(&fixture, &["--no-wait"]);
    assert_eq!(fixed["outcome"], "updated");
    assert!(function_code(&fixture).ends_with(&format!("/{}", key(&fixed))));
}

#[test]
fn concurrent_deploys_of_one_stack_take_turns() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    release(&fixture, "concurrent");
    // Build once up front, so the two deploys race on the stack rather than on cargo's lock.
    let packaged = fixture.xtask(&["package", "hardware", "dev"]);
    assert!(packaged.status.success(), "{}", stderr(&packaged));

    let (one, two) = (spawn_deploy(&fixture), spawn_deploy(&fixture));
    let outputs = [
        one.wait_with_output().unwrap(),
        two.wait_with_output().unwrap(),
    ];
    let mut outcomes: Vec<String> = outputs
        .iter()
        .map(|output| {
            assert!(output.status.success(), "{}", stderr(output));
            let report: Value = serde_json::from_str(&stdout(output)).unwrap();
            report["stacks"][0]["outcome"].as_str().unwrap().to_owned()
        })
        .collect();
    outcomes.sort();
    // Exactly one update; the other found it done (after waiting, if they overlapped).
    assert_eq!(outcomes, ["unchanged", "updated"]);
    let key = {
        let report: Value = serde_json::from_str(&stdout(&outputs[0])).unwrap();
        key(&report["stacks"][0])
    };
    assert!(function_code(&fixture).ends_with(&format!("/{key}")));
}

#[test]
fn a_deploy_in_progress_is_waited_for_or_refused() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    release(&fixture, "while-locked");
    let packaged = fixture.xtask(&["package", "hardware", "dev"]);
    assert!(packaged.status.success(), "{}", stderr(&packaged));

    // Another deploy holds the stack (its lock, as that deploy would have written it).
    let (endpoint, _) = fixture.emulator().unwrap();
    let s3 = s3(&endpoint);
    let lock = "locks/hardware-dev.json";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let holder = serde_json::json!({
        "holder": "ci@builder (pid 1)", "stack": STACK, "acquired": now, "lifetime": 600,
    });
    runtime()
        .block_on(
            s3.put_object()
                .bucket("biometrix-infrastructure-us-west-2")
                .key(lock)
                .body(serde_json::to_vec(&holder).unwrap().into())
                .send(),
        )
        .unwrap();

    let refused = deploy(&fixture, &["--no-wait"]);
    assert!(!refused.status.success());
    let log = stderr(&refused);
    assert!(
        log.contains("error: stack hardware-dev is being deployed by ci@builder (pid 1) (written "),
        "{log}"
    );
    assert!(log.contains("run again without --no-wait"), "{log}");
    assert!(
        !log.contains("aws s3 rm"),
        "never advice to remove another's lock: {log}"
    );

    // Ctrl-C while waiting: nothing was sent, and it says so.
    let interrupted = spawn_deploy(&fixture);
    std::thread::sleep(std::time::Duration::from_secs(4));
    let signal = std::process::Command::new("kill")
        .args(["-INT", &interrupted.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let output = interrupted.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(
            "error: interrupted before anything was sent to stack hardware-dev; it is as it was"
        ),
        "{}",
        stderr(&output)
    );

    let waiting = spawn_deploy(&fixture);
    std::thread::sleep(std::time::Duration::from_secs(4));
    runtime()
        .block_on(
            s3.delete_object()
                .bucket("biometrix-infrastructure-us-west-2")
                .key(lock)
                .send(),
        )
        .unwrap();
    let output = waiting.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("waiting: stack hardware-dev is being deployed by ci@builder (pid 1)"),
        "{log}"
    );
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["stacks"][0]["outcome"], "updated");
}

#[test]
fn change_sets_run_as_the_role_the_infrastructure_stack_made() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    release(&fixture, "second");
    let mut output = None;
    let requests = requests_during(&fixture, || output = Some(deploy(&fixture, &[])));
    let output = output.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let created: Vec<String> = requests
        .iter()
        .filter_map(|r| {
            let body = r["body"].as_str()?;
            match r["body_encoded"].as_bool() {
                Some(true) => {
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .ok()?;
                    String::from_utf8(bytes).ok()
                }
                _ => Some(body.to_owned()),
            }
        })
        .filter(|body| body.contains("Action=CreateChangeSet"))
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    let role = created[0]
        .split('&')
        .find_map(|pair| pair.strip_prefix("RoleARN="))
        .expect("the change set names a role");
    assert!(
        role.starts_with("arn%3Aaws%3Aiam%3A%3A") && role.contains("CloudFormationRole"),
        "{role}"
    );
    // The role runs on the pipeline's path; the function's role, made by the stack, on the
    // service path that is all CloudFormationRole may write.
    assert!(role.contains("%3Arole%2Fbiometrix%2Fpipeline%2F"), "{role}");
    let function = lambda_get(&fixture, FUNCTION);
    let function_role = function["Configuration"]["Role"].as_str().unwrap();
    assert!(
        function_role.contains(":role/biometrix/service/"),
        "{function_role}"
    );
}

#[test]
fn no_execute_leaves_the_change_set_for_review() {
    let fixture = stand_in();
    let (review, _) = deployed(&fixture, &["--no-execute"]);
    assert_eq!(review["outcome"], "review");
    assert_eq!(review["status"], "REVIEW_IN_PROGRESS");
    let change_set = review["change_set_id"].as_str().unwrap().to_owned();

    let cloudformation = cloudformation(&fixture.emulator().unwrap().0);
    let described = runtime()
        .block_on(
            cloudformation
                .describe_change_set()
                .change_set_name(&change_set)
                .send(),
        )
        .unwrap();
    assert_eq!(
        described.execution_status().map(|s| s.as_str()),
        Some("AVAILABLE"),
        "not executed"
    );

    // A stack that only ever had a change set is created by the next deploy.
    let (created, _) = deployed(&fixture, &[]);
    assert_eq!(created["outcome"], "created");
    assert_eq!(created["status"], "CREATE_COMPLETE");
}

#[test]
fn parameters_are_checked_before_anything_is_built() {
    let fixture = stand_in();
    let output = deploy(&fixture, &["--parameter", "DomainNmae=example.com"]);
    assert_refused(
        &output,
        "hardware-environment.yaml has no parameter DomainNmae; its parameters are \
         ApiGatewayTemplateUrl, ApigatewayExecuteArtifactKey, ApigatewayExecuteArtifactVersion, \
         ApigatewayExecuteCodeSha256, ArtifactBucket, DatabaseSecretArn, DeploymentConfiguration, DomainName, Environment, \
         ErrorsAlarmThreshold, LatencyAlarmThresholdMs, LogRetentionDays, \
         PreTrafficGateArtifactKey, PreTrafficGateArtifactVersion, Probes, ReleaseDigest, ReservedConcurrency, \
         SecurityGroupIds, ServerErrorsAlarmThreshold, ServiceTokenSecretArn, SubnetIds, \
         ThrottlesAlarmThreshold, ThrottlingBurstLimit, ThrottlingRateLimit",
    );
    let output = deploy(&fixture, &["--parameter", "ApigatewayExecuteArtifactKey=x"]);
    assert_refused(
        &output,
        "deploy sets the parameter ApigatewayExecuteArtifactKey itself; leave out \
         --parameter ApigatewayExecuteArtifactKey=…",
    );
    let output = deploy(&fixture, &["--parameter", "LogRetentionDays="]);
    assert_refused(
        &output,
        "--parameter LogRetentionDays=: LogRetentionDays is a number, and `` is not one \
         (hardware-environment.yaml)",
    );
    let output = deploy(&fixture, &["--parameter", "ThrottlingRateLimit=0"]);
    assert_refused(
        &output,
        "--parameter ThrottlingRateLimit=0: ThrottlingRateLimit is at least 1, and 0 is less \
         (hardware-environment.yaml)",
    );
    let output = deploy(
        &fixture,
        &[
            "--parameter",
            "DatabaseSecretArn=arn:aws:secretsmanager:us-west-2:1:secret:other",
        ],
    );
    assert!(
        stderr(&output).contains("DatabaseSecretArn must match"),
        "{}",
        stderr(&output)
    );
    let output = deploy(&fixture, &["--parameter", "no-equals-sign"]);
    assert!(
        stderr(&output).contains("`no-equals-sign` is not KEY=VALUE"),
        "{}",
        stderr(&output)
    );
    assert!(
        !fixture.root.join("target/lambda").exists(),
        "nothing was packaged"
    );

    // A parameter the template takes is passed through; the rest keep their defaults.
    let (stack, _) = deployed(&fixture, &["--parameter", "LogRetentionDays=7"]);
    assert_eq!(stack["outcome"], "created");
    // Another --bucket never re-points the region's one infrastructure stack.
    assert_refused(
        &deploy(&fixture, &["--bucket", "other-bkt"]),
        "the local infrastructure stack biometrix-infrastructure serves the bucket \
         biometrix-infrastructure-us-west-2, not other-bkt: leave out --bucket (or pass --bucket \
         biometrix-infrastructure-us-west-2); nothing was changed",
    );
    let cloudformation = cloudformation(&fixture.emulator().unwrap().0);
    let described = runtime()
        .block_on(cloudformation.describe_stacks().stack_name(STACK).send())
        .unwrap();
    let parameters: std::collections::BTreeMap<&str, &str> = described.stacks()[0]
        .parameters()
        .iter()
        .map(|p| (p.parameter_key().unwrap(), p.parameter_value().unwrap()))
        .collect();
    assert_eq!(parameters["LogRetentionDays"], "7");
    assert_eq!(parameters["DomainName"], "");
    assert_eq!(parameters["Environment"], "dev");
    // A local stack gets this machine's secrets: the local PostgreSQL's URL and the service-token
    // secret, each in the emulator's Secrets Manager, passed by ARN.
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk(&fixture.emulator().unwrap().0));
    for (parameter, name) in [
        ("DatabaseSecretArn", "biometrix/local/database"),
        ("ServiceTokenSecretArn", "biometrix/local/service-token"),
    ] {
        let held = runtime()
            .block_on(
                secrets
                    .get_secret_value()
                    .secret_id(parameters[parameter])
                    .send(),
            )
            .unwrap_or_else(|e| panic!("{parameter}: {e:?}"));
        assert_eq!(held.name(), Some(name));
        assert!(!held.secret_string().unwrap_or_default().is_empty());
    }
    let url = runtime()
        .block_on(
            secrets
                .get_secret_value()
                .secret_id("biometrix/local/database")
                .send(),
        )
        .unwrap();
    // The local server takes a password (scram-sha-256), which the secret carries.
    let url = url.secret_string().unwrap();
    let (user, host) = url
        .strip_prefix("postgres://postgres:")
        .and_then(|rest| rest.split_once('@'))
        .unwrap_or_else(|| panic!("{url}"));
    assert_eq!(user.len(), 32, "a generated password");
    assert!(host.starts_with("127.0.0.1:"), "{url}");
    let file = fixture.root.join("target/local/postgres.password");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());
}

#[test]
fn deploy_to_aws_checks_the_bucket_before_building() {
    // The shared emulator that scripts/test starts stands in for an AWS account here.
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with scripts/test");
    let fixture = stand_in();
    let output = fixture.xtask(&[
        "deploy",
        "hardware",
        "dev",
        "--bucket",
        "no-such-artifact-bucket",
    ]);
    assert_refused(
        &output,
        "the artifact bucket no-such-artifact-bucket does not exist in us-west-2: create it with \
         `cargo xtask bootstrap --region us-west-2`, or pass --bucket with an existing one",
    );
    assert!(!fixture.root.join("target").exists(), "nothing was built");

    let output = fixture.xtask(&["deploy", "hardware", "dev", "--recreate", "--no-execute"]);
    assert_refused(
        &output,
        "--recreate deletes the stack, which --no-execute promises not to change; pick one",
    );
    let output = fixture.xtask(&["deploy", "hardware", "staging"]);
    assert_refused(
        &output,
        "unknown environment `staging`: known environments are dev, dev-*, pr-*, production, qa \
         (declare another in [workspace.metadata.environments] in Cargo.toml)",
    );
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    sdk_as(endpoint, "testing", "testing")
}

/// The emulator with another access key (one of its users', or an assumed role's).
pub fn sdk_as(endpoint: &str, key_id: &str, secret: &str) -> aws_config::SdkConfig {
    let credentials = aws_credential_types::Credentials::new(key_id, secret, None, None, "tests");
    runtime().block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .credentials_provider(credentials)
            .region(aws_config::Region::new("us-west-2"))
            .load(),
    )
}

pub fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk(endpoint))
            .force_path_style(true)
            .build(),
    )
}

pub fn cloudformation(endpoint: &str) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(&sdk(endpoint))
}

#[test]
fn every_page_of_resources_and_events_is_read() {
    // An emulator that pages its lists one item at a time: a listing that read only the first page
    // would see one resource and one event.
    let fixture = stand_in();
    let output = deploy_command(&fixture, &["--json"])
        .env("EMULATOR_PAGE_SIZE", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let resources: Vec<&str> = report["stacks"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["logical_id"].as_str().unwrap())
        .collect();
    for expected in ["FirmwareTable", "FunctionRole", "Function", "Api"] {
        assert!(resources.contains(&expected), "{expected}: {resources:?}");
    }
    let log = stderr(&output);
    for event in [
        "CREATE_IN_PROGRESS                           hardware-dev (AWS::CloudFormation::Stack)",
        "CREATE_COMPLETE                              hardware-dev (AWS::CloudFormation::Stack)",
    ] {
        assert!(log.contains(event), "{event} is missing:\n{log}");
    }
    assert!(log.contains(" Api/"), "the nested stack's events:\n{log}");
}
