//! No policy in the templates lets anything write IAM outside the path of the roles service stacks
//! make (`role/biometrix/service/`), every role a service stack makes lives on that path, and the
//! pipeline's own role and policies live on another. Together with the boundary every such role
//! carries, that is what keeps a template (or whoever can publish one) from turning
//! CloudFormationRole, or any role it can pass, into an administrator.
//!
//! Statements are read as IAM evaluates their text: actions with `*` and `?` wildcards, case
//! insensitive; resources as written (`!Sub` reads as its text, `!GetAtt X.Arn` as `X.Arn`).
//! Conditions are not needed for this proof: an allowed IAM write must name the service path in
//! its resource whatever its condition.

use yaml_rust2::Yaml;

use super::{load, one_or_many, templates};
use crate::release::stack::Template;

/// The path every role a service stack makes lives on.
const SERVICE_PATH: &str = "/biometrix/service/";
/// The path of the pipeline's own role and policies, which nothing in the templates may write.
const PIPELINE_PATH: &str = "/biometrix/pipeline/";

/// IAM actions that change who may do what: creating, changing, attaching or passing roles,
/// policies, users and groups, and their credentials.
const IAM_WRITES: [&str; 31] = [
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:UpdateRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:TagRole",
    "iam:PassRole",
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:CreateUser",
    "iam:PutUserPolicy",
    "iam:AttachUserPolicy",
    "iam:PutUserPermissionsBoundary",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:AddUserToGroup",
    "iam:CreateGroup",
    "iam:PutGroupPolicy",
    "iam:AttachGroupPolicy",
    "iam:CreateInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:CreateServiceLinkedRole",
];

/// Whether `pattern` (with `*` and `?`) matches `text`, as IAM matches them.
fn glob(pattern: &[u8], text: &[u8], fold_case: bool) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text, fold_case)
                || (!text.is_empty() && glob(pattern, &text[1..], fold_case))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..], fold_case),
        (Some(p), Some(t)) if p == t || (fold_case && p.eq_ignore_ascii_case(t)) => {
            glob(&pattern[1..], &text[1..], fold_case)
        }
        _ => false,
    }
}

/// Whether the IAM action pattern `pattern` matches `action`: case insensitive.
pub(super) fn matches(pattern: &str, action: &str) -> bool {
    glob(pattern.as_bytes(), action.as_bytes(), true)
}

/// Whether the resource pattern `pattern` matches the ARN `arn`: case sensitive.
pub(super) fn covers(pattern: &str, arn: &str) -> bool {
    glob(pattern.as_bytes(), arn.as_bytes(), false)
}

/// A document's statements, a conditional one (`!If [Condition, Statement, !Ref AWS::NoValue]`)
/// read as each of its branches that is a statement, with the condition's name.
pub(super) fn statements(document: &Yaml) -> Vec<(Option<&str>, &Yaml)> {
    one_or_many(&document["Statement"])
        .into_iter()
        .flat_map(|statement| match statement {
            Yaml::Array(branches) => {
                let condition = branches.first().and_then(Yaml::as_str);
                branches[1..]
                    .iter()
                    .filter(|branch| branch.as_hash().is_some())
                    .map(|branch| (condition, branch))
                    .collect()
            }
            statement => vec![(None, statement)],
        })
        .collect()
}

/// Every policy document in `template` with its owner: roles' inline policies, and
/// `AWS::IAM::Policy` and `AWS::IAM::ManagedPolicy` resources (both branches of an `!If`).
pub(super) fn documents(template: &Template) -> Vec<(String, &Yaml)> {
    let mut found = Vec::new();
    for (role, resource) in template.resources("AWS::IAM::Role") {
        for policy in one_or_many(&resource["Properties"]["Policies"]) {
            found.push((role.to_owned(), &policy["PolicyDocument"]));
        }
    }
    for kind in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for (name, resource) in template.resources(kind) {
            match &resource["Properties"] {
                Yaml::Array(branches) => found.extend(
                    branches
                        .iter()
                        .map(|branch| (name.to_owned(), &branch["PolicyDocument"])),
                ),
                properties => found.push((name.to_owned(), &properties["PolicyDocument"])),
            }
        }
    }
    found
}

