//! One environment's pipeline can change nothing of another's: the deployer policy
//! `cloudformation/pipeline.yaml` makes for an environment, evaluated as IAM evaluates it, allows
//! no change to another environment's stacks (nested ones included), release history, deploy lock
//! or leases, and it does allow what the release tool does to its own.
//!
//! The policy is rendered for each environment as CloudFormation would (`${Environment}` and the
//! other parameters substituted, `!If [Promotes, ...]` statements kept only when it promotes).
//! Actions match with their wildcards, case insensitive; resources with theirs, case sensitive. A
//! statement with a condition is taken to allow whenever its action and resource match: that can
//! only make the proof stricter, since conditions only ever narrow an Allow.

use std::collections::BTreeMap;

use yaml_rust2::Yaml;

use super::iam::{covers, matches, statements};
use super::{load, one_or_many, repo};
use crate::release::stack::Template;

const SERVICES: [&str; 4] = ["hardware", "preprocessing", "users", "alerts"];
const BUCKET: &str = "biometrix-infrastructure-us-west-2";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-west-2";

/// Environments whose names make the traps: one the suffix or prefix of another.
const ENVIRONMENTS: [&str; 7] = [
    "dev",
    "qa",
    "production",
    "dev-alice",
    "alice",
    "pr-42",
    "pr-4",
];

/// One statement of a rendered policy.
#[derive(Debug)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
}

impl Statement {
    fn applies(&self, action: &str, arn: &str) -> bool {
        self.actions.iter().any(|a| matches(a, action))
            && self.resources.iter().any(|r| covers(r, arn))
    }
}

/// A policy, rendered: whether it lets its holder do `action` on `arn`.
struct Policy(Vec<Statement>);

impl Policy {
    fn allows(&self, action: &str, arn: &str) -> bool {
        self.0.iter().any(|s| s.allow && s.applies(action, arn))
            && !self.0.iter().any(|s| !s.allow && s.applies(action, arn))
    }
}

/// `text` with `${Name}` replaced by the parameters' values, or the value of a `!Ref Name`.
fn render(text: &str, parameters: &BTreeMap<&str, String>) -> String {
    if let Some(value) = parameters.get(text) {
        return value.clone();
    }
    let mut rendered = text.to_owned();
    for (name, value) in parameters {
        rendered = rendered.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !rendered.contains("${"),
        "{text} names a parameter this proof does not know"
    );
    rendered
}

/// What a pipeline stack is made for, beyond its environment's name.
#[derive(Debug, Clone, Copy, Default)]
struct Made<'a> {
    promotes_from: Option<&'a str>,
    secrets_from: Option<&'a str>,
    deletes_stores: bool,
}

/// The deployer policy a template makes for `environment`, promoting from `promotes_from`.
fn deployer(template: &Template, environment: &str, promotes_from: Option<&str>) -> Policy {
    deployer_made(
        template,
        environment,
        Made {
            promotes_from,
            ..Made::default()
        },
    )
}

/// The deployer policy a template makes for `environment`, as `made` says.
fn deployer_made(template: &Template, environment: &str, made: Made<'_>) -> Policy {
    let promotes_from = made.promotes_from;
    let parameters = BTreeMap::from([
        ("AWS::Partition", "aws".to_owned()),
        ("AWS::Region", REGION.to_owned()),
        ("AWS::AccountId", ACCOUNT.to_owned()),
        ("Environment", environment.to_owned()),
        ("PromotesFrom", promotes_from.unwrap_or_default().to_owned()),
        (
            "SecretsFrom",
            made.secrets_from.unwrap_or_default().to_owned(),
        ),
        ("StoresDeleted", made.deletes_stores.to_string()),
        ("ArtifactBucket", BUCKET.to_owned()),
        ("InfrastructureStack", "biometrix-infrastructure".to_owned()),
        (
            "CloudFormationRoleArn",
            format!("arn:aws:iam::{ACCOUNT}:role/biometrix/pipeline/cfn"),
        ),
    ]);
    let (_, policy) = template
        .resources("AWS::IAM::ManagedPolicy")
        .into_iter()
        .find(|(name, _)| *name == "DeployerPolicy")
        .expect("the template makes a DeployerPolicy");
    let texts = |value: &Yaml| -> Vec<String> {
        one_or_many(value)
            .into_iter()
            .map(|v| render(v.as_str().expect("a text"), &parameters))
            .collect()
    };
    let rendered = statements(&policy["Properties"]["PolicyDocument"])
        .into_iter()
        .filter(|(condition, _)| match condition {
            None => true,
            Some("Promotes") => promotes_from.is_some(),
            Some("BorrowsSecrets") => made.secrets_from.is_some(),
            Some("DeletesStores") => made.deletes_stores,
            Some(other) => {
                panic!("a statement under condition {other}, which this proof cannot read")
            }
        })
        .map(|(_, statement)| {
            assert!(
                statement["NotAction"].is_badvalue() && statement["NotResource"].is_badvalue(),
                "a deployer statement by exclusion cannot be bounded: {statement:?}"
            );
            Statement {
                allow: statement["Effect"].as_str() == Some("Allow"),
                actions: texts(&statement["Action"]),
                resources: texts(&statement["Resource"]),
            }
        })
        .collect();
    Policy(rendered)
}

