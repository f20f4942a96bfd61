//! The workflows keep their trust boundary: every third-party action is pinned by commit, a job
//! that can get AWS credentials (`id-token: write`) builds, installs and compiles nothing, and the
//! release tool such a job runs comes from a job that builds it and nothing else, checked against
//! the SHA-256 that job output before any credential exists. A fork's pull request never reaches
//! a credentialed job: no `pull_request_target`, and every credentialed job needs a job that
//! stops for a fork's head repository.

use yaml_rust2::{Yaml, YamlLoader};

use super::{one_or_many, repo};

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

/// A workflow's jobs, by name, in order.
fn jobs(name: &str, workflow: &str) -> Vec<(String, Yaml)> {
    let docs = YamlLoader::load_from_str(workflow).unwrap_or_else(|e| panic!("{name}: {e}"));
    docs[0]["jobs"]
        .as_hash()
        .into_iter()
        .flatten()
        .map(|(job, body)| (job.as_str().unwrap_or_default().to_owned(), body.clone()))
        .collect()
}

/// A job's steps.
fn steps(body: &Yaml) -> &[Yaml] {
    body["steps"].as_vec().map_or(&[], Vec::as_slice)
}

/// Whether a job can get AWS credentials.
fn credentialed(body: &Yaml) -> bool {
    body["permissions"]["id-token"].as_str() == Some("write")
}

/// The words of a step's `run`, as a shell would split its command names.
fn words(step: &Yaml) -> Vec<&str> {
    run(step)
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .collect()
}

/// Every way `workflow` breaks the two rules, one line each.
fn violations(name: &str, workflow: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (job, body) in &jobs(name, workflow) {
        let credentialed = credentialed(body);
        for step in steps(body) {
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
            if credentialed
                && let Some(tool) = words(step).into_iter().find(|w| BUILDERS.contains(w))
            {
                found.push(format!(
                    "{name}: job {job} has AWS credentials and runs {tool}"
                ));
            }
        }
    }
    found
}

/// The text of a step's `run`, or nothing.
fn run(step: &Yaml) -> &str {
    step["run"].as_str().unwrap_or_default()
}

/// Every way the release workflow lets a credentialed job run a binary that something else could
/// have shaped: the tool must be built alone (no cache, no package manager, no service packaged,
/// no credentials), hashed as the job's `sha256` output, and checked against that output by every
/// credentialed job before it gets credentials.
fn tool_violations(name: &str, workflow: &str) -> Vec<String> {
    let jobs = jobs(name, workflow);
    let builders: Vec<&str> = jobs
        .iter()
        .filter(|(_, body)| {
            steps(body)
                .iter()
                .any(|step| run(step).contains("cargo build") && run(step).contains("-p xtask"))
        })
        .map(|(job, _)| job.as_str())
        .collect();
    let [tool] = builders[..] else {
        return vec![format!(
            "{name}: one job must build the release tool (cargo build -p xtask), not {builders:?}"
        )];
    };
    let mut found = Vec::new();
    let (_, body) = jobs
        .iter()
        .find(|(job, _)| job == tool)
        .expect("found above");
    if credentialed(body) {
        found.push(format!(
            "{name}: job {tool} builds the release tool with credentials"
        ));
    }
    for step in steps(body) {
        let uses = step["uses"].as_str().unwrap_or_default();
        if uses.starts_with("actions/cache") {
            found.push(format!(
                "{name}: job {tool} builds the release tool from a restored cache"
            ));
        }
        let words = words(step);
        for other in ["pip", "npm", "package", "cargo-zigbuild"] {
            if words.contains(&other) {
                found.push(format!(
                    "{name}: job {tool} builds the release tool and runs {other}"
                ));
            }
        }
    }
    if !body["outputs"]["sha256"]
        .as_str()
        .is_some_and(|o| o.contains("steps."))
    {
        found.push(format!(
            "{name}: job {tool} does not output the release tool's sha256"
        ));
    }
    let packagers = jobs.iter().filter(|(_, body)| {
        steps(body)
            .iter()
            .any(|step| run(step).contains("xtask package"))
    });
    if packagers.clone().any(|(job, _)| job == tool) || packagers.count() == 0 {
        found.push(format!(
            "{name}: services must be packaged in a job of their own, not {tool}"
        ));
    }
    let expected = format!("needs.{tool}.outputs.sha256");
    for (job, body) in &jobs {
        if !credentialed(body) {
            continue;
        }
        let needs: Vec<&str> = one_or_many(&body["needs"])
            .into_iter()
            .filter_map(Yaml::as_str)
            .collect();
        if !needs.contains(&tool) {
            found.push(format!(
                "{name}: job {job} has credentials but does not need {tool}"
            ));
        }
        let steps = steps(body);
        let credentials = steps
            .iter()
            .position(|step| {
                step["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials"))
            })
            .unwrap_or(steps.len());
        // The expected hash reaches the step through its `env` or its `run`.
        let checked = steps[..credentials].iter().any(|step| {
            let env = step["env"].as_hash().into_iter().flatten();
            let given = env
                .filter_map(|(_, value)| value.as_str())
                .chain([run(step)])
                .any(|text| text.contains(&expected));
            given && run(step).contains("sha256sum")
        });
        if !checked {
            found.push(format!(
                "{name}: job {job} does not check the release tool against {expected} before it gets credentials"
            ));
        }
    }
    found
}

