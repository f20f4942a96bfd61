//! status and rollback on the stand-in workspace, deployed to the local emulator: the day-to-day
//! loop after a deploy.

use std::process::Command;

use serde_json::Value;

use crate::deploy::{deployed, function_code, key, release, stand_in};
use crate::support::{Fixture, stderr, stdout};

fn status(fixture: &Fixture) -> Value {
    let output = fixture.xtask(&["status", "hardware", "dev", "--local", "--json"]);
    assert!(
        output.status.success(),
        "status failed:\n{}",
        stderr(&output)
    );
    serde_json::from_str(&stdout(&output)).unwrap()
}

/// A failure whose error names `fragment`.
pub fn refused(output: &std::process::Output, fragment: &str) {
    assert!(
        !output.status.success(),
        "expected a failure: {}",
        stdout(output)
    );
    let stderr = stderr(output);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error.contains(fragment),
        "{fragment:?} not in the error; stderr:\n{stderr}"
    );
}

/// Makes the fixture a git repository with one commit, as a checkout is.
pub fn commit(fixture: &Fixture, message: &str) -> String {
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .current_dir(&fixture.root)
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {args:?}: {}", stderr(&output));
        stdout(&output).trim().to_owned()
    };
    if !fixture.root.join(".git").exists() {
        git(&["init", "--quiet"]);
        std::fs::write(fixture.root.join(".gitignore"), "/target\n/Cargo.lock\n").unwrap();
    }
    git(&["add", "--all"]);
    git(&["commit", "--quiet", "--allow-empty", "-m", message]);
    git(&["rev-parse", "HEAD"])
}

#[test]
fn status_shows_what_is_deployed_and_whether_head_differs() {
    let fixture = stand_in();
    let first = commit(&fixture, "first release");

    let before = status(&fixture);
    assert_eq!(before["stack"], "hardware-dev");
    assert_eq!(before["status"], Value::Null, "{before:#}");
    assert_eq!(before["functions"][0]["artifact_key"], Value::Null);
    let text = fixture.xtask(&["status", "hardware", "dev", "--local"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("not deployed"), "{}", stdout(&text));

    let (stack, _) = deployed(&fixture, &[]);
    let after = status(&fixture);
    assert_eq!(after["status"], "CREATE_COMPLETE", "{after:#}");
    assert!(
        after["last_updated"].as_str().unwrap().starts_with("20"),
        "{after:#}"
    );
    let function = &after["functions"][0];
    assert_eq!(function["artifact_key"], key(&stack));
    assert_eq!(function["commit"], first.as_str());
    assert_eq!(function["dirty"], false);
    assert_eq!(function["in_bucket"], true);
    assert_eq!(after["head"]["commit"], first.as_str());
    assert_eq!(after["head"]["would_change_code"], false, "{after:#}");
    assert_eq!(after["history"].as_array().unwrap().len(), 1);
    assert_eq!(after["history"][0]["command"], "deploy");
    assert_eq!(after["outputs"], stack["outputs"]);

    // A new commit that changes the code: status says so once HEAD is packaged.
    release(&fixture, "second");
    let second = commit(&fixture, "second release");
    let unknown = status(&fixture);
    assert_eq!(unknown["head"]["commit"], second.as_str());
    assert_eq!(
        unknown["head"]["would_change_code"],
        Value::Null,
        "{unknown:#}"
    );
    let packaged = fixture.xtask(&["package", "hardware", "dev"]);
    assert!(packaged.status.success(), "{}", stderr(&packaged));
    let known = status(&fixture);
    assert_eq!(known["head"]["would_change_code"], true, "{known:#}");
}

#[test]
fn rollback_goes_back_to_the_previous_release_and_refuses_a_missing_key() {
    let fixture = stand_in();
    let first_commit = commit(&fixture, "first release");
    let (first, _) = deployed(&fixture, &[]);
    release(&fixture, "second");
    commit(&fixture, "second release");
    let (second, _) = deployed(&fixture, &[]);
    assert_ne!(key(&first), key(&second));
    let running = function_code(&fixture);

    // A key that is not in the bucket is refused before anything changes.
    let missing = format!("lambdas/hardware/apigateway-execute/{}.zip", "0".repeat(64));
    let output = fixture.xtask(&["rollback", "hardware", "dev", "--local", "--to", &missing]);
    refused(
        &output,
        "does not exist. That release cannot be deployed; nothing was changed",
    );
    assert_eq!(
        status(&fixture)["functions"][0]["artifact_key"],
        key(&second)
    );
    assert_eq!(function_code(&fixture), running);

    // No --to: the release before the current one.
    let output = fixture.xtask(&[
        "rollback",
        "hardware",
        "dev",
        "--local",
        "--json",
        "--timeout",
        "120",
    ]);
    assert!(
        output.status.success(),
        "rollback failed:\n{}",
        stderr(&output)
    );
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["stacks"][0]["outcome"], "updated", "{report:#}");
    assert_eq!(report["uploaded"], 0);
    let after = status(&fixture);
    assert_eq!(after["functions"][0]["artifact_key"], key(&first));
    assert_eq!(after["functions"][0]["commit"], first_commit.as_str());
    assert_ne!(
        function_code(&fixture),
        running,
        "Lambda runs the earlier code again"
    );
    let history = after["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["command"], "rollback");
    assert_eq!(history[0]["commit"], first_commit.as_str());

    // Rolling back again returns to the second release: the newest with other code.
    let again = fixture.xtask(&["rollback", "hardware", "dev", "--local", "--json"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        status(&fixture)["functions"][0]["artifact_key"],
        key(&second)
    );

    // An unknown commit names the recorded ones.
    let unknown = fixture.xtask(&["rollback", "hardware", "dev", "--local", "--to", "ffffff0"]);
    refused(&unknown, &first_commit[..12]);
}

#[test]
fn read_only_commands_with_another_bucket_change_nothing() {
    let fixture = stand_in();
    commit(&fixture, "first release");
    deployed(&fixture, &[]);
    let endpoint = fixture.emulator().unwrap().0;
    let before = everything(&endpoint);
    for args in [
        &["status", "hardware", "dev"][..],
        &["gc"],
        &["logs", "hardware", "dev"],
        &["destroy", "hardware", "qa"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--local", "--bucket", "another-bucket-for-reads"]);
        let output = fixture.xtask(&all);
        if matches!(args[0], "status" | "gc") {
            refused(
                &output,
                "the local emulator has no artifact bucket another-bucket-for-reads",
            );
        }
    }
    assert_eq!(
        everything(&endpoint),
        before,
        "a read-only command changed something"
    );
}

/// The emulator's buckets, and each stack with its status and parameters.
fn everything(endpoint: &str) -> String {
    let s3 = crate::deploy::s3(endpoint);
    let cloudformation = crate::deploy::cloudformation(endpoint);
    crate::deploy::runtime().block_on(async {
        let buckets: Vec<String> = s3
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_owned))
            .collect();
        let stacks: Vec<String> = cloudformation
            .describe_stacks()
            .send()
            .await
            .unwrap()
            .stacks()
            .iter()
            .map(|s| {
                format!(
                    "{:?} {:?} {:?}",
                    s.stack_name(),
                    s.stack_status(),
                    s.parameters()
                )
            })
            .collect();
        format!("{buckets:?}\n{stacks:#?}")
    })
}