/// What belongs to `environment`, each with the changes the release tool makes to it: its stacks
/// and nested stacks, history (and the copies reset-history sets aside), locks and leases.
fn owned_by(environment: &str) -> Vec<(&'static [&'static str], String)> {
    const STACK_CHANGES: &[&str] = &[
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DeleteChangeSet",
        "cloudformation:DeleteStack",
    ];
    const OBJECT_CHANGES: &[&str] = &["s3:PutObject", "s3:DeleteObject"];
    const STORE_CHANGES: &[&str] = &["s3:DeleteObject", "s3:DeleteObjectVersion"];
    let stack =
        |name: &str| format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/0a1b2c3d");
    let object = |key: &str| format!("arn:aws:s3:::{BUCKET}/{key}");
    let mut owned = Vec::new();
    for service in SERVICES {
        let name = format!("{service}-{environment}");
        owned.push((STACK_CHANGES, stack(&name)));
        owned.push((STACK_CHANGES, stack(&format!("{name}-Api-1Q2W3E4R5T6Y"))));
        owned.push((OBJECT_CHANGES, object(&format!("deployments/{name}.json"))));
        owned.push((
            OBJECT_CHANGES,
            object(&format!("deployments/{name}.json.damaged-20261207T101500Z")),
        ));
        owned.push((OBJECT_CHANGES, object(&format!("locks/{name}.json"))));
    }
    // The objects of its stores' buckets, which only a throwaway environment's deployer empties.
    for bucket in [
        format!("biometrix-hardware-{environment}-firmware-{REGION}"),
        format!("biometrix-preprocessing-{environment}-ingest-{REGION}"),
    ] {
        owned.push((
            STORE_CHANGES,
            format!("arn:aws:s3:::{bucket}/firmware/1.0.bin"),
        ));
    }
    owned.push((
        OBJECT_CHANGES,
        object(&format!(
            "locks/artifacts/{environment}/1796641293-8554.json"
        )),
    ));
    owned
}

/// Every change `policy` (of `environment`, a name or a pattern like `pr-*`) allows to what
/// another environment owns.
fn trespasses(policy: &Policy, environment: &str) -> Vec<String> {
    let mine = |other: &str| match environment.strip_suffix('*') {
        Some(prefix) => other.starts_with(prefix),
        None => other == environment,
    };
    let mut found = Vec::new();
    for other in ENVIRONMENTS.iter().filter(|other| !mine(other)) {
        for (actions, arn) in owned_by(other) {
            // Any change at all, not only those the release tool makes.
            for action in actions.iter().chain(&[
                "cloudformation:UpdateStack",
                "cloudformation:CreateStack",
                "cloudformation:CancelUpdateStack",
                "cloudformation:ContinueUpdateRollback",
                "cloudformation:SetStackPolicy",
                "s3:DeleteObjectVersion",
                "s3:PutObjectAcl",
            ]) {
                if policy.allows(action, &arn) {
                    found.push(format!("{environment}'s deployer may {action} on {arn}"));
                }
            }
        }
    }
    found
}

fn template() -> Template {
    load(&repo().join("cloudformation/pipeline.yaml"))
}

