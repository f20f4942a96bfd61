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
