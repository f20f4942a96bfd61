//! Secrets reach functions as ARNs, never as values: no function's environment resolves a secret
//! (`{{resolve:secretsmanager:…}}` would put its value where `GetFunctionConfiguration` shows it),
//! and each role may read exactly the secrets its function's environment names.

use std::collections::BTreeSet;

use yaml_rust2::Yaml;

use super::{load, one_or_many, policy_documents, templates};
use crate::release::stack::Template;

/// The one action a function needs for a secret.
pub(super) const READ_SECRET: &str = "secretsmanager:GetSecretValue";

/// Every text inside `value`, however deep.
fn texts(value: &Yaml) -> Vec<&str> {
    match value {
        Yaml::String(text) => vec![text],
        Yaml::Array(items) => items.iter().flat_map(texts).collect(),
        Yaml::Hash(map) => map
            .iter()
            .flat_map(|(k, v)| [texts(k), texts(v)].concat())
            .collect(),
        _ => Vec::new(),
    }
}

/// What is wrong with how `template` hands its functions their secrets.
fn secret_problems(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for (function, resource) in template.resources("AWS::Lambda::Function") {
        let variables = &resource["Properties"]["Environment"]["Variables"];
        if texts(variables)
            .iter()
            .any(|text| text.contains("{{resolve:secretsmanager"))
        {
            problems.push(format!(
                "{function} resolves a secret into its environment; pass its ARN instead"
            ));
        }
        for (name, value) in variables.as_hash().into_iter().flatten() {
            if name.as_str().is_some_and(|n| n.ends_with("_SECRET_ARN")) {
                // `!If [Condition, !Ref Parameter, !Ref AWS::NoValue]`, or a plain `!Ref`.
                let value = match value {
                    Yaml::Array(branches) => branches.get(1).unwrap_or(value),
                    single => single,
                };
                named.extend(value.as_str().map(str::to_owned));
            }
        }
    }
    let mut granted = BTreeSet::new();
    for (owner, policy) in policy_documents(template) {
        for statement in one_or_many(&policy["PolicyDocument"]["Statement"]) {
            let actions: Vec<&str> = one_or_many(&statement["Action"])
                .into_iter()
                .filter_map(Yaml::as_str)
                .filter(|action| action.starts_with("secretsmanager:"))
                .collect();
            if actions.is_empty() {
                continue;
            }
            if actions != [READ_SECRET] {
                problems.push(format!(
                    "{owner} grants {}; a function needs only {READ_SECRET}",
                    actions.join(", ")
                ));
            }
            for resource in one_or_many(&statement["Resource"]) {
                match resource.as_str() {
                    Some(text) if named.contains(text) => {
                        granted.insert(text.to_owned());
                    }
                    other => problems.push(format!(
                        "{owner} reads the secret {}, which no function's environment names",
                        other.unwrap_or("(not a !Ref)")
                    )),
                }
            }
        }
    }
    for missing in named.difference(&granted) {
        problems.push(format!(
            "the function is given the secret {missing}, which its role may not read"
        ));
    }
    problems
}

#[test]
fn functions_get_secret_arns_and_roles_read_exactly_those() {
    let mut found = Vec::new();
    for path in templates() {
        for problem in secret_problems(&load(&path)) {
            found.push(format!("{}: {problem}", path.display()));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_secret_check_catches_values_and_stray_grants() {
    let template = Template::parse(
        "t",
        "Resources:\n  F:\n    Type: AWS::Lambda::Function\n    Properties:\n      Environment:\n        \
         Variables:\n          DATABASE_URL: !Sub \"{{resolve:secretsmanager:${DatabaseSecretArn}:SecretString}}\"\n          \
         TOKEN_SECRET_ARN: !If [HasTokens, !Ref TokenSecretArn, !Ref AWS::NoValue]\n  \
         P:\n    Type: AWS::IAM::Policy\n    Properties:\n      PolicyDocument:\n        Statement:\n          \
         - Effect: Allow\n            Action: [secretsmanager:GetSecretValue, secretsmanager:ListSecrets]\n            \
         Resource: !Ref OtherSecretArn\n"
            .to_owned(),
    )
    .unwrap();
    assert_eq!(
        secret_problems(&template),
        [
            "F resolves a secret into its environment; pass its ARN instead",
            "P grants secretsmanager:GetSecretValue, secretsmanager:ListSecrets; a function needs only secretsmanager:GetSecretValue",
            "P reads the secret OtherSecretArn, which no function's environment names",
            "the function is given the secret TokenSecretArn, which its role may not read",
        ]
    );
}