#[test]
fn a_deployer_of_one_environment_changes_nothing_of_another() {
    let template = template();
    for environment in ENVIRONMENTS {
        for promotes_from in [None, Some("qa"), Some("dev")] {
            if promotes_from == Some(environment) {
                continue;
            }
            for (secrets_from, deletes_stores) in [(None, false), (Some("dev"), true)] {
                let made = Made {
                    promotes_from,
                    secrets_from,
                    deletes_stores,
                };
                let policy = deployer_made(&template, environment, made);
                let found = trespasses(&policy, environment);
                assert!(found.is_empty(), "{}", found.join("\n"));
                // And it can do to its own what the release tool does; its stores' objects only
                // where they go with its stacks.
                for (actions, arn) in owned_by(environment) {
                    for action in actions {
                        let store = actions.contains(&"s3:DeleteObjectVersion");
                        let needed = deletes_stores || !store;
                        assert_eq!(
                            policy.allows(action, &arn),
                            needed,
                            "{environment}'s deployer ({made:?}) and {action} on {arn}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn promote_reads_where_it_promotes_from_and_nothing_without_it() {
    let template = template();
    let history = format!("arn:aws:s3:::{BUCKET}/deployments/hardware-qa.json");
    let stack = format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/hardware-qa/0a1b2c3d");
    let promoting = deployer(&template, "production", Some("qa"));
    assert!(promoting.allows("s3:GetObject", &history));
    assert!(promoting.allows("cloudformation:GetTemplate", &stack));
    assert!(!promoting.allows("s3:PutObject", &history));
    let alone = deployer(&template, "production", None);
    assert!(!alone.allows("s3:GetObject", &history));
    assert!(!alone.allows("cloudformation:DescribeStacks", &stack));
}

#[test]
fn the_previews_pipeline_reaches_every_preview_and_nothing_else() {
    let made = Made {
        secrets_from: Some("dev"),
        deletes_stores: true,
        ..Made::default()
    };
    let previews = deployer_made(&template(), "pr-*", made);
    let found = trespasses(&previews, "pr-*");
    assert!(found.is_empty(), "{}", found.join("\n"));
    for preview in ["pr-4", "pr-42"] {
        for (actions, arn) in owned_by(preview) {
            for action in actions {
                assert!(
                    previews.allows(action, &arn),
                    "pr-* may not {action} on {arn}"
                );
            }
        }
    }
}

#[test]
fn a_borrower_reads_the_lenders_stacks_and_changes_nothing_of_them() {
    let template = template();
    let stack = format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/hardware-dev/0a1b2c3d");
    let made = Made {
        secrets_from: Some("dev"),
        ..Made::default()
    };
    let borrowing = deployer_made(&template, "pr-42", made);
    assert!(borrowing.allows("cloudformation:DescribeStacks", &stack));
    assert!(!borrowing.allows("cloudformation:GetTemplate", &stack));
    assert!(!borrowing.allows("cloudformation:CreateChangeSet", &stack));
    let alone = deployer(&template, "pr-42", None);
    assert!(!alone.allows("cloudformation:DescribeStacks", &stack));
}

#[test]
fn the_isolation_proof_catches_a_pattern_that_reaches_another_environment() {
    // `*-${Environment}` is the tempting pattern: it reaches dev-alice's stacks from alice's.
    let planted = Template::parse(
        "planted.yaml",
        r#"
Resources:
  DeployerPolicy:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: "cloudformation:*ChangeSet"
            Resource: !Sub "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/*-${Environment}/*"
          - Effect: Allow
            Action: ["s3:*Object"]
            Resource: !Sub "arn:${AWS::Partition}:s3:::${ArtifactBucket}/locks/*"
"#
        .to_owned(),
    )
    .unwrap();
    let found = trespasses(&deployer(&planted, "alice", None), "alice");
    assert!(
        found
            .iter()
            .any(|f| f.contains("ExecuteChangeSet") && f.contains("stack/hardware-dev-alice/")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("s3:DeleteObject") && f.contains("locks/users-qa.json")),
        "{found:#?}"
    );
    // A Deny carves what an Allow reaches.
    let denied = Policy(vec![
        Statement {
            allow: true,
            actions: vec!["s3:*".to_owned()],
            resources: vec!["*".to_owned()],
        },
        Statement {
            allow: false,
            actions: vec!["s3:Put*".to_owned()],
            resources: vec![format!("arn:aws:s3:::{BUCKET}/deployments/*")],
        },
    ]);
    assert!(!denied.allows(
        "s3:PutObject",
        &format!("arn:aws:s3:::{BUCKET}/deployments/x.json")
    ));
    assert!(denied.allows(
        "s3:GetObject",
        &format!("arn:aws:s3:::{BUCKET}/deployments/x.json")
    ));
}
