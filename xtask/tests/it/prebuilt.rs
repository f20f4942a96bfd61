//! `deploy --prebuilt`, as the release workflow's deploy job runs it: the zips `package` left, with
//! the workspace read from a `cargo metadata` file and no cargo on PATH (a trap stands in for it),
//! refused unless they were built from HEAD as committed and still hash to their keys.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::deploy::{deployed, function_code, release};
use crate::release::{commit, refused};
use crate::support::{Fixture, path_with_tools, stderr, stdout, xtask};

/// A directory whose `cargo`, `cargo-zigbuild` and `rustc` fail, leaving a mark when run.
fn trap(fixture: &Fixture) -> std::path::PathBuf {
    // Under target/, which git ignores: the tree stays clean.
    let dir = fixture.root.join("target/trap");
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["cargo", "cargo-zigbuild", "rustc"] {
        let path = dir.join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\ntouch {}/used\nexit 97\n", dir.display()),
        )
        .unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap();
    }
    dir
}

/// `cargo metadata --no-deps --format-version 1` of the fixture, as the build job saves it.
fn metadata(fixture: &Fixture) -> std::path::PathBuf {
    let output = Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(fixture.manifest())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let file = fixture.root.join("target/metadata.json");
    std::fs::write(&file, output.stdout).unwrap();
    file
}

/// `deploy hardware dev --local --prebuilt` with cargo replaced by the trap.
fn deploy_prebuilt(fixture: &Fixture, metadata: &Path, trap: &Path) -> Output {
    let path = std::env::join_paths(
        std::iter::once(trap.to_path_buf()).chain(std::env::split_paths(&path_with_tools())),
    )
    .unwrap();
    xtask()
        .arg("--cargo-metadata")
        .arg(metadata)
        .args([
            "deploy",
            "hardware",
            "dev",
            "--local",
            "--prebuilt",
            "--json",
            "--timeout",
            "120",
        ])
        .current_dir(&fixture.root)
        .env("PATH", path)
        .env_remove("CARGO_TARGET_DIR")
        .env("CI", "true")
        .output()
        .unwrap()
}

#[test]
fn prebuilt_zips_deploy_without_cargo_and_only_from_head() {
    let fixture = stand_in_committed();
    deployed(&fixture, &[]);
    release(&fixture, "built by the build job");
    commit(&fixture, "the release");
    let packaged = fixture.xtask(&["package", "hardware", "dev"]);
    assert!(packaged.status.success(), "{}", stderr(&packaged));
    let (metadata, trap) = (metadata(&fixture), trap(&fixture));

    let output = deploy_prebuilt(&fixture, &metadata, &trap);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !trap.join("used").exists(),
        "cargo or rustc was run:\n{}",
        stderr(&output)
    );
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let key = report["stacks"][0]["artifact_keys"]["ApigatewayExecuteArtifactKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.root.join("target/lambda/hardware/manifest.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        manifest.to_string().contains(&key),
        "the packaged key was deployed"
    );
    assert!(function_code(&fixture).contains(&key));

    // A zip changed since it was packaged is refused.
    let zip = fixture.root.join(
        manifest["functions"][0]["zip"]
            .as_str()
            .unwrap()
            .trim_start_matches('/'),
    );
    let zip = if zip.exists() {
        zip
    } else {
        Path::new(manifest["functions"][0]["zip"].as_str().unwrap()).to_path_buf()
    };
    let original = std::fs::read(&zip).unwrap();
    std::fs::write(&zip, b"not the zip").unwrap();
    refused(
        &deploy_prebuilt(&fixture, &metadata, &trap),
        "changed since it was packaged",
    );
    std::fs::write(&zip, original).unwrap();

    // A commit after the packaging: the zips are not HEAD's.
    release(&fixture, "never packaged");
    commit(&fixture, "after the build");
    refused(
        &deploy_prebuilt(&fixture, &metadata, &trap),
        "not from HEAD",
    );
    // Uncommitted changes: not what any commit says.
    std::fs::write(
        fixture.root.join("services/hardware/src/extra.rs"),
        "// dirty\n",
    )
    .unwrap();
    refused(
        &deploy_prebuilt(&fixture, &metadata, &trap),
        "has uncommitted changes",
    );
    assert!(!trap.join("used").exists(), "cargo or rustc was run");
}

fn stand_in_committed() -> Fixture {
    let fixture = crate::deploy::stand_in();
    commit(&fixture, "first");
    fixture
}
