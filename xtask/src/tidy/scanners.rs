//! The ecosystem's scanners agree: checkov finds no failed check in any template that is not
//! suppressed where it applies, with its reason (`checkov:skip=<id>:<reason>` in the resource's
//! Metadata), and cloudsplaining finds no privilege escalation, resource exposure or data
//! exfiltration in any IAM policy the templates hold. Both are pinned in
//! `scripts/requirements-scan.txt`, which `scripts/test` installs.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use yaml_rust2::Yaml;

use super::{load, repo, templates};
use crate::release::stack::Template;

fn tool(name: &str) -> std::path::PathBuf {
    let path = repo().join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{name} is not in .venv: run the tests with scripts/test, which installs it"
    );
    path
}

/// checkov's failed and skipped checks for `target` (a template or a directory of them).
///
/// checkov runs from the target's directory and is given a relative path: CKV_AWS_45 reads the
/// path it was given (its `__file__` marker among a function's environment variables) as one of
/// them, so an absolute path whose length happens to make a 40-character run looks like an AWS
/// secret key, and the verdict would depend on where the repository was cloned.
fn checkov(target: &Path) -> (Vec<String>, Vec<(String, String)>) {
    let (dir, relative) = if target.is_dir() {
        (target, Path::new("."))
    } else {
        (
            target.parent().expect("a file has a directory"),
            Path::new(target.file_name().expect("a file has a name")),
        )
    };
    let output = Command::new(tool("checkov"))
        .current_dir(dir)
        .arg(if target.is_dir() { "-d" } else { "-f" })
        .arg(relative)
        .args(["--framework", "cloudformation", "--quiet", "-o", "json"])
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .output()
        .expect("checkov runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no report ({e}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let results = &report["results"];
    let failed = results["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["file_path"]))
        .collect();
    let skipped = results["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                format!("{} {}", c["check_id"], c["resource"]),
                c["suppress_comment"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    (failed, skipped)
}

#[test]
fn checkov_finds_nothing_unsuppressed_and_every_suppression_says_why() {
    let (failed, skipped) = checkov(&repo().join("cloudformation"));
    assert!(failed.is_empty(), "checkov failed:\n{}", failed.join("\n"));
    for (check, reason) in &skipped {
        assert!(
            reason.split_whitespace().count() >= 5,
            "{check} is suppressed without a reason that says why: {reason:?}"
        );
    }
}

/// The CI failure this guards against: a clone whose path made `<path>/hardware` exactly 40
/// characters of a secret key's alphabet failed CKV_AWS_45 on the hardware function.
#[test]
fn checkov_gives_the_same_verdict_wherever_the_templates_are() {
    let base = std::env::temp_dir().join(format!("ck{}", std::process::id()));
    let length = base.to_str().unwrap().len() + "/cloudformation/hardware".len();
    assert!(length < 40, "{base:?} is too long to place the templates");
    let dir = base
        .join("x".repeat(40 - length - 1))
        .join("cloudformation");
    std::fs::create_dir_all(&dir).unwrap();
    for template in std::fs::read_dir(repo().join("cloudformation")).unwrap() {
        let template = template.unwrap().path();
        std::fs::copy(&template, dir.join(template.file_name().unwrap())).unwrap();
    }
    let (failed, _) = checkov(&dir);
    std::fs::remove_dir_all(&base).unwrap();
    assert!(failed.is_empty(), "checkov failed:\n{}", failed.join("\n"));
}

#[test]
fn checkov_fails_a_planted_violation() {
    let planted = std::env::temp_dir().join(format!("planted-{}.yaml", std::process::id()));
    std::fs::write(
        &planted,
        "Resources:\n  Admin:\n    Type: AWS::IAM::ManagedPolicy\n    Properties:\n      \
         PolicyDocument:\n        Version: \"2012-10-17\"\n        Statement:\n          \
         - Effect: Allow\n            Action: iam:PutRolePolicy\n            Resource: \"*\"\n",
    )
    .unwrap();
    let (failed, _) = checkov(&planted);
    std::fs::remove_file(&planted).unwrap();
    assert!(
        failed.iter().any(|f| f.contains("CKV_AWS_109")),
        "{failed:?}"
    );
}

/// A template's YAML as JSON, short-form tags read as their values (as `Template` reads them).
fn json_of(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::String(s) | Yaml::Real(s) => Value::from(s.as_str()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(items) => Value::from(items.iter().map(json_of).collect::<Vec<_>>()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), json_of(v))))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// cloudsplaining's findings of the kinds that must never appear, per policy of `templates`.
fn cloudsplaining(templates: &[Template]) -> Vec<String> {
    let documents: Vec<Value> = templates
        .iter()
        .flat_map(|template| {
            super::iam::documents(template)
                .into_iter()
                .map(move |(owner, document)| {
                    // Every branch of a conditional statement, as one policy may hold them all.
                    let statements: Vec<Value> = super::iam::statements(document)
                        .into_iter()
                        .map(|(_, statement)| json_of(statement))
                        .collect();
                    let document = json!({"Version": "2012-10-17", "Statement": statements});
                    json!({"owner": format!("{}: {owner}", template.name), "document": document})
                })
        })
        .collect();
    assert!(!documents.is_empty(), "the policies were found");
    let mut child = Command::new(tool("python"))
        .arg(repo().join("scripts/iam_verdicts.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&documents).unwrap())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "cloudsplaining failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut found = Vec::new();
    for verdict in verdicts {
        for kind in [
            "privilege_escalation",
            "resource_exposure",
            "data_exfiltration",
        ] {
            let findings = verdict[kind].as_array().cloned().unwrap_or_default();
            if !findings.is_empty() {
                found.push(format!("{}: {kind} {findings:?}", verdict["owner"]));
            }
        }
    }
    found
}

#[test]
fn cloudsplaining_finds_no_escalation_exposure_or_exfiltration() {
    let all: Vec<Template> = templates().iter().map(|path| load(path)).collect();
    let found = cloudsplaining(&all);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn cloudsplaining_finds_a_planted_violation_of_each_kind() {
    let planted = Template::parse(
        "planted.yaml",
        "Resources:\n  Bad:\n    Type: AWS::IAM::ManagedPolicy\n    Properties:\n      \
         PolicyDocument:\n        Statement:\n          - Effect: Allow\n            Action: \
         [iam:PassRole, lambda:CreateFunction, lambda:InvokeFunction, iam:PutRolePolicy, \
         s3:GetObject]\n            Resource: \"*\"\n"
            .to_owned(),
    )
    .unwrap();
    let found = cloudsplaining(&[planted]).join("\n");
    for kind in [
        "privilege_escalation",
        "resource_exposure",
        "data_exfiltration",
    ] {
        assert!(found.contains(kind), "{kind} not found in:\n{found}");
    }
}
