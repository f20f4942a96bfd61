//! Releases that know what they are, on the emulator with the stand-in service: each history
//! entry has an outcome; rollback (automatic or asked for) goes to the release that ran before,
//! never to one known to fail; a failed or unchecked release is checked again on a rerun; what a
//! writer of the bucket controls is checked; a damaged history has a way out that works; and the
//! loop holds the stack's lock until its verdict, so another deploy's release is never undone.

use std::process::Stdio;

use serde_json::Value;

use crate::deploy::{
    bucket_get, bucket_put, deploy, deploy_command, deployed, function_code, key, release, stand_in,
};
use crate::fencing::{Paused, last_error};
use crate::probe::failed;
use crate::support::{Fixture, stderr, stdout};

const HISTORY: &str = "deployments/hardware-dev.json";

fn history(fixture: &Fixture) -> Vec<Value> {
    serde_json::from_str(&bucket_get(fixture, HISTORY).expect("a history")).unwrap()
}

/// Each entry's outcome state, oldest first.
fn states(fixture: &Fixture) -> Vec<String> {
    history(fixture)
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["command"].as_str().unwrap(),
                e["outcome"]["state"].as_str().unwrap()
            )
        })
        .collect()
}

/// `status --json`: whether it exited 0, and its report.
fn status(fixture: &Fixture) -> (bool, Value, String) {
    if !fixture.root.join(".git").exists() {
        crate::release::commit(fixture, "status reads HEAD");
    }
    let output = fixture.xtask(&["status", "hardware", "dev", "--local", "--json"]);
    let report = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|_| panic!("no status:\n{}", stderr(&output)));
    (output.status.success(), report, stderr(&output))
}

/// The fixture's service template, with `STAND_IN_BROKEN` in the function's environment (or not):
/// a change of the template alone, the code unchanged.
fn break_template(fixture: &Fixture, broken: bool) {
    let path = fixture
        .root
        .join("cloudformation/hardware-environment.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = "          RUST_LOG: info\n";
    let with = format!("{marker}          STAND_IN_BROKEN: \"1\"\n");
    let text = match broken {
        true => text.replacen(marker, &with, 1),
        false => text.replacen(&with, marker, 1),
    };
    std::fs::write(&path, text).unwrap();
}

/// Adds a probe the stand-in cannot pass (it answers 200): a parameter change, the code unchanged.
fn add_failing_probe(fixture: &Fixture, path: &str) {
    let manifest = fixture.root.join("services/hardware/Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(&format!(
        "\n[[package.metadata.lambda.probes]]\npath = \"{path}\"\nstatus = 404\n"
    ));
    std::fs::write(&manifest, text).unwrap();
}