#[test]
fn the_release_tool_is_built_alone_and_checked_before_credentials() {
    let path = repo().join(".github/workflows/release.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let found = tool_violations("release.yml", &text);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_tool_check_finds_a_shared_build_and_an_unchecked_binary() {
    let bad = "
jobs:
  build:
    permissions: {contents: read}
    steps:
      - uses: actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830
      - run: cargo build --release --locked -p xtask
      - run: target/release/xtask package --all dev
  deploy:
    needs: [build]
    permissions: {id-token: write}
    steps:
      - uses: aws-actions/configure-aws-credentials@7474bc4690e29a8392af63c5b98e7449536d5c3a
      - run: sha256sum --check SHA256SUMS
";
    assert_eq!(
        tool_violations("bad.yml", bad),
        [
            "bad.yml: job build builds the release tool from a restored cache",
            "bad.yml: job build builds the release tool and runs package",
            "bad.yml: job build does not output the release tool's sha256",
            "bad.yml: services must be packaged in a job of their own, not build",
            "bad.yml: job deploy does not check the release tool against needs.build.outputs.sha256 before it gets credentials",
        ]
    );
}

/// Every way a fork's pull request could reach a job with credentials.
fn fork_violations(name: &str, workflow: &str) -> Vec<String> {
    let mut found = Vec::new();
    let docs = YamlLoader::load_from_str(workflow).unwrap_or_else(|e| panic!("{name}: {e}"));
    let on = &docs[0]["on"];
    if !on["pull_request_target"].is_badvalue() {
        found.push(format!(
            "{name}: pull_request_target runs with secrets for a fork's code; use pull_request"
        ));
    }
    if on["pull_request"].is_badvalue() {
        return found;
    }
    let jobs = jobs(name, workflow);
    let guards = |body: &Yaml| {
        body["if"].as_str().is_some_and(|c| {
            c.contains("github.event.pull_request.head.repo.full_name == github.repository")
        })
    };
    for (job, body) in &jobs {
        if !credentialed(body) || guards(body) {
            continue;
        }
        let guarded = one_or_many(&body["needs"])
            .into_iter()
            .filter_map(Yaml::as_str)
            .any(|need| jobs.iter().any(|(j, b)| j == need && guards(b)));
        if !guarded {
            found.push(format!(
                "{name}: job {job} has credentials, and nothing it needs stops a fork's pull request"
            ));
        }
    }
    found
}

#[test]
fn a_forks_pull_request_never_reaches_credentials() {
    let path = repo().join(".github/workflows/release.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let found = fork_violations("release.yml", &text);
    assert!(found.is_empty(), "{}", found.join("\n"));
    let planted = "
on:
  pull_request_target:
  pull_request:
jobs:
  plan:
    runs-on: ubuntu-latest
  deploy:
    needs: plan
    permissions: {id-token: write}
";
    assert_eq!(
        fork_violations("bad.yml", planted),
        [
            "bad.yml: pull_request_target runs with secrets for a fork's code; use pull_request",
            "bad.yml: job deploy has credentials, and nothing it needs stops a fork's pull request",
        ]
    );
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
