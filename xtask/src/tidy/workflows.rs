//! The workflows keep their trust boundary: every third-party action is pinned by commit, and a
//! job that can get AWS credentials (`id-token: write`) builds, installs and compiles nothing.

use yaml_rust2::{Yaml, YamlLoader};

use super::repo;

/// What a credentialed job may not run: compilers, package managers and what installs them.
const BUILDERS: [&str; 7] = [
    "cargo",
    "rustc",
    "rustup",
    "pip",
    "npm",
    "cargo-zigbuild",
    "make",
];

/// Every way `workflow` breaks the two rules, one line each.
fn violations(name: &str, workflow: &str) -> Vec<String> {
    let docs = YamlLoader::load_from_str(workflow).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut found = Vec::new();
    for (job, body) in docs[0]["jobs"].as_hash().into_iter().flatten() {
        let job = job.as_str().unwrap_or_default();
        let credentialed = body["permissions"]["id-token"].as_str() == Some("write");
        for step in body["steps"].as_vec().into_iter().flatten() {
            if let Some(action) = step["uses"].as_str().filter(|a| !a.starts_with("./")) {
                let pinned = action.split_once('@').is_some_and(|(_, r)| {
                    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
                });
                if !pinned {
                    found.push(format!(
                        "{name}: job {job} uses {action}, not pinned by commit"
                    ));
                }
                if credentialed && action.starts_with("actions/cache") {
                    found.push(format!(
                        "{name}: job {job} has AWS credentials and restores a cache"
                    ));
                }
            }
            let run = match &step["run"] {
                Yaml::String(run) => run.as_str(),
                _ => continue,
            };
            let words = run.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'));
            if credentialed && let Some(tool) = words.clone().find(|w| BUILDERS.contains(w)) {
                found.push(format!(
                    "{name}: job {job} has AWS credentials and runs {tool}"
                ));
            }
        }
    }
    found
}

#[test]
fn actions_are_pinned_and_credentialed_jobs_build_nothing() {
    let mut found = Vec::new();
    for name in ["ci.yml", "release.yml"] {
        let path = repo().join(".github/workflows").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        found.extend(violations(name, &text));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_finds_an_unpinned_action_and_a_build_with_credentials() {
    let bad = "
jobs:
  deploy:
    permissions: {id-token: write}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830
      - run: cargo xtask deploy hardware dev
      - run: python3 -m pip install cfn-lint
";
    assert_eq!(
        violations("bad.yml", bad),
        [
            "bad.yml: job deploy uses actions/checkout@v4, not pinned by commit",
            "bad.yml: job deploy has AWS credentials and restores a cache",
            "bad.yml: job deploy has AWS credentials and runs cargo",
            "bad.yml: job deploy has AWS credentials and runs pip",
        ]
    );
}
