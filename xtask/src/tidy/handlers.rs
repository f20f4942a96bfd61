//! CloudFormationRole can create, update, read and delete every resource the service templates
//! declare, so that a first real deploy does not stop on `AccessDenied`: every permission that
//! CloudFormation's resource handlers list for those types (`handlers.*.permissions` in the
//! resource provider schemas, which cfn-lint ships) is allowed by one of the role's statements,
//! or is set aside below with the reason it is never used here.
//!
//! This proof is at the level of actions: the role's statements are also scoped to resources,
//! which the schemas do not name, and the boundary caps what the roles it makes may do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;
use yaml_rust2::Yaml;

use super::iam::{matches, statements};
use super::{load, one_or_many, repo, templates};
use crate::release::stack::Template;

/// Handler permissions the role does not hold, each with why no handler call here needs it. A
/// pattern that no longer matches anything missing is itself a failure: the table stays true.
const NEVER_NEEDED: &[(&str, &str)] = &[
    (
        "kms:*",
        "no table, pool, bucket or function here is encrypted with a customer-managed KMS key",
    ),
    ("kinesis:*", "no table streams to Kinesis"),
    ("firehose:*", "no log group delivers to Firehose"),
    (
        "s3:REST.PUT.OBJECT",
        "not an IAM action; no log group exports to S3",
    ),
    ("s3files:*", "no function mounts a file system"),
    ("elasticfilesystem:*", "no function mounts a file system"),
    ("s3tables:*", "no bucket has S3 Tables or a metadata table"),
    ("s3:*BucketMetadata*", "no bucket has a metadata table"),
    (
        "s3:DeleteBucketCors",
        "not an IAM action: S3 authorizes it as s3:PutBucketCORS, which the role holds",
    ),
    (
        "s3:DeleteBucketEncryption",
        "not an IAM action: S3 authorizes it as s3:PutEncryptionConfiguration, which the role holds",
    ),
    (
        "s3:DeleteBucketLifecycle",
        "not an IAM action: S3 authorizes it as s3:PutLifecycleConfiguration, which the role holds",
    ),
    (
        "s3:DeleteBucket?*",
        "no bucket has analytics, metrics, replication or website configuration to delete",
    ),
    (
        "s3:Put*Configuration",
        "no bucket has accelerate, analytics, intelligent-tiering, inventory, metrics, object-lock or replication configuration",
    ),
    (
        "s3:PutBucketAbac",
        "no bucket uses attribute-based access control",
    ),
    (
        "s3:PutBucketAcl",
        "ACLs are disabled on every bucket (BucketOwnerEnforced)",
    ),
    (
        "s3:PutObjectAcl",
        "ACLs are disabled on every bucket (BucketOwnerEnforced)",
    ),
    (
        "s3:PutBucketLogging",
        "no bucket logs to another (CloudTrail data events are the record)",
    ),
    ("s3:PutBucketNotification", "no bucket sends notifications"),
    (
        "s3:PutBucketObjectLockConfiguration",
        "no bucket uses object lock",
    ),
    ("s3:PutBucketWebsite", "no bucket is a website"),
    ("s3:PutBucketReplication", "no bucket replicates"),
    (
        "s3:PutObjectLockConfiguration",
        "no bucket uses object lock",
    ),
    (
        "s3:DeleteObject",
        "CloudFormation never empties a bucket; the handler deletes objects only for metadata tables",
    ),
    ("s3:GetObjectMetadata", "no table is imported from S3"),
    ("dynamodb:*Replica", "no table is a global table"),
    ("dynamodb:ImportTable", "no table is imported from S3"),
    ("dynamodb:DescribeImport", "no table is imported from S3"),
    (
        "dynamodb:*KinesisStreamingDestination",
        "no table streams to Kinesis; only the describe is held, for reads",
    ),
    (
        "dynamodb:PutResourcePolicy",
        "no table has a resource policy",
    ),
    (
        "dynamodb:DeleteResourcePolicy",
        "no table has a resource policy",
    ),
    (
        "dynamodb:*Item",
        "the handler writes items only for imports and replicas, which no table has",
    ),
    (
        "dynamodb:BatchWriteItem",
        "the handler writes items only for imports and replicas, which no table has",
    ),
    (
        "dynamodb:Query",
        "the handler reads items only for imports and replicas, which no table has",
    ),
    (
        "dynamodb:Scan",
        "the handler reads items only for imports and replicas, which no table has",
    ),
    (
        "iam:CreateServiceLinkedRole",
        "creating roles outside the service path is what the role must never do; the linked roles these services use exist once per account, made by an administrator",
    ),
    (
        "iam:AttachRolePolicy",
        "service roles carry inline policies only, so nothing is attached; attaching is refused by design",
    ),
    (
        "iam:DetachRolePolicy",
        "service roles carry inline policies only, so nothing is attached",
    ),
    (
        "iam:DeleteRolePermissionsBoundary",
        "the boundary is never lifted: an explicit Deny",
    ),
    (
        "iam:*GroupPolicy",
        "the templates attach policies to roles only",
    ),
    (
        "iam:*UserPolicy",
        "the templates attach policies to roles only",
    ),
];

