//! The deploy lock is fenced and Ctrl-C tells the truth, on the emulator with real processes: a
//! stale or orphaned lock is taken over, a stolen one stops a deploy before it executes, a history
//! written by someone else meanwhile keeps both entries, and a deploy interrupted at each step says
//! exactly what it left (a test hook pauses it there: `XTASK_TEST_PAUSE_AT`).

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::deploy::{
    bucket_get, bucket_put, cloudformation, deployed, function_code, key, release, runtime,
    stand_in,
};
use crate::support::{Fixture, stderr, stdout};

const LOCK: &str = "locks/hardware-dev.json";

fn put(fixture: &Fixture, key: &str, body: &str) {
    bucket_put(fixture, key, body.as_bytes());
}

fn get(fixture: &Fixture, key: &str) -> Option<String> {
    bucket_get(fixture, key)
}

/// The stack's change sets that were not executed (moto also lists the executed ones).
fn change_sets(fixture: &Fixture) -> Vec<String> {
    let client = cloudformation(&fixture.emulator().unwrap().0);
    let listed = runtime()
        .block_on(client.list_change_sets().stack_name("hardware-dev").send())
        .unwrap();
    listed
        .summaries()
        .iter()
        .filter(|s| {
            s.execution_status()
                .is_none_or(|e| e.as_str() != "EXECUTE_COMPLETE")
        })
        .filter_map(|s| s.change_set_name().map(str::to_owned))
        .collect()
}

/// A deploy started with the test hook pausing it at `point`; its stderr goes to a file.
pub struct Paused {
    child: Child,
    log: PathBuf,
    resume: PathBuf,
}

impl Paused {
    pub fn start(fixture: &Fixture, point: &str) -> Paused {
        Paused::run(
            fixture,
            crate::deploy::deploy_command(fixture, &["--json"]),
            point,
        )
    }

    /// `command` (any xtask command) started with the hook pausing it at `point`.
    pub fn run(fixture: &Fixture, mut command: std::process::Command, point: &str) -> Paused {
        let log = fixture.root.join(format!("deploy-{point}.log"));
        let resume = fixture.root.join(format!("resume-{point}"));
        let child = command
            .env("XTASK_TEST_PAUSE_AT", point)
            .env("XTASK_TEST_RESUME", &resume)
            .env("HOSTNAME", "fencing-test-host")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let paused = Paused { child, log, resume };
        paused.wait_for(&format!("paused at {point}"));
        paused
    }

    pub fn said(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !self.said().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in:\n{}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn resume(self) -> (Output, String) {
        std::fs::write(&self.resume, "").unwrap();
        self.finish()
    }

    pub fn interrupt(self) -> (Output, String) {
        let signal = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(signal.success());
        self.finish()
    }

    fn finish(self) -> (Output, String) {
        let output = self.child.wait_with_output().unwrap();
        let said = std::fs::read_to_string(&self.log).unwrap_or_default();
        (output, said)
    }
}

pub fn last_error(said: &str) -> &str {
    said.lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
}

#[test]
fn stale_and_orphaned_locks_are_taken_over() {
    let fixture = stand_in();
    deployed(&fixture, &[]);

    // A lock nobody renewed for longer than its lifetime, by S3's clock.
    let stale = serde_json::json!({"holder": "ci@builder (pid 1)", "stack": "stack hardware-dev", "lifetime": 1});
    put(&fixture, LOCK, &stale.to_string());
    std::thread::sleep(Duration::from_secs(3));
    release(&fixture, "after a stale lock");
    let output = fixture
        .command(&["deploy", "hardware", "dev", "--local", "--no-wait"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "taking over the lock of ci@builder (pid 1) on stack hardware-dev: S3 last wrote it"
        ),
        "{}",
        stderr(&output)
    );

    // A live lock of a machine that shares this one's name but not its boot: its pid means
    // nothing here, so it is waited for (refused with --no-wait), never taken over.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let twin = serde_json::json!({
        "holder": "ci@runner (pid 7)", "stack": "stack hardware-dev",
        "host": "fencing-test-host", "boot_id": "another-machine", "pid": pid, "lifetime": 600,
    });
    put(&fixture, LOCK, &twin.to_string());
    let output = fixture
        .command(&["deploy", "hardware", "dev", "--local", "--no-wait"])
        .env("HOSTNAME", "fencing-test-host")
        .output()
        .unwrap();
    assert!(
        stderr(&output).contains("stack hardware-dev is being deployed by ci@runner (pid 7)"),
        "{}",
        stderr(&output)
    );

    // A lock whose process on this machine, this boot, is gone.
    let orphan = serde_json::json!({
        "holder": "me@fencing-test-host", "stack": "stack hardware-dev",
        "host": "another-name", "boot_id": boot_id.trim(), "pid": pid, "lifetime": 600,
    });
    put(&fixture, LOCK, &orphan.to_string());
    release(&fixture, "after an orphaned lock");
    let output = fixture
        .command(&["deploy", "hardware", "dev", "--local", "--no-wait"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "its process ({pid}) is no longer running on this machine"
        )),
        "{}",
        stderr(&output)
    );
    assert_eq!(get(&fixture, LOCK), None, "the lock was released");
}

