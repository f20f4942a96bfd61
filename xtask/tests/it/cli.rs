//! Every bad input is refused with a message that says what to do. (`--help` is pinned in
//! snapshots.rs.)

use crate::support::{Fixture, assert_refused};

#[test]
fn unknown_names_are_refused_with_the_known_ones() {
    let fixture = Fixture::copy("tiny");
    let cases: [(&[&str], &str); 6] = [
        (
            &["package", "tiny", "prod"],
            "unknown environment `prod`: known environments are dev, production, qa (declare another \
             in [workspace.metadata.environments] in Cargo.toml)",
        ),
        (
            &["package", "huge", "dev"],
            "unknown service `huge`: known services are tiny",
        ),
        (
            &["package", "dev"],
            "name at least one service before the environment, like `tiny dev` \
          (known services are tiny), or pass --all",
        ),
        (
            &["package", "--all", "tiny", "dev"],
            "--all packages every service: give only the environment, like `--all dev`",
        ),
        (
            &["package", "--all", "staging"],
            "unknown environment `staging`: known environments are dev, production, qa (declare \
             another in [workspace.metadata.environments] in Cargo.toml)",
        ),
        (
            &["package", "tiny", "huge", "dev"],
            "unknown service `huge`: known services are tiny",
        ),
    ];
    for (args, message) in cases {
        assert_refused(&fixture.xtask(args), message);
    }
    assert!(
        !fixture.root.join("target/lambda").exists(),
        "nothing was written"
    );
}

#[test]
fn malformed_regions_and_bucket_names_are_refused_before_any_request() {
    let fixture = Fixture::copy("tiny");
    assert_refused(
        &fixture.xtask(&["status", "tiny", "dev", "--region", "mars"]),
        "`mars` is not an AWS region: regions are named like us-west-2 or eu-central-1",
    );
    assert_refused(
        &fixture.xtask(&["publish", "tiny", "dev", "--bucket", "My_Bucket"]),
        "`My_Bucket` is not a valid S3 bucket name: 3 to 63 lowercase letters, digits, dots and \
         hyphens, beginning and ending with a letter or digit",
    );
    // A timeout past what a clock can add once panicked; every --timeout is 1 to 86400 seconds.
    for (command, timeout) in [("deploy", "18446744073709551615"), ("rollback", "0")] {
        let output = fixture.xtask(&[command, "tiny", "dev", "--timeout", timeout]);
        assert!(!output.status.success());
        assert!(
            crate::support::stderr(&output).contains(&format!(
                "error: invalid value '{timeout}' for '--timeout <SECONDS>': {timeout} is not in \
                 1..=86400"
            )),
            "{}",
            crate::support::stderr(&output)
        );
    }
}

#[test]
fn a_service_named_twice_is_packaged_once() {
    let fixture = Fixture::copy("tiny");
    let plan = |args: &[&str]| {
        let output = fixture.xtask(args);
        assert!(
            output.status.success(),
            "{}",
            crate::support::stderr(&output)
        );
        crate::support::stdout(&output)
    };
    assert_eq!(
        plan(&["package", "tiny", "tiny", "dev", "--dry-run", "--json"]),
        plan(&["package", "tiny", "dev", "--dry-run", "--json"])
    );
}

#[test]
fn a_missing_cross_compiler_says_how_to_install_it() {
    let fixture = Fixture::copy("tiny");
    let output = fixture
        .command(&["package", "tiny", "dev"])
        .env(
            "PATH",
            std::env::join_paths(
                ["/usr/bin", "/bin"]
                    .into_iter()
                    .chain(cargo_dir().as_deref()),
            )
            .unwrap(),
        )
        .output()
        .unwrap();
    assert_refused(
        &output,
        "cargo-zigbuild is missing, and it is needed to cross-compile for aarch64-unknown-linux-gnu: \
         run `pip install cargo-zigbuild` (it brings zig), or pass --install-tools to install it into .venv",
    );
}

#[test]
fn malformed_metadata_names_the_manifest() {
    let fixture = Fixture::copy("tiny");
    let manifest = fixture.root.join("services/tiny/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "bin = \"tiny\"\narchitecture",
        "bin = \"nope\"\narchitecture",
    );
    std::fs::write(&manifest, text).unwrap();
    let output = fixture.xtask(&["package", "tiny", "dev", "--dry-run"]);
    assert_refused(
        &output,
        &format!(
            "{}: function `amd` names bin `nope`, which this crate does not have",
            manifest.display()
        ),
    );
}

/// Where `cargo` and `rustc` live, so a test can drop everything else from PATH.
fn cargo_dir() -> Option<String> {
    let cargo = std::env::var("CARGO").ok()?;
    Some(
        std::path::Path::new(&cargo)
            .parent()?
            .to_string_lossy()
            .into_owned(),
    )
}

#[test]
fn a_dead_emulator_is_said_once_and_stop_stops_what_local_left_running() {
    let fixture = Fixture::copy("tiny");
    let status = || fixture.xtask(&["status", "tiny", "dev", "--local"]);
    let first = status();
    let (_, pid) = fixture
        .emulator()
        .expect("status --local started the emulator");
    assert!(
        !crate::support::stderr(&first).contains("is gone"),
        "{}",
        crate::support::stderr(&first)
    );
    // The emulator dies (a reboot, a kill): the next command says what that lost, once.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = crate::support::stderr(&status());
    assert!(
        after.contains(&format!(
            "warning: the local AWS emulator this workspace used (pid {pid}) is gone, and with it \
             every local stack, the artifact bucket and the release histories"
        )),
        "{after}"
    );
    assert!(!crate::support::stderr(&status()).contains("is gone"));

    let stopped = fixture.xtask(&["stop"]);
    assert!(stopped.status.success());
    let said = crate::support::stdout(&stopped);
    assert!(
        said.starts_with("stopped the local AWS emulator at http://127.0.0.1:"),
        "{said}"
    );
    assert!(fixture.emulator().is_none(), "its record is gone too");
    let again = crate::support::stdout(&fixture.xtask(&["stop"]));
    assert!(again.ends_with("nothing to stop\n"), "{again}");
}