/// The resource provider schemas cfn-lint ships, by type, for the region the tests model.
fn schemas() -> BTreeMap<String, PathBuf> {
    let lib = repo().join(".venv/lib");
    let python = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e}; run the tests with scripts/test", lib.display()))
        .map(|entry| entry.unwrap().path())
        .find(|path| path.join("site-packages/cfnlint").is_dir())
        .expect("cfn-lint is in .venv: run the tests with scripts/test, which installs it");
    let data = python.join("site-packages/cfnlint/data/schemas");
    let providers: BTreeMap<String, String> = serde_json::from_str(
        &std::fs::read_to_string(data.join("providers/us-west-2.json")).unwrap(),
    )
    .unwrap();
    providers
        .into_iter()
        .map(|(kind, hash)| (kind, data.join("resources").join(format!("{hash}.json"))))
        .collect()
}

/// What CloudFormation's handlers call for `kind`: create, update, delete and read (which
/// CloudFormation runs after every change).
fn handler_permissions(schemas: &BTreeMap<String, PathBuf>, kind: &str) -> BTreeSet<String> {
    let path = schemas
        .get(kind)
        .unwrap_or_else(|| panic!("cfn-lint has no schema for {kind}"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    ["create", "update", "delete", "read"]
        .iter()
        .flat_map(|handler| {
            schema["handlers"][handler]["permissions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_owned))
        })
        .collect()
}

/// The actions a role's inline policies allow (as written, wildcards and all).
fn allowed_actions(role: &Yaml) -> Vec<String> {
    one_or_many(&role["Properties"]["Policies"])
        .into_iter()
        .flat_map(|policy| statements(&policy["PolicyDocument"]))
        .filter(|(_, statement)| statement["Effect"].as_str() == Some("Allow"))
        .flat_map(|(_, statement)| {
            one_or_many(&statement["Action"])
                .into_iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Each permission a handler of a type in `kinds` needs that `allowed` does not grant, with the
/// type that needs it.
fn missing(kinds: &BTreeSet<String>, allowed: &[String]) -> Vec<(String, String)> {
    let schemas = schemas();
    kinds
        .iter()
        .flat_map(|kind| {
            handler_permissions(&schemas, kind)
                .into_iter()
                .filter(|permission| !allowed.iter().any(|a| matches(a, permission)))
                .map(move |permission| (kind.clone(), permission))
        })
        .collect()
}

/// Of `missing`, each that [`NEVER_NEEDED`] does not explain, as a sentence.
fn gaps(missing: &[(String, String)]) -> Vec<String> {
    missing
        .iter()
        .filter(|(_, permission)| !NEVER_NEEDED.iter().any(|(p, _)| matches(p, permission)))
        .map(|(kind, permission)| {
            format!("{kind}'s handlers need {permission}, which CloudFormationRole does not hold")
        })
        .collect()
}

/// Every resource type the service templates (and the nested API template) declare.
fn service_kinds() -> BTreeSet<String> {
    templates()
        .iter()
        .filter(|path| !(path.ends_with("infrastructure.yaml") || path.ends_with("pipeline.yaml")))
        .flat_map(|path| {
            let template: Template = load(path);
            template
                .resource_types()
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn cloudformation_role() -> Yaml {
    let infrastructure = load(&repo().join("cloudformation/infrastructure.yaml"));
    let (_, role) = infrastructure
        .resources("AWS::IAM::Role")
        .into_iter()
        .find(|(name, _)| *name == "CloudFormationRole")
        .expect("infrastructure.yaml makes CloudFormationRole");
    role.clone()
}

#[test]
fn cloudformation_role_holds_what_every_resource_handler_needs() {
    let kinds = service_kinds();
    assert!(
        kinds.len() > 15,
        "the service templates' types were found: {kinds:?}"
    );
    let missing = missing(&kinds, &allowed_actions(&cloudformation_role()));
    let found = gaps(&missing);
    assert!(found.is_empty(), "{}", found.join("\n"));
    // Every reason in the table is still needed by some handler.
    for (pattern, reason) in NEVER_NEEDED {
        assert!(
            missing.iter().any(|(_, p)| matches(pattern, p)),
            "{pattern} ({reason}) is set aside, but the role holds it or no handler needs it: drop it"
        );
    }
}

#[test]
fn the_handler_proof_finds_a_permission_the_role_lacks() {
    let kinds = BTreeSet::from([
        "AWS::Lambda::Function".to_owned(),
        "AWS::Logs::LogGroup".to_owned(),
    ]);
    let allowed = vec![
        "lambda:*".to_owned(),
        "iam:PassRole".to_owned(),
        "s3:GetObject*".to_owned(),
        "ec2:Describe*".to_owned(),
    ];
    let found = gaps(&missing(&kinds, &allowed));
    assert!(
        found
            .iter()
            .any(|f| f.contains("AWS::Logs::LogGroup's handlers need logs:CreateLogGroup")),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|f| f.contains("lambda:CreateFunction")),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|f| f.contains("kms:")),
        "set aside with its reason: {found:#?}"
    );
}