#[test]
fn failures_with_unchanged_code_go_back_to_the_release_before_and_never_to_a_failure() {
    let fixture = stand_in();
    let (first, _) = deployed(&fixture, &[]);
    // A release that panics at init is rolled back, and remembered as failed.
    release(&fixture, "broken-init");
    let (said, stack) = failed(&fixture, &[]);
    assert_eq!(stack["probes"]["result"], "rolled_back", "{said}");
    let broken = key(&stack);
    release(&fixture, "second");
    let (second, _) = deployed(&fixture, &[]);
    assert_eq!(second["probes"]["result"], "passed");

    // A template-only change fails: back to the release that ran just before it ("second"), not
    // to older code, and never to the broken release.
    break_template(&fixture, true);
    let (said, stack) = failed(&fixture, &[]);
    assert_eq!(key(&stack), key(&second), "the code did not change");
    assert_eq!(stack["probes"]["result"], "rolled_back", "{said}");
    assert_eq!(
        stack["probes"]["restored"]["ApigatewayExecuteArtifactKey"],
        key(&second)
    );
    assert!(function_code(&fixture).contains(&key(&second)), "{said}");
    break_template(&fixture, false);

    // A second failure with unchanged code (a probe the release cannot pass): back to "second"
    // again, as it was checked, with its own probes.
    add_failing_probe(&fixture, "/v1/misc/nope");
    let (said, _) = failed(&fixture, &[]);
    assert!(said.contains("/v1/misc/nope"), "{said}");
    assert!(
        said.contains("runs again, and it passes its probes"),
        "{said}"
    );
    assert!(function_code(&fixture).contains(&key(&second)), "{said}");
    assert!(!function_code(&fixture).contains(&broken));
    assert_eq!(
        states(&fixture),
        [
            "deploy superseded",
            "deploy rolled_back",
            "rollback superseded",
            "deploy superseded",
            "deploy rolled_back",
            "rollback superseded",
            "deploy rolled_back",
            "rollback live",
        ]
    );

    // A plain rollback skips every failed entry: it goes to the first release, whose code is not
    // the broken one, although the broken one ran in between.
    let output = fixture.xtask(&["rollback", "hardware", "dev", "--local", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        report["stacks"][0]["probes"]["result"], "passed",
        "{report:#}"
    );
    assert!(function_code(&fixture).contains(&key(&first)));
    let (ok, report, said) = status(&fixture);
    assert!(ok, "{said}");
    assert_eq!(report["outcome"]["state"], "live", "{report:#}");

    // With the real pre-traffic gate, which CodeDeploy runs before it moves `live`, the release
    // that panics at init never gets traffic: the gate's probe fails, the stack is rolled back,
    // `live` stays, and the release is remembered as turned away by the gate.
    crate::invoke::real_gate(&fixture);
    let (live, _) = crate::traffic::live(&fixture);
    release(&fixture, "broken-init");
    let output = deploy(&fixture, &[]);
    assert!(!output.status.success());
    let said = stderr(&output);
    for expected in [
        "hardware-dev: CodeDeploy rolled back by probe (the pre-traffic gate): version",
        "failed GET /v1/misc/time (200): a function error (Unhandled)",
        "It never got any traffic, CloudFormation rolled the stack back",
        "it is recorded as rolled back (gate), so no rollback goes to it",
        "UPDATE_ROLLBACK_COMPLETE",
    ] {
        assert!(said.contains(expected), "{expected:?} in:\n{said}");
    }
    assert_eq!(crate::traffic::live(&fixture).0, live, "live stayed");
    assert!(function_code(&fixture).contains(&key(&first)), "{said}");
    let last = history(&fixture).pop().unwrap();
    assert_eq!(last["outcome"]["state"], "rolled_back", "{last:#}");
    assert_eq!(last["outcome"]["cause"], "gate", "{last:#}");
}

#[test]
fn a_failed_or_unchecked_release_is_checked_again_on_a_rerun() {
    let fixture = stand_in();
    release(&fixture, "broken-init");
    let (said, _) = failed(&fixture, &[]);
    assert!(said.contains("It was the stack's first deploy"), "{said}");
    // The failure shows why: the function's last log lines, its init error among them, which
    // `logs` reads too, with Lambda's report of the failed init.
    assert!(
        said.contains("the last log lines of hardware-dev-apigateway-execute:\n")
            && said.contains("│ init failed: the broken-init release never starts"),
        "{said}"
    );
    let logs = fixture.xtask(&["logs", "hardware", "dev", "--local", "--since", "10m"]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    let logs = stdout(&logs);
    assert!(
        logs.contains("init failed: the broken-init release never starts")
            && logs
                .contains("INIT_REPORT Phase: init\tStatus: error\tError Type: Runtime.ExitError"),
        "{logs}"
    );
    // The identical rerun is not "nothing to deploy": it checks the release again, and fails.
    let (said, stack) = failed(&fixture, &[]);
    assert!(
        said.contains("runs this release, but it is recorded as failed (probe): "),
        "{said}"
    );
    assert!(!said.contains("nothing to deploy"), "{said}");
    assert_eq!(stack["outcome"], "unchanged");
    assert_eq!(stack["probes"]["result"], "failed");
    let (ok, report, said) = status(&fixture);
    assert!(!ok, "status exits non-zero for a failed release");
    assert_eq!(report["outcome"]["state"], "failed", "{report:#}");
    assert!(
        said.contains("runs a release recorded as failed (probe)"),
        "{said}"
    );
    assert!(
        said.contains("`cargo xtask rollback hardware dev --local`"),
        "{said}"
    );

    // Fixed: live, and status is content.
    release(&fixture, "fixed");
    let (fixed, _) = deployed(&fixture, &[]);
    assert!(status(&fixture).0);

    // Left failing by --no-rollback, then rerun without it: checked, and rolled back to "fixed".
    release(&fixture, "broken-init");
    let (said, _) = failed(&fixture, &["--no-rollback"]);
    assert!(said.contains("recorded as failed"), "{said}");
    let (said, stack) = failed(&fixture, &[]);
    assert!(said.contains("checking it again"), "{said}");
    assert_eq!(stack["probes"]["result"], "rolled_back", "{said}");
    assert!(function_code(&fixture).contains(&key(&fixed)));
    assert!(status(&fixture).0);
}

#[test]
fn an_interrupted_check_leaves_the_release_unchecked_until_the_next_deploy_checks_it() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    release(&fixture, "second");
    let (output, said) = Paused::start(&fixture, "probe").interrupt();
    assert!(!output.status.success());
    let error = last_error(&said);
    assert!(
        error.starts_with("error: interrupted while probing hardware-dev: it runs the release just deployed (")
            && error.contains("recorded as unchecked; it was neither checked nor rolled back. The next `cargo xtask deploy hardware dev --local` checks it"),
        "{said}"
    );
    let (ok, report, said) = status(&fixture);
    assert!(!ok, "an unchecked release is not content: {said}");
    assert_eq!(report["outcome"]["state"], "unchecked");
    let output = deploy(&fixture, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .contains("runs this release, but it is recorded as unchecked: checking it again"),
        "{}",
        stderr(&output)
    );
    assert!(status(&fixture).0);

    // A parameter-only release interrupted after it executed is recovered, and checked, too.
    let parameter = ["--parameter", "LogRetentionDays=14"];
    let mut paused = deploy_command(&fixture, &parameter);
    let child = paused
        .env("XTASK_TEST_PAUSE_AT", "executed")
        .env("XTASK_TEST_RESUME", fixture.root.join("never"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = interrupt_when_paused(&fixture, child, "executed");
    assert!(said.contains("neither recorded nor checked"), "{said}");
    let output = deploy(&fixture, &parameter);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("as recovered"),
        "{}",
        stderr(&output)
    );
    assert_eq!(states(&fixture).last().unwrap(), "recovered live");
}

/// Waits for `child` to say it paused at `point` and for the stack to settle (the emulator's
/// CodeDeploy may still be moving `live`), sends it Ctrl-C, and returns what it said.
fn interrupt_when_paused(fixture: &Fixture, mut child: std::process::Child, point: &str) -> String {
    use std::io::Read;
    let mut stderr = child.stderr.take().unwrap();
    let mut said = String::new();
    let mut buffer = [0u8; 4096];
    while !said.contains(&format!("paused at {point}")) {
        let n = stderr.read(&mut buffer).unwrap();
        assert!(n > 0, "it ended without pausing:\n{said}");
        said.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    crate::fencing::settled(fixture);
    let signal = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    stderr.read_to_string(&mut said).unwrap();
    assert!(!child.wait().unwrap().success());
    said
}

#[test]
fn what_a_writer_of_the_bucket_controls_is_checked() {
    let fixture = stand_in();
    let (first, _) = deployed(&fixture, &[]);
    release(&fixture, "second");
    let (second, _) = deployed(&fixture, &[]);

    // A history entry that names another service's zip as hardware's is refused.
    let mut entries = history(&fixture);
    let forged = key(&first).replace("lambdas/hardware/", "lambdas/users/");
    entries[0]["artifact_keys"]["ApigatewayExecuteArtifactKey"] = Value::from(forged.clone());
    bucket_put(
        &fixture,
        HISTORY,
        serde_json::to_string(&entries).unwrap().as_bytes(),
    );
    let output = fixture.xtask(&["rollback", "hardware", "dev", "--local"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!(
            "ApigatewayExecuteArtifactKey={forged} is not an artifact of hardware's function for \
             that parameter"
        )) && stderr(&output).contains("is refused; nothing was changed"),
        "{}",
        stderr(&output)
    );
    assert!(function_code(&fixture).contains(&key(&second)));

    // dev's fast build, re-uploaded with the same bytes and no metadata, still cannot reach qa:
    // its profile is stamped in the bytes its key names.
    let bytes = crate::deploy::bucket_bytes(&fixture, &key(&second)).unwrap();
    bucket_put(&fixture, &key(&second), &bytes);
    let output = fixture.xtask(&["promote", "hardware", "dev", "qa", "--local"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("built with the fast profile, and qa runs only release builds"),
        "{}",
        stderr(&output)
    );
    let (_, report, _) = status(&fixture);
    assert_eq!(report["functions"][0]["profile"], "fast", "{report:#}");
}

#[test]
fn a_damaged_history_refuses_changes_and_its_way_out_works() {
    let fixture = stand_in();
    let (first, _) = deployed(&fixture, &[]);
    release(&fixture, "second");
    let (second, _) = deployed(&fixture, &[]);
    let whole = bucket_get(&fixture, HISTORY).unwrap();
    bucket_put(&fixture, HISTORY, &whole.as_bytes()[..whole.len() / 2]);
    let way_out = "`cargo xtask reset-history hardware dev --local`";

    release(&fixture, "third");
    let output = deploy(&fixture, &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("nothing was changed") && stderr(&output).contains(way_out),
        "{}",
        stderr(&output)
    );
    assert!(function_code(&fixture).contains(&key(&second)));
    let plain = fixture.xtask(&["rollback", "hardware", "dev", "--local"]);
    assert!(stderr(&plain).contains(way_out), "{}", stderr(&plain));

    // status shows what runs from the stack alone, and says what to do.
    let (ok, report, said) = status(&fixture);
    assert!(!ok);
    assert_eq!(report["functions"][0]["artifact_key"], key(&second));
    assert!(said.contains(way_out), "{said}");

    // A key can still be rolled back to, from what the stack runs.
    let output = fixture.xtask(&[
        "rollback",
        "hardware",
        "dev",
        "--local",
        "--to",
        &key(&first),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(function_code(&fixture).contains(&key(&first)));

    // The way out: the damaged history is kept aside, a new one records what runs, and deploys work.
    let output = fixture.xtask(&["reset-history", "hardware", "dev", "--local"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let moved = stdout(&output);
    let aside = moved
        .split("s3://biometrix-infrastructure-us-west-2/")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{moved}"));
    assert!(
        aside.starts_with("deployments/hardware-dev.json.damaged-"),
        "{moved}"
    );
    assert_eq!(
        bucket_get(&fixture, aside).unwrap(),
        whole[..whole.len() / 2]
    );
    assert_eq!(states(&fixture), ["recovered unchecked"]);
    let again = fixture.xtask(&["reset-history", "hardware", "dev", "--local"]);
    assert!(stderr(&again).contains("reads fine: there is nothing to reset"));
    let (third, _) = deployed(&fixture, &[]);
    assert!(function_code(&fixture).contains(&key(&third)));
    assert_eq!(states(&fixture), ["recovered unchecked", "deploy live"]);
}

#[test]
fn a_release_that_fails_after_another_deploy_started_never_undoes_it() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    // A deploys a broken release and is held just before its probes, with the stack's lock.
    release(&fixture, "broken-init");
    let a = Paused::start(&fixture, "probe");
    // B builds another release meanwhile, and waits for the lock.
    release(&fixture, "third");
    let b_log = fixture.root.join("deploy-b.log");
    let b = deploy_command(&fixture, &["--json"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&b_log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !std::fs::read_to_string(&b_log)
        .unwrap()
        .contains("waiting: stack hardware-dev is being deployed by")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&b_log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (output, said) = a.resume();
    assert!(!output.status.success());
    assert!(
        said.contains("Rolled back by itself to the release before"),
        "{said}"
    );
    let b = b.wait_with_output().unwrap();
    let b_said = std::fs::read_to_string(&b_log).unwrap();
    assert!(b.status.success(), "{b_said}");
    let report: Value = serde_json::from_str(&stdout(&b)).unwrap();
    let third = key(&report["stacks"][0]);
    assert!(function_code(&fixture).contains(&third), "B's release runs");
    assert_eq!(
        states(&fixture),
        [
            "deploy superseded",
            "deploy rolled_back",
            "rollback superseded",
            "deploy live"
        ]
    );
}
