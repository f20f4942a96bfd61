//! `gc` on the emulator: what a stack runs and what its last releases need stay, the rest goes only
//! with `--delete` and past the age limit, a stack running a missing object guards its service, and
//! a deploy or publish racing a gc keeps its objects.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::deploy::{deployed, function_code, key, release, runtime, s3, stand_in};
use crate::support::{Fixture, stderr, stdout};

const BUCKET: &str = "biometrix-infrastructure-us-west-2";

fn gc(fixture: &Fixture, args: &[&str]) -> Output {
    let mut all = vec!["gc", "--local", "--json"];
    all.extend_from_slice(args);
    fixture.xtask(&all)
}

fn report(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_str(&stdout(output)).unwrap()
}

/// The verdict on `key` in a gc report.
fn verdict<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == key)
        .unwrap_or_else(|| panic!("{key} is not in the report: {report:#}"))
}

fn client(fixture: &Fixture) -> aws_sdk_s3::Client {
    s3(&fixture.emulator().expect("an emulator runs").0)
}

fn exists(fixture: &Fixture, key: &str) -> bool {
    let client = client(fixture);
    runtime()
        .block_on(client.head_object().bucket(BUCKET).key(key).send())
        .is_ok()
}

fn put(fixture: &Fixture, key: &str, body: &str) {
    crate::deploy::bucket_put(fixture, key, body.as_bytes());
}

/// Deletes `key` for good: every version of it (the bucket is versioned, as in AWS, so a plain
/// delete would only hide it behind a delete marker).
fn delete(fixture: &Fixture, key: &str) {
    let client = client(fixture);
    runtime().block_on(async {
        let listed = client
            .list_object_versions()
            .bucket(BUCKET)
            .prefix(key)
            .send()
            .await
            .unwrap();
        let versions = listed
            .versions()
            .iter()
            .filter_map(|v| Some((v.key()?, v.version_id()?)))
            .chain(
                listed
                    .delete_markers()
                    .iter()
                    .filter_map(|m| Some((m.key()?, m.version_id()?))),
            );
        for (found, version) in versions.filter(|(found, _)| *found == key) {
            client
                .delete_object()
                .bucket(BUCKET)
                .key(found)
                .version_id(version)
                .send()
                .await
                .unwrap();
        }
    });
}

fn keys_under(fixture: &Fixture, prefix: &str) -> Vec<String> {
    let client = client(fixture);
    let listed = runtime()
        .block_on(
            client
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(prefix)
                .send(),
        )
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[test]
fn gc_keeps_what_runs_and_the_last_releases_and_deletes_the_rest() {
    let fixture = stand_in();
    let mut keys = Vec::new();
    for name in ["one", "two", "three"] {
        release(&fixture, name);
        keys.push(key(&deployed(&fixture, &[]).0));
    }
    let orphan = format!("lambdas/hardware/apigateway-execute/{}.zip", "0".repeat(64));
    put(&fixture, &orphan, "never deployed");
    put(&fixture, "notes/readme.txt", "not gc's");

    // Listing deletes nothing.
    let listed = report(&gc(&fixture, &["--keep", "2", "--older-than", "0s"]));
    assert_eq!(verdict(&listed, &keys[2])["reason"], "runs in hardware-dev");
    let second = verdict(&listed, &keys[1]);
    assert_eq!(second["action"], "keep");
    assert!(
        second["reason"]
            .as_str()
            .unwrap()
            .ends_with("is one of its last 2"),
        "{second}"
    );
    for garbage in [&keys[0], &orphan] {
        let verdict = verdict(&listed, garbage);
        assert_eq!(verdict["action"], "delete", "{verdict}");
        assert!(exists(&fixture, garbage), "listing deleted {garbage}");
    }
    assert_eq!(listed["not_kept"]["objects"], 2, "{listed:#}");
    assert!(
        listed["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| !o["key"].as_str().unwrap().starts_with("notes/"))
    );

    // Everything is younger than the default 30 days: nothing goes.
    let young = report(&gc(&fixture, &["--keep", "2", "--delete"]));
    assert_eq!(young["deleted"]["objects"], 0, "{young:#}");
    assert_eq!(verdict(&young, &orphan)["reason"], "newer than 30d");

    let swept = report(&gc(
        &fixture,
        &["--keep", "2", "--older-than", "0s", "--delete"],
    ));
    assert_eq!(swept["deleted"]["objects"], 2, "{swept:#}");
    assert!(swept["deleted"]["bytes"].as_u64().unwrap() > 0);
    assert!(!exists(&fixture, &keys[0]) && !exists(&fixture, &orphan));
    assert!(exists(&fixture, &keys[1]) && exists(&fixture, &keys[2]));
    assert!(exists(&fixture, "notes/readme.txt"));
    assert!(
        keys_under(&fixture, "locks/").is_empty(),
        "gc left its lock"
    );

    // What the last releases need is what rollback uses.
    let rolled = fixture.xtask(&["rollback", "hardware", "dev", "--local"]);
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    assert!(function_code(&fixture).contains(&keys[1]));

    // The stack now runs keys[1]; with it gone, nothing of hardware is deleted, and gc says so.
    delete(&fixture, &keys[1]);
    put(&fixture, &orphan, "never deployed");
    let output = gc(&fixture, &["--keep", "0", "--older-than", "0s", "--delete"]);
    assert!(!output.status.success(), "{}", stdout(&output));
    let said = stderr(&output);
    assert!(
        said.contains(&format!(
            "error: hardware-dev runs s3://{BUCKET}/{}, which is missing from the bucket: nothing \
             of hardware was deleted",
            keys[1]
        )),
        "{said}"
    );
    assert!(exists(&fixture, &orphan) && exists(&fixture, &keys[2]));
}

#[test]
fn a_gc_whose_lock_was_taken_over_deletes_nothing_more() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    let orphan = format!("lambdas/hardware/apigateway-execute/{}.zip", "0".repeat(64));
    put(&fixture, &orphan, "never deployed");
    let log = fixture.root.join("gc.log");
    let resume = fixture.root.join("resume-sweep");
    let mut child = fixture
        .command(&["gc", "--local", "--older-than", "0s", "--delete"])
        .env("XTASK_TEST_PAUSE_AT", "sweep")
        .env("XTASK_TEST_RESUME", &resume)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    until("gc to pause before its sweep", || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("paused at sweep")
    });
    // Its lock is taken over meanwhile (as when it could not renew it in time).
    let thief = r#"{"holder": "thief@elsewhere (pid 2)", "stack": "the bucket's artifacts", "lifetime": 600}"#;
    put(&fixture, "locks/gc.json", thief);
    std::fs::write(&resume, "").unwrap();
    assert!(!child.wait().unwrap().success());
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains(
            "gc stopped before deleting more: what it deleted is gone, the rest is as it was"
        ) && said.contains("it is held by thief@elsewhere (pid 2)"),
        "{said}"
    );
    assert!(exists(&fixture, &orphan), "nothing was deleted");
}

