//! The benchmark stays runnable: one quick pass over the fixture.

use serde_json::Value;

use crate::support::{Fixture, stderr, stdout};

#[test]
fn bench_package_reports_every_figure() {
    let fixture = Fixture::copy("tiny");
    let output = fixture.xtask(&["bench", "package", "--runs", "1", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let figures: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(figures["noop_package_seconds"].as_array().unwrap().len(), 1);
    assert!(figures["noop_cargo_build_seconds"][0].as_f64().unwrap() > 0.0);
    assert!(figures["noop_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(figures["touched_service"], "tiny");
    assert!(figures["after_touch_seconds"].as_f64().unwrap() > 0.0);
    let zips = figures["zips"].as_array().unwrap();
    assert_eq!(zips.len(), 2, "{zips:?}");
    assert!(zips.iter().all(|zip| zip[1].as_u64().unwrap() > 0));
}

#[test]
fn bench_release_measures_the_loop_and_restores_the_changed_source() {
    let fixture = crate::deploy::stand_in();
    let main = fixture.root.join("services/users/src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    let output = fixture.xtask(&[
        "bench",
        "release",
        "users",
        "--runs",
        "2",
        "--changes",
        "2",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let figures: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(figures["changed_service"], "users");
    for name in [
        "noop_package_seconds",
        "noop_publish_seconds",
        "noop_deploy_seconds",
    ] {
        let runs = figures[name].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{name}");
        assert!(runs.iter().all(|run| run.as_f64().unwrap() > 0.0), "{name}");
    }
    // Nothing changed: a HEAD for the bucket and one per object, and no bytes.
    assert!(figures["noop_publish_requests"].as_u64().unwrap() > 1);
    assert_eq!(figures["noop_publish_bytes"], 0);
    // The change rebuilt the service and uploaded its new zip; the benchmark checked that both
    // deploys updated the stack.
    assert!(figures["change_bytes_sent"].as_u64().unwrap() > 0);
    let changes = figures["change_deploy_seconds"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.iter().all(|run| run.as_f64().unwrap() > 0.0));
    assert_eq!(figures["profile"], "fast", "dev's profile");
    assert!(figures["revert_deploy_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(std::fs::read_to_string(&main).unwrap(), source);
}

#[test]
fn bench_release_refuses_an_unknown_service() {
    let fixture = Fixture::copy("tiny");
    let output = fixture.xtask(&["bench", "release", "billing"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown service `billing`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bench_gateway_times_both_paths_of_the_deployed_zip() {
    let fixture = crate::deploy::stand_in();
    let output = fixture.xtask(&["bench", "gateway", "--invocations", "20"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("hardware-dev is not deployed on the emulator: deploy it first"),
        "{}",
        stderr(&output)
    );

    crate::deploy::deployed(&fixture, &[]);
    let output = fixture.xtask(&[
        "bench",
        "gateway",
        "--invocations",
        "20",
        "--cold-starts",
        "2",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let figures: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(figures["route"], "GET /v1/misc/time (200)");
    let runs = figures["runs"].as_array().unwrap();
    let hows: Vec<&str> = runs.iter().map(|r| r["how"].as_str().unwrap()).collect();
    assert_eq!(hows, ["native", "qemu"]);
    assert_eq!(
        runs[1]["architecture"], "arm64",
        "the deployed zip, under qemu"
    );
    for run in runs {
        for figure in [
            "direct_p50_ms",
            "direct_p99_ms",
            "gateway_p50_ms",
            "gateway_p99_ms",
        ] {
            assert!(run[figure].as_f64().unwrap() > 0.0, "{figure}: {run}");
        }
    }
    let cold = &figures["qemu_cold_start"];
    assert_eq!(cold["starts"], 2);
    assert!(cold["init_median_ms"].as_f64().unwrap() > 0.0);
    assert!(
        cold["zip"]
            .as_str()
            .unwrap()
            .starts_with("lambdas/hardware/apigateway-execute/")
    );
}