#[test]
fn a_stolen_lock_stops_the_deploy_before_it_executes() {
    let fixture = stand_in();
    let (first, _) = deployed(&fixture, &[]);
    release(&fixture, "never executed");
    let paused = Paused::start(&fixture, "execute");
    let thief = serde_json::json!({"holder": "thief@elsewhere (pid 2)", "stack": "stack hardware-dev", "lifetime": 600});
    put(&fixture, LOCK, &thief.to_string());
    let (output, said) = paused.resume();
    assert!(!output.status.success(), "{said}");
    let error = last_error(&said);
    assert!(
        error.contains(
            "the lock on stack hardware-dev (s3://biometrix-infrastructure-us-west-2/locks/hardware-dev.json) \
             is no longer this deploy's: it is held by thief@elsewhere (pid 2). Nothing was executed"
        ),
        "{said}"
    );
    assert!(
        function_code(&fixture).contains(&key(&first)),
        "the old code runs"
    );
    assert!(
        change_sets(&fixture).is_empty(),
        "{:?}",
        change_sets(&fixture)
    );
    assert!(
        get(&fixture, LOCK).unwrap().contains("thief@elsewhere"),
        "the other holder's lock is left alone"
    );
}

#[test]
fn a_history_written_meanwhile_keeps_both_entries() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    release(&fixture, "second");
    let paused = Paused::start(&fixture, "history");
    // Someone writes the history between the deploy's read and its write.
    let history: Vec<Value> =
        serde_json::from_str(&get(&fixture, "deployments/hardware-dev.json").unwrap()).unwrap();
    let mut other = history[0].clone();
    other["commit"] = Value::from("f".repeat(40));
    let mut written = history.clone();
    written.push(other);
    put(
        &fixture,
        "deployments/hardware-dev.json",
        &serde_json::to_string(&written).unwrap(),
    );
    let (output, said) = paused.resume();
    assert!(output.status.success(), "{said}");
    let after: Vec<Value> =
        serde_json::from_str(&get(&fixture, "deployments/hardware-dev.json").unwrap()).unwrap();
    assert_eq!(after.len(), 3, "{after:#?}");
    assert_eq!(after[1]["commit"], "f".repeat(40));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        after[2]["artifact_keys"],
        report["stacks"][0]["artifact_keys"]
    );
}

/// Waits until the fixture's stack is no longer changing (at most a minute).
pub fn settled(fixture: &Fixture) {
    let cloudformation = cloudformation(&fixture.emulator().unwrap().0);
    for _ in 0..600 {
        let described = runtime()
            .block_on(
                cloudformation
                    .describe_stacks()
                    .stack_name("hardware-dev")
                    .send(),
            )
            .unwrap();
        let status = described.stacks()[0]
            .stack_status()
            .unwrap()
            .as_str()
            .to_owned();
        if !status.ends_with("_IN_PROGRESS") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("stack hardware-dev is still changing after a minute");
}

#[test]
fn an_interrupted_deploy_says_exactly_what_it_left() {
    let fixture = stand_in();
    crate::release::commit(&fixture, "status needs a commit");
    let (first, _) = deployed(&fixture, &[]);
    let cases = [
        (
            "create-change-set",
            "was created; stack hardware-dev is as it was",
        ),
        (
            "change-set-sent",
            "was executed; it was deleted, and stack hardware-dev is as it was",
        ),
        (
            "execute",
            "was executed; it was deleted, and stack hardware-dev is as it was",
        ),
    ];
    for (n, (point, says)) in cases.into_iter().enumerate() {
        release(&fixture, &format!("interrupted {n}"));
        let (output, said) = Paused::start(&fixture, point).interrupt();
        assert!(!output.status.success(), "{point}: {said}");
        let error = last_error(&said);
        assert!(
            error.starts_with("error: interrupted before change set xtask-deploy-"),
            "{point}: {said}"
        );
        assert!(error.ends_with(says), "{point}: {said}");
        assert!(
            change_sets(&fixture).is_empty(),
            "{point}: {:?}",
            change_sets(&fixture)
        );
        assert!(
            function_code(&fixture).contains(&key(&first)),
            "{point}: the old code runs"
        );
        assert_eq!(get(&fixture, LOCK), None, "{point}: the lock was released");
    }

    // Interrupted once the change set was executed and the update ended (the emulator's CodeDeploy
    // moved `live` meanwhile): the update happened, and is said to have.
    release(&fixture, "executed, then interrupted");
    let paused = Paused::start(&fixture, "executed");
    settled(&fixture);
    let (output, said) = paused.interrupt();
    assert!(!output.status.success(), "{said}");
    let error = last_error(&said);
    assert!(
        error.contains("was executed: stack hardware-dev is UPDATE_COMPLETE"),
        "{said}"
    );
    assert!(
        error.contains(
            "so it runs the new release, which was neither recorded nor checked. The next `cargo \
             xtask deploy hardware dev --local` records it (as recovered) and checks it"
        ),
        "{said}"
    );
    let running = function_code(&fixture);
    assert!(!running.contains(&key(&first)), "the new code runs");

    // status says so, and changes nothing.
    let status = fixture.xtask(&["status", "hardware", "dev", "--local", "--json"]);
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["recorded"], false, "{status:#}");

    // The next deploy finds nothing to change, and records what runs.
    let again = fixture
        .command(&["deploy", "hardware", "dev", "--local", "--json"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("recorded it, as recovered"),
        "{}",
        stderr(&again)
    );
    let history: Vec<Value> =
        serde_json::from_str(&get(&fixture, "deployments/hardware-dev.json").unwrap()).unwrap();
    let newest = history.last().unwrap();
    assert_eq!(newest["command"], "recovered");
    let key = newest["artifact_keys"]["ApigatewayExecuteArtifactKey"]
        .as_str()
        .unwrap();
    assert!(running.contains(key), "{newest:#}");
    let status = fixture.xtask(&["status", "hardware", "dev", "--local", "--json"]);
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["recorded"], true, "{status:#}");
    assert!(Path::new(&fixture.root).exists());
}

