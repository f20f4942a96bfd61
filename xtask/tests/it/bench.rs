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
fn bench_deploy_measures_a_deploy_with_nothing_to_do() {
    let fixture = crate::deploy::stand_in();
    let output = fixture.xtask(&["bench", "deploy", "hardware", "--runs", "2", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let figures: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(figures["service"], "hardware");
    assert_eq!(figures["first_outcome"], "created");
    let runs = figures["noop_deploy_seconds"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|run| run.as_f64().unwrap() > 0.0));
    assert!(figures["noop_max_seconds"].as_f64() >= figures["noop_median_seconds"].as_f64());
}