fn texts(value: &Yaml) -> Vec<String> {
    one_or_many(value)
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Every `Allow` in `template` that lets something write IAM outside the service path, or allows
/// by exclusion (`NotAction`, `NotResource`), which this proof cannot bound.
fn escalations(template: &Template) -> Vec<String> {
    let mut found = Vec::new();
    for (owner, document) in documents(template) {
        for (_, statement) in statements(document) {
            if statement["Effect"].as_str() != Some("Allow") {
                continue;
            }
            let at = format!("{}: {owner}", template.name);
            if !statement["NotAction"].is_badvalue() || !statement["NotResource"].is_badvalue() {
                found.push(format!("{at} allows by exclusion (NotAction/NotResource)"));
                continue;
            }
            let actions = texts(&statement["Action"]);
            let writes: Vec<&str> = IAM_WRITES
                .iter()
                .copied()
                .filter(|write| actions.iter().any(|action| matches(action, write)))
                .collect();
            if writes.is_empty() {
                continue;
            }
            for resource in texts(&statement["Resource"]) {
                if passes_the_stacks_role(&writes, &resource, statement) {
                    continue;
                }
                if !resource.contains(&format!(":role{SERVICE_PATH}")) {
                    found.push(format!(
                        "{at} allows {} on {resource}, outside role{SERVICE_PATH}",
                        writes.join(", ")
                    ));
                }
            }
        }
    }
    found
}

/// The one IAM write outside the service path that is allowed: a pipeline passing
/// CloudFormationRole (in infrastructure.yaml, or as pipeline.yaml's parameter, whose pattern
/// keeps it on the pipeline path), and only to CloudFormation.
fn passes_the_stacks_role(writes: &[&str], resource: &str, statement: &Yaml) -> bool {
    let to = &statement["Condition"]["StringEquals"]["iam:PassedToService"];
    writes == ["iam:PassRole"]
        && (resource == "CloudFormationRole.Arn" || resource == "CloudFormationRoleArn")
        && texts(to) == ["cloudformation.amazonaws.com"]
}

/// Every role `template` makes that is not on `path`.
fn roles_off(template: &Template, path: &str) -> Vec<String> {
    template
        .resources("AWS::IAM::Role")
        .into_iter()
        .filter(|(_, role)| role["Properties"]["Path"].as_str() != Some(path))
        .map(|(name, _)| format!("{}: role {name} is not on {path}", template.name))
        .collect()
}

#[test]
fn nothing_writes_iam_outside_the_service_roles() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for path in templates() {
        let template = load(&path);
        checked += documents(&template).len();
        problems.extend(escalations(&template));
        // The region's own roles (CloudFormation's, API Gateway's logging role) are checked by
        // name below; a pipeline's roles live on its path, a service's on the service path.
        if !path.ends_with("infrastructure.yaml") {
            let pipeline = path.ends_with("pipeline.yaml");
            problems.extend(roles_off(
                &template,
                if pipeline {
                    PIPELINE_PATH
                } else {
                    SERVICE_PATH
                },
            ));
        }
    }
    assert!(checked > 10, "the policies were found ({checked})");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The pipeline's own roles and policies sit on their own path, which no Allow above reaches.
    for (file, name, kind) in [
        (
            "infrastructure.yaml",
            "CloudFormationRole",
            "AWS::IAM::Role",
        ),
        (
            "infrastructure.yaml",
            "ServiceRoleBoundary",
            "AWS::IAM::ManagedPolicy",
        ),
        ("infrastructure.yaml", "GcPolicy", "AWS::IAM::ManagedPolicy"),
        ("pipeline.yaml", "DeployerPolicy", "AWS::IAM::ManagedPolicy"),
        ("pipeline.yaml", "DeployerRole", "AWS::IAM::Role"),
    ] {
        let template = load(&super::repo().join("cloudformation").join(file));
        let (_, resource) = template
            .resources(kind)
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is in {file}"));
        assert_eq!(
            resource["Properties"]["Path"].as_str(),
            Some(PIPELINE_PATH),
            "{name}"
        );
    }
}

#[test]
fn the_iam_proof_catches_what_it_forbids() {
    assert!(matches("iam:Put*", "iam:PutRolePolicy"));
    assert!(matches("IAM:*role*", "iam:PassRole"));
    assert!(matches("*", "iam:CreateAccessKey"));
    assert!(!matches("iam:Get*", "iam:PutRolePolicy"));
    let template = Template::parse(
        "planted.yaml",
        r#"
Resources:
  Fine:
    Type: AWS::IAM::Role
    Properties:
      Path: /biometrix/service/
      Policies:
        - PolicyName: ok
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [iam:PutRolePolicy, iam:PassRole]
                Resource: !Sub "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/biometrix/service/*"
              - Effect: Deny
                Action: "iam:*"
                Resource: "*"
  AnyRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: escalate
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: iam:PutRolePolicy
                Resource: !Sub "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*"
  Everything:
    Type: AWS::IAM::Policy
    Properties:
      PolicyName: admin
      Roles: [AnyRole]
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: "*"
            Resource: "*"
  PassAny:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: iam:Pass*
            Resource: CloudFormationRole.Arn
          - Effect: Allow
            Action: iam:PassRole
            Resource: CloudFormationRole.Arn
            Condition:
              StringEquals:
                iam:PassedToService: cloudformation.amazonaws.com
          - Effect: Allow
            NotAction: s3:*
            Resource: "*"
"#
        .to_owned(),
    )
    .unwrap();
    let found = escalations(&template);
    let expected = [
        "planted.yaml: AnyRole allows iam:PutRolePolicy on arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*, outside",
        "planted.yaml: Everything allows iam:CreateRole",
        "planted.yaml: PassAny allows iam:PassRole on CloudFormationRole.Arn",
        "planted.yaml: PassAny allows by exclusion",
    ];
    for expected in expected {
        assert!(
            found.iter().any(|f| f.starts_with(expected)),
            "{expected} is not among:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), expected.len(), "{}", found.join("\n"));
    let off = roles_off(&template, SERVICE_PATH);
    assert_eq!(
        off,
        ["planted.yaml: role AnyRole is not on /biometrix/service/"]
    );
}