#[test]
fn interrupted_in_a_deletion_or_with_aws_gone_it_says_what_is_true() {
    let fixture = stand_in();
    // The bucket first (a first deploy would pause in its bootstrap).
    let published = fixture.xtask(&["publish", "hardware", "dev", "--local"]);
    assert!(published.status.success(), "{}", stderr(&published));
    // A first deploy interrupted once its change set was sent leaves an empty stack in review.
    let (_, said) = Paused::start(&fixture, "change-set-sent").interrupt();
    assert!(last_error(&said).contains("REVIEW_IN_PROGRESS"), "{said}");
    // The next deploy deletes that stack first; interrupted there, it says the deletion had not
    // started, not that nothing was sent.
    let (output, said) = Paused::start(&fixture, "delete").interrupt();
    assert!(!output.status.success());
    assert_eq!(
        last_error(&said),
        "error: interrupted while stack hardware-dev was being deleted to be created again: it is \
         REVIEW_IN_PROGRESS: the deletion had not started. Deploy again, which waits for it and \
         creates the stack",
        "{said}"
    );
    let (first, _) = deployed(&fixture, &[]);

    // The emulator gone just before execute: nothing was executed, and the change set whose
    // deletion could not be sent may remain; it is not said to be deleted.
    release(&fixture, "never executed");
    let paused = Paused::start(&fixture, "execute");
    let (_, pid) = fixture.emulator().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (output, said) = paused.resume();
    assert!(!output.status.success());
    let error = last_error(&said);
    assert!(
        error.contains("Nothing was executed, and stack hardware-dev is as it was; deleting change set xtask-deploy-")
            && error.contains("could not be sent")
            && error.contains("so it may remain: "),
        "{said}"
    );
    assert!(!error.contains("was deleted"), "{said}");
    assert!(!key(&first).is_empty());
}

#[test]
fn a_lock_renewal_that_meets_passing_errors_keeps_the_lock() {
    let fixture = stand_in();
    let faults = fixture.root.join("faults");
    // The emulator this deploy starts fails, while `faults` exists, the paths it lists.
    let first = crate::deploy::deploy_command(&fixture, &[])
        .env("EMULATOR_FAULTS", &faults)
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    release(&fixture, "second");
    let paused = Paused::start(&fixture, "probe");
    // S3 throttles the lock for longer than a renewal's own retries last.
    std::fs::write(&faults, "/biometrix-infrastructure-us-west-2/locks/\n").unwrap();
    paused.wait_for("; trying again");
    std::thread::sleep(Duration::from_secs(6));
    std::fs::remove_file(&faults).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    let holder = get(&fixture, LOCK).expect("the lock is still there");
    assert!(holder.contains("fencing-test-host"), "{holder}");
    let (output, said) = paused.resume();
    assert!(output.status.success(), "{said}");
    assert!(said.contains("SlowDown") || said.contains("503"), "{said}");
    assert!(
        !said.contains("could not be renewed within its lifetime"),
        "{said}"
    );
    assert!(!said.contains("is no longer this deploy's"), "{said}");
}
