//! `invoke --local`: one REST proxy event to the zip the emulator's stack runs, its answer printed,
//! and a 5xx an exit that says so; bad requests are refused before anything is called.

use serde_json::Value;

use crate::deploy::{deployed, stand_in};
use crate::support::{Fixture, stderr, stdout};

fn invoke(fixture: &Fixture, args: &[&str]) -> std::process::Output {
    let mut all = vec!["invoke", "hardware", "dev"];
    all.extend_from_slice(args);
    all.push("--local");
    fixture.xtask(&all)
}

#[test]
fn invoke_answers_as_the_deployed_function_does() {
    let fixture = stand_in();
    deployed(&fixture, &[]);

    let output = invoke(&fixture, &["GET", "/v1/misc/time", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let answer: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(answer["status"], 200, "{answer:#}");
    assert_eq!(answer["function"], "hardware-dev-apigateway-execute");
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .starts_with("first /v1/misc/time"),
        "{answer:#}"
    );
    assert!(
        answer["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-release" && h[1] == "first"),
        "{answer:#}"
    );

    // As text: the status line, the headers, the body.
    let output = invoke(&fixture, &["POST", "/v1/sensor", "--data", "{\"a\": 1}"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with("200 hardware-dev-apigateway-execute\n"),
        "{text}"
    );
    assert!(text.contains("\nfirst /v1/sensor"), "{text}");

    // A service token signed with the deployment's own secret (deploy --local gives it one).
    let output = invoke(&fixture, &["GET", "/v1/misc/time", "--service-token"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // A function that exits mid-request is API Gateway's 502, and a failure.
    let output = invoke(&fixture, &["GET", "/v1/crash"]);
    assert!(!output.status.success());
    assert!(stdout(&output).starts_with("502 "), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("hardware-dev-apigateway-execute answered 502"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn no_service_token_is_made_up_without_the_deployments_secret() {
    let fixture = stand_in();
    deployed(&fixture, &["--parameter", "ServiceTokenSecretArn="]);
    let output = invoke(&fixture, &["GET", "/v1/misc/time", "--service-token"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(
            "cannot sign a service token: hardware-dev-apigateway-execute is given no \
             SERVICE_TOKEN_SECRET_ARN, so it accepts no service tokens"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_requests_are_refused_before_anything_is_called() {
    let fixture = stand_in();
    for (args, said) in [
        (
            &["GET", "/v1/misc/time", "--data", "{not json"][..],
            "--data is not JSON: key must be a string at line 1 column 2",
        ),
        (
            &["GET", "/v1/misc/time", "--data", "@/nonexistent/alert.json"][..],
            "reading --data from /nonexistent/alert.json",
        ),
        (
            &["GET", "/v1/misc/time", "--header", "no colon"][..],
            "--header \"no colon\" is not `Name: value`",
        ),
        (
            &["GET", "/v1/misc/time", "--header", "X(Bad): v"][..],
            "--header \"X(Bad): v\": '(' cannot be in a header name",
        ),
        (
            &["GET", "/v1/misc/time", "--header", "X-Ok: a\u{7}b"][..],
            "a header value cannot hold a control character",
        ),
        (
            &["get", "/v1/misc/time"][..],
            "\"get\" is not an HTTP method",
        ),
        (&["GET", "misc/time"][..], "\"misc/time\" is not a path"),
    ] {
        let output = invoke(&fixture, args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(said),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            fixture.emulator().is_none(),
            "{args:?}: nothing was started"
        );
    }
}

/// Lambda's `Invoke` on the emulator, as `aws lambda invoke --endpoint-url …` or the pre-traffic
/// gate calls it: the payload, and the function error header.
fn lambda_invoke(fixture: &Fixture, qualifier: &str, path: &str) -> (Value, Option<String>) {
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let lambda = aws_sdk_lambda::Client::new(&crate::deploy::sdk(&endpoint));
    let event = serde_json::json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": {},
        "requestContext": {"stage": "v1"},
    });
    let answer = crate::deploy::runtime()
        .block_on(
            lambda
                .invoke()
                .function_name("hardware-dev-apigateway-execute")
                .qualifier(qualifier)
                .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
                .send(),
        )
        .unwrap();
    let payload = answer
        .payload()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    (
        serde_json::from_slice(&payload)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&payload))),
        answer.function_error().map(str::to_owned),
    )
}

#[test]
fn the_emulators_lambda_runs_the_functions_code() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    // Through the live alias, as API Gateway and the gate reach it.
    let (answer, error) = lambda_invoke(&fixture, "live", "/v1/misc/time");
    assert_eq!(error, None, "{answer:#}");
    assert_eq!(answer["statusCode"], 200, "{answer:#}");
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .starts_with("first /v1/misc/time"),
        "{answer:#}"
    );
    // A function that exits mid-request: Lambda's error document, marked Unhandled.
    let (answer, error) = lambda_invoke(&fixture, "$LATEST", "/v1/crash");
    assert_eq!(error.as_deref(), Some("Unhandled"), "{answer:#}");
    assert_eq!(answer["errorType"], "Runtime.ExitError", "{answer:#}");
    // Over Lambda's 6 MB: a response is a function error (docs/emulator.md says how its type
    // differs from Lambda's), a request is refused, unrun.
    let (answer, error) = lambda_invoke(&fixture, "live", "/v1/big");
    assert_eq!(error.as_deref(), Some("Unhandled"), "{answer:#}");
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let lambda = aws_sdk_lambda::Client::new(&crate::deploy::sdk(&endpoint));
    let huge = format!("\"{}\"", "x".repeat(7 << 20));
    let refused = crate::deploy::runtime()
        .block_on(
            lambda
                .invoke()
                .function_name("hardware-dev-apigateway-execute")
                .payload(aws_sdk_lambda::primitives::Blob::new(huge))
                .send(),
        )
        .unwrap_err();
    let refused = format!("{}", aws_sdk_lambda::error::DisplayErrorContext(&refused));
    assert!(refused.contains("RequestTooLargeException"), "{refused}");
}

#[test]
fn an_alias_with_weights_splits_invocations_between_its_versions() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    crate::deploy::release(&fixture, "second");
    deployed(&fixture, &[]);
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let lambda = aws_sdk_lambda::Client::new(&crate::deploy::sdk(&endpoint));
    let runtime = crate::deploy::runtime();
    let live = runtime
        .block_on(
            lambda
                .get_alias()
                .function_name("hardware-dev-apigateway-execute")
                .name("live")
                .send(),
        )
        .unwrap();
    let second = live.function_version().unwrap().to_owned();
    let first = (second.parse::<u32>().unwrap() - 1).to_string();
    // A canary, as CodeDeploy sets it: the first version, and 30% to the second.
    runtime
        .block_on(
            lambda
                .update_alias()
                .function_name("hardware-dev-apigateway-execute")
                .name("live")
                .function_version(&first)
                .routing_config(
                    aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                        .additional_version_weights(&second, 0.3)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    // status shows the split while it lasts.
    crate::release::commit(&fixture, "status reads HEAD");
    let status = fixture.xtask(&["status", "hardware", "dev", "--local"]);
    assert!(
        stdout(&status).contains(&format!(
            "    live: version {first} 70%, version {second} 30%\n"
        )),
        "{}{}",
        stdout(&status),
        stderr(&status)
    );
    // A version by its number runs that version's code.
    let (answer, _) = lambda_invoke(&fixture, &first, "/v1/misc/time");
    assert!(
        answer["body"].as_str().unwrap().starts_with("first "),
        "{answer:#}"
    );
    let runs = 40;
    let mut seconds = 0;
    for _ in 0..runs {
        let (answer, error) = lambda_invoke(&fixture, "live", "/v1/misc/time");
        assert_eq!(error, None, "{answer:#}");
        let body = answer["body"].as_str().unwrap();
        match body.split(' ').next() {
            Some("second") => seconds += 1,
            Some("first") => {}
            other => panic!("answered by {other:?}: {body}"),
        }
    }
    // 30% of 40 is 12; a binomial's 99.9% interval is about 3 to 21.
    assert!(
        (3..=21).contains(&seconds),
        "{seconds} of {runs} went to the second version"
    );
}

/// The pre-traffic gate, invoked as CodeDeploy invokes it before any traffic moves: the verdict
/// it reported (its log says it), and whether it failed itself.
fn gate(fixture: &Fixture) -> (String, Option<String>) {
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let lambda = aws_sdk_lambda::Client::new(&crate::deploy::sdk(&endpoint));
    let hook = serde_json::json!({
        "DeploymentId": "d-LOCALTEST",
        "LifecycleEventHookExecutionId": "hook-1",
    });
    let answer = crate::deploy::runtime()
        .block_on(
            lambda
                .invoke()
                .function_name("hardware-dev-pre-traffic-gate")
                .log_type(aws_sdk_lambda::types::LogType::Tail)
                .payload(aws_sdk_lambda::primitives::Blob::new(hook.to_string()))
                .send(),
        )
        .unwrap();
    use base64::Engine as _;
    let log = base64::engine::general_purpose::STANDARD
        .decode(answer.log_result().unwrap_or_default())
        .unwrap();
    (
        String::from_utf8_lossy(&log).into_owned(),
        answer.function_error().map(str::to_owned),
    )
}

/// The real pre-traffic gate, built for this machine, as the stack's gate function (the stand-in
/// deploys one that passes every version). Later deploys keep it while the gate's zip is unchanged,
/// as CloudFormation updates a function's code only when its `Code` changes.
pub fn real_gate(fixture: &Fixture) {
    let built = crate::up_services::workspace_binaries("build", &["gate"]);
    crate::up_services::set_function_code(fixture, "hardware", "pre-traffic-gate", &built[0].1);
}

#[test]
fn the_gate_invokes_the_new_version_and_reports_its_verdict() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    real_gate(&fixture);
    // The gate's own Invoke of the version runs its code, and the verdict reaches CodeDeploy.
    let (log, error) = gate(&fixture);
    assert_eq!(error, None, "{log}");
    assert!(log.contains("every probe passed"), "{log}");

    // A release the gate refuses, through CodeDeploy during a deploy: `outcomes.rs`.
}
