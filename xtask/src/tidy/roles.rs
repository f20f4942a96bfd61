//! Each role grants what its service's code calls and nothing more, and never a wildcard on a data
//! store.

use std::path::Path;

use yaml_rust2::Yaml;

use super::{load, one_or_many, policy_documents, repo, templates};
use crate::release::stack::Template;
use crate::workspace::service_template;

/// Services whose data an over-broad grant would expose.
const DATA_STORES: [&str; 4] = ["dynamodb", "s3", "cognito-idp", "cognito-identity"];

/// EC2 actions that take no resource-level permissions, so `"*"` is the only resource they accept,
/// with why each is granted.
const RESOURCE_WILDCARD_EXCEPTIONS: [(&str, &str); 4] = [
    (
        "ec2:DescribeNetworkInterfaces",
        "Lambda lists a function's network interfaces in its VPC; EC2's Describe calls are resource-less",
    ),
    (
        "ec2:DescribeSecurityGroups",
        "CloudFormation checks a function's VpcConfig (infrastructure.yaml's CloudFormationRole)",
    ),
    (
        "ec2:DescribeSubnets",
        "CloudFormation checks a function's VpcConfig (infrastructure.yaml's CloudFormationRole)",
    ),
    (
        "ec2:DescribeVpcs",
        "CloudFormation checks a function's VpcConfig (infrastructure.yaml's CloudFormationRole)",
    ),
];

/// Every `Allow` that names a wildcard action on a data store or EC2, or grants an EC2 action on
/// every resource (`"*"`) where EC2 can scope it.
fn wildcard_grants(template: &Template) -> Vec<String> {
    let mut found = Vec::new();
    for (owner, policy) in policy_documents(template) {
        for statement in one_or_many(&policy["PolicyDocument"]["Statement"]) {
            if statement["Effect"].as_str() != Some("Allow") {
                continue;
            }
            if !statement["NotAction"].is_badvalue() {
                found.push(format!(
                    "{owner} allows NotAction, which grants everything else"
                ));
            }
            let every_resource = one_or_many(&statement["Resource"])
                .iter()
                .any(|r| r.as_str() == Some("*"));
            for action in one_or_many(&statement["Action"])
                .into_iter()
                .filter_map(Yaml::as_str)
            {
                let (service, name) = action.split_once(':').unwrap_or(("*", action));
                let watched = service == "*" || service == "ec2" || DATA_STORES.contains(&service);
                if watched && (name.contains('*') || service.contains('*')) {
                    found.push(format!("{owner} allows {action}"));
                } else if service == "ec2"
                    && every_resource
                    && !RESOURCE_WILDCARD_EXCEPTIONS
                        .iter()
                        .any(|(a, _)| *a == action)
                {
                    found.push(format!("{owner} allows {action} on every resource"));
                }
            }
        }
    }
    found
}

