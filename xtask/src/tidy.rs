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
