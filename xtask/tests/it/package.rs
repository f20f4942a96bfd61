//! `package` end to end on the fixture workspace: real cross-compiles, real zips, real manifests.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{Fixture, assert_refused, stderr, stdout};

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn package(fixture: &Fixture) -> Value {
    let output = fixture.xtask(&["package", "--all", "dev", "--json"]);
    assert!(
        output.status.success(),
        "package failed:\n{}",
        stderr(&output)
    );
    serde_json::from_str(&stdout(&output)).unwrap()
}

fn function<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == name)
        .unwrap()
}

fn unzip_bootstrap(zip: &[u8]) -> (u32, Vec<u8>) {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    assert_eq!(archive.len(), 1, "one entry");
    let mut entry = archive.by_index(0).unwrap();
    assert_eq!(entry.name().unwrap(), "bootstrap");
    let mode = entry.unix_mode().unwrap();
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).unwrap();
    (mode, bytes)
}

#[test]
fn packaging_is_reproducible_and_content_addressed() {
    let (first, second) = (Fixture::copy("tiny"), Fixture::copy("tiny"));
    let (a, b) = (package(&first), package(&second));

    for (name, architecture, target) in [
        ("arm", "arm64", "aarch64-unknown-linux-gnu"),
        ("amd", "x86_64", "x86_64-unknown-linux-gnu"),
    ] {
        let artifact = function(&a, name);
        let sha = artifact["sha256"].as_str().unwrap();
        assert_eq!(
            sha,
            function(&b, name)["sha256"].as_str().unwrap(),
            "{name}: two checkouts in different directories build the same bytes"
        );
        assert_eq!(artifact["service"], "tiny");
        assert_eq!(artifact["architecture"], architecture);
        assert_eq!(artifact["target"], target);
        assert_eq!(artifact["key"], format!("lambdas/tiny/{name}/{sha}.zip"));
        let zip_path = PathBuf::from(artifact["zip"].as_str().unwrap());
        assert_eq!(
            zip_path,
            first
                .root
                .join(format!("target/lambda/tiny/{name}/{sha}.zip"))
        );
        let zip = std::fs::read(&zip_path).unwrap();
        assert_eq!(sha256(&zip), sha, "the file is named by its own hash");
        assert_eq!(artifact["size"], zip.len());
        let (mode, binary) = unzip_bootstrap(&zip);
        assert_eq!(mode, 0o100_755);
        assert_eq!(artifact["binary_sha256"], sha256(&binary));
        assert_eq!(
            PathBuf::from(artifact["binary"].as_str().unwrap()),
            first.root.join(format!("target/{target}/fast/tiny")),
            "dev builds with the fast profile"
        );
    }

    let source = &a["source"];
    assert!(
        source["toolchain"].as_str().unwrap().starts_with("rustc "),
        "{source}"
    );
    assert_eq!(
        source["dirty"], true,
        "a copy outside git cannot prove it is clean"
    );
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(first.root.join("target/lambda/tiny/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest, a, "the manifest is the final plan");
}

#[test]
fn the_x86_64_bootstrap_runs() {
    let fixture = Fixture::copy("tiny");
    let plan = package(&fixture);
    let zip = std::fs::read(function(&plan, "amd")["zip"].as_str().unwrap()).unwrap();
    let (_, binary) = unzip_bootstrap(&zip);
    let path = fixture.root.join("bootstrap");
    std::fs::write(&path, binary).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = std::process::Command::new(&path)
        .arg("hi")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi from x86_64\n");
}

#[test]
fn a_second_run_reuses_what_did_not_change() {
    let fixture = Fixture::copy("tiny");
    let first = package(&fixture);
    let output = fixture.xtask(&["package", "tiny", "dev", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let second: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(first["functions"], second["functions"]);
    let log = stderr(&output);
    assert!(
        log.contains("unchanged tiny/arm") && log.contains("unchanged tiny/amd"),
        "{log}"
    );

    // A changed source gives a new artifact next to the old one.
    let main = fixture.root.join("services/tiny/src/main.rs");
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("hello", "howdy");
    std::fs::write(&main, text).unwrap();
    let third = package(&fixture);
    assert_ne!(
        function(&third, "arm")["sha256"],
        function(&first, "arm")["sha256"]
    );
    assert!(PathBuf::from(function(&first, "arm")["zip"].as_str().unwrap()).is_file());
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let fixture = Fixture::copy("tiny");
    let output = fixture.xtask(&["package", "--all", "qa", "--dry-run", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(plan["environment"], "qa");
    assert_eq!(plan["profile"], "release");
    assert_eq!(plan["source"], Value::Null);
    let builds = plan["builds"].as_array().unwrap();
    assert_eq!(
        builds.len(),
        2,
        "one cargo invocation per target: {builds:?}"
    );
    assert_eq!(builds[0]["target"], "aarch64-unknown-linux-gnu");
    assert_eq!(builds[0]["builder"], "zigbuild");
    assert_eq!(builds[0]["bins"], serde_json::json!(["tiny"]));
    let command: Vec<&str> = builds[0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(command.ends_with(&[
        "--profile",
        "release",
        "--manifest-path",
        fixture.manifest().to_str().unwrap(),
        "--bin",
        "tiny"
    ]));
    assert!(
        command
            .windows(2)
            .any(|w| w == ["--target", "aarch64-unknown-linux-gnu.2.34"]),
        "{command:?}"
    );
    for artifact in plan["functions"].as_array().unwrap() {
        for unknown in ["sha256", "size", "key", "zip"] {
            assert_eq!(
                artifact[unknown],
                Value::Null,
                "{unknown} is known only after the build"
            );
        }
    }
    assert!(
        !fixture.root.join("target").exists(),
        "a dry run builds nothing"
    );

    let human = fixture.xtask(&["package", "tiny", "dev", "--dry-run"]);
    let text = stdout(&human);
    assert!(
        text.starts_with("plan for dev (fast profile):\n  build: "),
        "{text}"
    );
    assert!(
        text.contains("tiny/arm (arm64)") && text.contains("tiny/amd (x86_64)"),
        "{text}"
    );
}

#[test]
fn dev_builds_the_fast_profile_and_qa_and_production_the_release_one() {
    let fixture = Fixture::copy("tiny");
    let plan = |args: &[&str]| -> Value {
        let output =
            fixture.xtask(&[&["package", "--all"], args, &["--dry-run", "--json"]].concat());
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_str(&stdout(&output)).unwrap()
    };
    for (args, profile) in [
        (&["dev"][..], "fast"),
        (&["qa"], "release"),
        (&["production"], "release"),
        (&["dev", "--profile", "release"], "release"),
        (&["qa", "--profile", "fast"], "fast"),
    ] {
        let plan = plan(args);
        assert_eq!(plan["profile"], profile, "{args:?}");
        for build in plan["builds"].as_array().unwrap() {
            let command: Vec<&str> = build["command"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert!(
                command.windows(2).any(|w| w == ["--profile", profile]),
                "{args:?}: {command:?}"
            );
        }
        for artifact in plan["functions"].as_array().unwrap() {
            let binary = artifact["binary"].as_str().unwrap();
            assert!(
                binary.contains(&format!("/{profile}/")),
                "{args:?}: {binary}"
            );
        }
    }
    let output = fixture.xtask(&["package", "tiny", "dev", "--profile", "small"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(
            "unknown profile `small`: the profiles are release (qa and production) and fast (dev)"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_failed_build_packages_nothing() {
    let fixture = Fixture::copy("tiny");
    let main = fixture.root.join("services/tiny/src/main.rs");
    std::fs::write(&main, "fn main() { this does not compile }\n").unwrap();
    let output = fixture.xtask(&["package", "tiny", "dev"]);
    assert_refused(
        &output,
        "the build failed (the compiler's output is above); nothing was packaged",
    );
    assert!(
        stderr(&output).contains("error"),
        "the compiler's own error is shown"
    );
    assert!(!fixture.root.join("target/lambda").exists());
}