#[test]
fn no_role_grants_a_wildcard_on_a_data_store_or_ec2() {
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
    let template = Template::parse(
        "t",
        "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      Policies:\n        - PolicyDocument:\n            \
         Statement:\n              - Effect: Allow\n                Action: [dynamodb:Get*, logs:*, s3:GetObject]\n              \
         - Effect: Allow\n                Action: \"*\"\n              - Effect: Deny\n                Action: s3:*\n  \
         P:\n    Type: AWS::IAM::Policy\n    Properties:\n      PolicyDocument:\n        Statement:\n          \
         - Effect: Allow\n            Action: [ec2:*NetworkInterface*]\n            Resource: x\n          \
         - Effect: Allow\n            Action: [ec2:CreateNetworkInterface, ec2:DescribeNetworkInterfaces]\n            \
         Resource: \"*\"\n"
            .to_owned(),
    )
    .unwrap();
    assert_eq!(
        wildcard_grants(&template),
        [
            "R allows dynamodb:Get*",
            "R allows *",
            "P allows ec2:*NetworkInterface*",
            "P allows ec2:CreateNetworkInterface on every resource",
        ]
    );
    assert!(
        RESOURCE_WILDCARD_EXCEPTIONS
            .iter()
            .all(|(_, why)| !why.is_empty())
    );
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
const SDKS: [(&str, &str, &str); 5] = [
    ("aws-sdk-dynamodb", "dynamodb", "dynamodb"),
    ("aws-sdk-s3", "s3", "s3"),
    ("aws-sdk-cognitoidentityprovider", "cognito", "cognito-idp"),
    ("aws-sdk-lambda", "lambda", "lambda"),
    ("aws-sdk-codedeploy", "codedeploy", "codedeploy"),
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
        ("lambda", "Invoke") => "InvokeFunction".to_owned(),
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

/// The actions a template's roles grant (only `owner`'s, when given), platform actions left out.
fn granted_actions(template: &Template, owner: Option<&str>) -> std::collections::BTreeSet<String> {
    let mut granted = std::collections::BTreeSet::new();
    for (name, policy) in policy_documents(template) {
        if owner.is_some_and(|owner| owner != name) {
            continue;
        }
        for statement in one_or_many(&policy["PolicyDocument"]["Statement"]) {
            if statement["Effect"].as_str() == Some("Allow") {
                granted.extend(
                    one_or_many(&statement["Action"])
                        .into_iter()
                        .filter_map(Yaml::as_str)
                        .filter(|a| !PLATFORM_ACTIONS.contains(a))
                        // Granted for the function's secrets, and checked against them in
                        // tidy/secrets.rs: the kit reads them, not the service's own code.
                        .filter(|a| *a != super::secrets::READ_SECRET)
                        .map(str::to_owned),
                );
            }
        }
    }
    granted
}

pub(super) fn rust_sources(dir: &Path) -> String {
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

/// Each SDK's operations (snake_case), with its client field name and IAM prefix.
fn sdk_operations() -> Vec<(&'static str, &'static str, Vec<String>)> {
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
    operations
}

#[test]
fn each_role_grants_exactly_the_actions_its_code_calls() {
    let operations = sdk_operations();
    let workspace = crate::local::metadata::workspace(Some(&repo().join("Cargo.toml")))
        .expect("the workspace loads");
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
        let template = load(
            &repo()
                .join("cloudformation")
                .join(service_template(&service.name)),
        );
        let granted = granted_actions(&template, None);
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

    let template = Template::parse(
        "t",
        "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      Policies:\n        \
         - PolicyDocument:\n            Statement:\n              - Effect: Allow\n                \
         Action: [logs:PutLogEvents, dynamodb:Query]\n        - !If\n          - C\n          \
         - PolicyDocument:\n              Statement:\n                - Effect: Allow\n                  \
         Action: s3:PutObject\n          - !Ref AWS::NoValue\n"
            .to_owned(),
    )
    .unwrap();
    assert_eq!(
        granted_actions(&template, None)
            .into_iter()
            .collect::<Vec<_>>(),
        ["dynamodb:Query", "s3:PutObject"]
    );
}

/// The pre-traffic gate's role (in the shared `apigateway.yaml`) grants what `gate/` calls. The
/// CodeDeploy role beside it is used by CodeDeploy, not by code here; its grants are the managed
/// policy's, narrowed (see its comment in the template).
#[test]
fn the_gate_role_grants_exactly_what_the_gate_calls() {
    let operations = sdk_operations();
    let called = called_actions(&rust_sources(&repo().join("gate/src")), &operations)
        .expect("the gate's clients are named by SDKS");
    let template = load(&repo().join("cloudformation/apigateway.yaml"));
    let granted = granted_actions(&template, Some("GateRole"));
    assert_eq!(
        called.iter().collect::<Vec<_>>(),
        [
            "codedeploy:PutLifecycleEventHookExecutionStatus",
            "lambda:InvokeFunction"
        ]
    );
    assert_eq!(granted, called, "GateRole in apigateway.yaml");
}
