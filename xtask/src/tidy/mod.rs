//! Checks that keep things in sync, run as ordinary tests: the linters pass, the templates take
//! what the release tool passes them, each role grants exactly what its service calls and reads
//! exactly the secrets its function is given, nothing writes IAM outside the service roles' path,
//! every probe goes to a route its service has, and the release tool keeps its layers (see
//! ARCHITECTURE.md).

mod advice;
mod features;
mod handlers;
mod iam;
mod isolation;
mod layers;
mod lint;
mod probes;
mod roles;
mod scanners;
mod secrets;
mod templates;
mod workflows;

use std::path::{Path, PathBuf};

use yaml_rust2::Yaml;

use crate::release::stack::Template;

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

/// A template, read the one way the release tool reads templates.
fn load(path: &Path) -> Template {
    Template::read(path).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A value that is one item or a list of them, as IAM statements and CloudFormation lists allow.
fn one_or_many(value: &Yaml) -> Vec<&Yaml> {
    match value {
        Yaml::Array(items) => items.iter().collect(),
        Yaml::BadValue => Vec::new(),
        single => vec![single],
    }
}

/// Every policy document of a template's roles and policies: inline role policies, and
/// `AWS::IAM::Policy` resources (under an `!If`, both branches), each with its owner's name.
pub fn policy_documents(template: &Template) -> Vec<(&str, &Yaml)> {
    let mut documents = Vec::new();
    for (role, resource) in template.resources("AWS::IAM::Role") {
        for policy in one_or_many(&resource["Properties"]["Policies"]) {
            documents.push((role, policy));
        }
    }
    for (name, resource) in template.resources("AWS::IAM::Policy") {
        documents.push((name, &resource["Properties"]));
    }
    documents
        .into_iter()
        .flat_map(|(name, policy)| match policy {
            Yaml::Array(branches) => branches
                .iter()
                .filter(|b| b.as_hash().is_some())
                .map(|b| (name, b))
                .collect::<Vec<_>>(),
            single => vec![(name, single)],
        })
        .collect()
}