#[test]
fn a_refused_or_interrupted_deploy_gives_its_lease_back() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    // Refused after its lease was written: a gc lock this tool did not write.
    put(&fixture, "locks/gc.json", "not a lock");
    release(&fixture, "refused");
    let output = crate::deploy::deploy(&fixture, &[]);
    assert!(
        stderr(&output).contains(
            "s3://biometrix-infrastructure-us-west-2/locks/gc.json is not a lock this tool wrote"
        ),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        keys_under(&fixture, "locks/artifacts/"),
        Vec::<String>::new()
    );
    delete(&fixture, "locks/gc.json");

    // Ctrl-C during the upload: said, with what is in the bucket, and the lease given back.
    release(&fixture, "interrupted upload");
    let (output, said) = crate::fencing::Paused::start(&fixture, "upload").interrupt();
    assert!(!output.status.success());
    let error = crate::fencing::last_error(&said);
    assert!(
        error.starts_with("error: interrupted while publishing: 0 of ")
            && error.contains(
                "nothing partial is left, and publishing again resumes, skipping what is there"
            ),
        "{said}"
    );
    assert_eq!(
        keys_under(&fixture, "locks/artifacts/"),
        Vec::<String>::new()
    );
    // A rerun resumes.
    let (after, _) = deployed(&fixture, &[]);
    assert!(function_code(&fixture).contains(&key(&after)));
}

/// Reads `child`'s stderr to the end in the background, so that it never blocks on a full pipe.
fn drain(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    })
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_deploy_or_publish_racing_gc_keeps_its_objects() {
    let fixture = stand_in();
    release(&fixture, "one");
    let first = key(&deployed(&fixture, &[]).0);

    // A deploy under way holds a lease: gc waits for it, then sees what the stack runs now.
    release(&fixture, "two");
    let mut deploy = crate::deploy::deploy_command(&fixture, &["--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deploy_said = drain(&mut deploy);
    until("the deploy's lease", || {
        !keys_under(&fixture, "locks/artifacts/").is_empty()
    });
    let swept = gc(&fixture, &["--keep", "0", "--older-than", "0s", "--delete"]);
    let deployed = deploy.wait_with_output().unwrap();
    let deploy_said = deploy_said.join().unwrap();
    assert!(deployed.status.success(), "{deploy_said}");
    let second = key(&serde_json::from_str::<Value>(&stdout(&deployed)).unwrap()["stacks"][0]);
    assert!(
        stderr(&swept).contains("waiting: a publish or deploy is using the bucket"),
        "{}",
        stderr(&swept)
    );
    let swept = report(&swept);
    assert_eq!(verdict(&swept, &second)["reason"], "runs in hardware-dev");
    assert_eq!(verdict(&swept, &first)["action"], "deleted");
    assert!(exists(&fixture, &second));
    assert!(function_code(&fixture).contains(&second));

    // A gc under way holds locks/gc.json: a publish waits for it, and its objects are there after.
    let lock = serde_json::json!({
        "holder": "gc@test (pid 1)",
        "stack": "the bucket's artifacts",
        "acquired": 0,
        "expires": u64::MAX / 2,
    });
    put(&fixture, "locks/gc.json", &lock.to_string());
    release(&fixture, "three");
    let mut publish = fixture
        .command(&["publish", "hardware", "dev", "--local", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let publish_said = drain(&mut publish);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        publish.try_wait().unwrap().is_none(),
        "publish went ahead while gc held the bucket"
    );
    assert!(
        keys_under(&fixture, "locks/artifacts/").is_empty(),
        "a waiting publish keeps no lease"
    );
    delete(&fixture, "locks/gc.json");
    let published = publish.wait_with_output().unwrap();
    let publish_said = publish_said.join().unwrap();
    assert!(published.status.success(), "{publish_said}");
    assert!(
        publish_said.contains("waiting: gc by gc@test (pid 1) is deleting"),
        "{publish_said}"
    );
    let report: Value = serde_json::from_str(&stdout(&published)).unwrap();
    for object in report["objects"].as_array().unwrap() {
        assert!(
            exists(&fixture, object["key"].as_str().unwrap()),
            "{object}"
        );
    }
    assert!(keys_under(&fixture, "locks/").is_empty());
}
