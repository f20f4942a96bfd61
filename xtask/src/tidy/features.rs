//! `cargo xtask` and `cargo test` build the crates they share once, not once each: every feature
//! the other members (with their dev-dependencies) turn on in a crate the xtask also uses, the
//! xtask turns on too, in its `cfg(all())` section. Otherwise a newcomer's first test run after
//! `cargo xtask deploy` rebuilds tokio and everything above it, the AWS SDK included.

use std::collections::{BTreeMap, BTreeSet};

use xshell::{Shell, cmd};

use super::repo;

/// Each package (`name vX.Y.Z`) of a `cargo tree` and the features it is built with, for the host.
fn features(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let sh = Shell::new().unwrap();
    let manifest = repo().join("Cargo.toml");
    let host = crate::release::compile::Tools::detect(&sh, repo())
        .unwrap()
        .host;
    let format = "{p}|{f}";
    let tree = cmd!(
        sh,
        "cargo tree --manifest-path {manifest} {args...} --target {host} --prefix none --format {format}"
    )
    .quiet()
    .read()
    .unwrap();
    parse(&tree)
}

fn parse(tree: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut packages = BTreeMap::new();
    for line in tree.lines().map(|l| l.trim_end_matches(" (*)")) {
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        // A path package is printed with its directory; the name and version say enough.
        let package = package.split(" (").next().unwrap_or(package).to_owned();
        let features = features.split(',').filter(|f| !f.is_empty());
        packages
            .entry(package)
            .or_insert_with(BTreeSet::new)
            .extend(features.map(str::to_owned));
    }
    packages
}

/// What the workspace's test build turns on beyond what the xtask's own build does.
fn missing(
    xtask: &BTreeMap<String, BTreeSet<String>>,
    workspace: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    xtask
        .iter()
        .filter_map(|(package, own)| {
            let extra: Vec<&str> = workspace
                .get(package)?
                .difference(own)
                .map(String::as_str)
                .collect();
            (!extra.is_empty()).then(|| format!("{package}: {}", extra.join(", ")))
        })
        .collect()
}

#[test]
fn the_xtask_builds_shared_crates_with_the_features_the_tests_use() {
    let xtask = features(&["--package", "xtask", "--edges", "normal,build"]);
    let workspace = features(&["--workspace", "--edges", "normal,build,dev"]);
    assert!(
        xtask.len() > 100,
        "cargo tree listed {} packages",
        xtask.len()
    );
    let missing = missing(&xtask, &workspace);
    assert!(
        missing.is_empty(),
        "add these features to the cfg(all()) dependencies in xtask/Cargo.toml, or `cargo test` \
         builds these crates (and all that depend on them) a second time:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn a_feature_only_the_tests_use_is_found() {
    let xtask = parse("tokio v1.0.0|macros,rt\nxtask v0.1.0 (/w/xtask)|\n");
    let workspace = parse("tokio v1.0.0|macros,rt,test-util\nhardware v0.1.0 (/w/h)|\n");
    assert_eq!(missing(&xtask, &workspace), ["tokio v1.0.0: test-util"]);
    assert!(missing(&workspace, &workspace).is_empty());
}
