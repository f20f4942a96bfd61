//! The canary path on the emulator, end to end with real processes: a deploy's alias update is
//! moved by the emulator's CodeDeploy (compressed time), `up` serves the split and publishes the
//! metrics the alarms watch, and an alarm its own failures trip rolls a canary back, as does one
//! set by hand; a linear shift is followed by deploy and seen by `status` as it happens.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::deploy::{bucket_get, deploy_command, release, stand_in};
use crate::support::{Fixture, call, free_port, spawn_until, stderr, stdout};
use crate::traffic::live;

/// The emulator's setting that makes a deployment's minutes pass faster.
const COMPRESSION: &str = "EMULATOR_TIME_COMPRESSION";

/// `deploy hardware dev --local --traffic <traffic>`, its emulator compressing time `times` over.
fn deploying(fixture: &Fixture, traffic: &str, times: &str) -> std::process::Command {
    let mut command = deploy_command(fixture, &["--traffic", traffic]);
    command.env(COMPRESSION, times);
    command
}

fn first_deploy(fixture: &Fixture, traffic: &str, times: &str) {
    let output = deploying(fixture, traffic, times).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

fn last_entry(fixture: &Fixture) -> Value {
    let history: Vec<Value> =
        serde_json::from_str(&bucket_get(fixture, "deployments/hardware-dev.json").unwrap())
            .unwrap();
    history.last().unwrap().clone()
}

#[test]
fn a_canary_that_fails_requests_is_rolled_back_by_the_alarm_it_trips() {
    let fixture = stand_in();
    // A canary of 10% for 5 minutes, which pass here in 15 seconds.
    first_deploy(&fixture, "canary", "20");
    let (before, _) = live(&fixture);
    let port = free_port();
    let port_text = port.to_string();
    let (mut up, _, _) = spawn_until(
        fixture.command(&["up", "hardware", "dev", "--local", "--port", &port_text]),
        true,
        "serving the deployed zips",
        Duration::from_secs(120),
    );

    // A release that passes the (stand-in) gate, then crashes on every request it gets.
    release(&fixture, "failing-requests");
    let mut deploy = deploying(&fixture, "canary", "20")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut answered, mut failed) = (0, 0);
    let started = Instant::now();
    while deploy.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the deploy hangs"
        );
        match call(port, "GET", "/v1/sensor", None, None).status {
            200 => answered += 1,
            _ => failed += 1,
        }
    }
    let output = deploy.wait_with_output().unwrap();
    let _ = up.kill();
    let _ = up.wait();
    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    for expected in [
        "CodeDeploy rolled back by alarm: One or more alarms have been activated",
        "<hardware-dev-function-errors>",
        "Its share of the traffic went back to the version before",
        "it is recorded as rolled back (alarm)",
        "UPDATE_ROLLBACK_COMPLETE",
    ] {
        assert!(said.contains(expected), "{expected:?} in:\n{said}");
    }
    assert!(
        said.contains(&format!(
            "an alarm fired, and CodeDeploy moved the traffic back to version {before}"
        )),
        "{said}"
    );
    // The alarm tripped on the canary's own failures, while the version before kept answering.
    assert!(
        failed >= 5 && answered > failed,
        "{answered} answered, {failed} failed"
    );
    assert_eq!(
        live(&fixture).0,
        before,
        "live is back on the version before"
    );
    let last = last_entry(&fixture);
    assert_eq!(last["outcome"]["state"], "rolled_back", "{last:#}");
    assert_eq!(last["outcome"]["cause"], "alarm", "{last:#}");
}

#[test]
fn a_linear_shift_is_followed_by_deploy_and_seen_by_status_as_it_happens() {
    let fixture = stand_in();
    // 10% a minute: each step takes 3 seconds here.
    first_deploy(&fixture, "linear", "20");
    crate::release::commit(&fixture, "status reads HEAD");
    release(&fixture, "second");
    let mut deploy = deploying(&fixture, "linear", "20")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut splits = Vec::new();
    let started = Instant::now();
    while deploy.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the deploy hangs; status said {splits:?}"
        );
        let output = fixture.xtask(&["status", "hardware", "dev", "--local"]);
        if let Some(line) = stdout(&output)
            .lines()
            .find(|l| l.trim_start().starts_with("live:"))
        {
            splits.push(line.trim().to_owned());
        }
    }
    let output = deploy.wait_with_output().unwrap();
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    let shares: Vec<u32> = said
        .lines()
        .filter_map(|l| l.split(" has ").nth(1)?.split('%').next()?.parse().ok())
        .collect();
    assert!(
        shares.len() >= 3 && shares.windows(2).all(|w| w[0] < w[1]),
        "the follower said each step: {shares:?}\n{said}"
    );
    assert!(said.contains("(linear, 10% a minute); next: "), "{said}");
    assert!(said.contains("has all the traffic"), "{said}");
    assert!(
        splits.iter().any(|s| s.contains("%, version")),
        "status showed the split during the shift: {splits:?}"
    );
}

#[test]
fn an_alarm_set_by_hand_stops_a_canary() {
    let fixture = stand_in();
    first_deploy(&fixture, "canary", "20");
    let (before, _) = live(&fixture);
    release(&fixture, "second");
    let mut deploy = deploying(&fixture, "canary", "20")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the canary has its share, an alarm is forced, as `aws cloudwatch set-alarm-state` does.
    let started = Instant::now();
    while !shifting(&fixture) {
        assert!(
            deploy.try_wait().unwrap().is_none(),
            "the deploy ended before the canary began"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no canary");
        std::thread::sleep(Duration::from_millis(200));
    }
    let endpoint = fixture.emulator().unwrap().0;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&crate::deploy::sdk(&endpoint));
    crate::deploy::runtime()
        .block_on(
            cloudwatch
                .set_alarm_state()
                .alarm_name("hardware-dev-function-throttles")
                .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
                .state_reason("forced by the test")
                .send(),
        )
        .unwrap();
    let output = deploy.wait_with_output().unwrap();
    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("rolled back by alarm: ")
            && said.contains("Activated alarms: <hardware-dev-function-throttles>"),
        "{said}"
    );
    assert_eq!(live(&fixture).0, before);
}

/// Whether the `live` alias sends a share to another version: a shift is under way.
fn shifting(fixture: &Fixture) -> bool {
    // ListAliases: the emulator answers GetAlias with a 201.
    let aliases = crate::deploy::lambda_get(fixture, "hardware-dev-apigateway-execute/aliases");
    aliases["Aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["Name"] == "live")
        .any(|a| a["RoutingConfig"]["AdditionalVersionWeights"].is_object())
}
