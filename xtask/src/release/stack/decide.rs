//! What a deploy decides before it calls CloudFormation, as pure functions: what to do with a stack
//! in each state, which parameters to send, and whether anything changed at all. The tests below
//! replay recorded stack states the emulator cannot produce.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::StackStatus;

use super::template::Template;

/// The parameters deploy sets on every service stack, besides one artifact key and one code hash
/// per function.
pub const STACK_PARAMETERS: [&str; 6] = [
    "Environment",
    "ArtifactBucket",
    "ApiGatewayTemplateUrl",
    "DeploymentConfiguration",
    "Probes",
    RELEASE_DIGEST,
];

/// The parameter that holds [`release_digest`], where a template declares it.
pub const RELEASE_DIGEST: &str = "ReleaseDigest";

/// A digest of what a stack is brought to: its template and nested templates, and the value each
/// parameter will have (set now, kept from `current`, or the template's default). It changes exactly when the stack would,
/// so a template that publishes a function version with it publishes one for every change, and an
/// unchanged deploy stays unchanged.
pub fn release_digest(
    template: &Template,
    nested: &[Template],
    set: &BTreeMap<String, String>,
    current: Option<&BTreeMap<String, String>>,
) -> String {
    let mut text = String::new();
    for body in std::iter::once(template).chain(nested).map(|t| &t.body) {
        text.push_str(&format!("{}\n{body}\n", body.len()));
    }
    for name in template.parameters().keys() {
        if name == RELEASE_DIGEST {
            continue;
        }
        let value = set
            .get(name)
            .or_else(|| current.and_then(|c| c.get(name)))
            .cloned()
            .or_else(|| template.default_value(name));
        if let Some(value) = value {
            text.push_str(&format!("{name}={value:?}\n"));
        }
    }
    crate::release::artifact::sha256_hex(text.as_bytes())
}

/// What to do with a stack, given its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// No stack yet: a `CREATE` change set.
    Create,
    /// A stack with no resources, made by a `CREATE` change set that was never executed
    /// (REVIEW_IN_PROGRESS): delete it, with its pending change sets, then create it. Deleting it
    /// loses nothing, and a second stack of the same name is never made.
    Discard,
    /// A stable stack: an `UPDATE` change set.
    Update,
    /// Something else is changing it: wait until it settles, then decide again.
    Wait,
    /// Its creation failed and `--recreate` was given: delete it, then create it.
    Recreate,
    /// Nothing deploy can do; the message says what a person should do.
    Refuse(String),
}

/// The answer for every stack status. `status` is `None` when the stack does not exist.
pub fn next(status: Option<&StackStatus>, stack: &str, region: &str, recreate: bool) -> Next {
    use StackStatus as S;
    let Some(status) = status else {
        return Next::Create;
    };
    let events = format!(
        "see why with `aws cloudformation describe-stack-events --stack-name {stack} --region {region}`"
    );
    match status {
        S::DeleteComplete => Next::Create,
        S::ReviewInProgress => Next::Discard,
        S::CreateComplete
        | S::UpdateComplete
        | S::UpdateRollbackComplete
        | S::UpdateFailed
        | S::ImportComplete
        | S::ImportRollbackComplete => Next::Update,
        S::RollbackComplete | S::CreateFailed if recreate => Next::Recreate,
        S::RollbackComplete | S::CreateFailed => Next::Refuse(format!(
            "stack {stack} is in {}: its first deploy failed, so it has no working version and \
             CloudFormation cannot update it; {events}, fix the cause, then deploy again with --recreate, \
             which deletes the empty stack and creates it again (resources kept by a Retain policy stay \
             behind and must be removed first if their names are fixed)",
            status.as_str()
        )),
        S::UpdateRollbackFailed => Next::Refuse(format!(
            "stack {stack} is in UPDATE_ROLLBACK_FAILED: an update failed and so did its rollback, so \
             CloudFormation will not touch it until the rollback is finished; {events}, fix or skip the \
             resources that failed (`aws cloudformation continue-update-rollback --stack-name {stack} \
             --region {region}`, adding `--resources-to-skip <logical ids>` for resources that cannot be \
             rolled back), wait for UPDATE_ROLLBACK_COMPLETE, then deploy again"
        )),
        S::RollbackFailed => Next::Refuse(format!(
            "stack {stack} is in ROLLBACK_FAILED: its first deploy failed and its rollback did too; \
             {events}, delete it (`aws cloudformation delete-stack --stack-name {stack} --region {region}`, \
             with `--retain-resources` for what cannot be deleted), then deploy again"
        )),
        S::DeleteFailed => Next::Refuse(format!(
            "stack {stack} is in DELETE_FAILED: someone tried to delete it and that failed part way; \
             {events}, then finish the delete (`aws cloudformation delete-stack --stack-name {stack} \
             --region {region}`) and deploy again to create it afresh"
        )),
        in_progress if is_in_progress(in_progress) => Next::Wait,
        other => Next::Refuse(format!(
            "stack {stack} is in {}, a state deploy does not know how to handle; {events}",
            other.as_str()
        )),
    }
}

/// True for the states in which a stack runs one release and nothing is changing it: what
/// `promote` may take a release from.
pub fn is_settled(status: &StackStatus) -> bool {
    use StackStatus as S;
    matches!(
        status,
        S::CreateComplete
            | S::UpdateComplete
            | S::UpdateRollbackComplete
            | S::ImportComplete
            | S::ImportRollbackComplete
    )
}

/// True while an operation changes the stack (every `*_IN_PROGRESS` state, those added after
/// this was written included).
fn is_in_progress(status: &StackStatus) -> bool {
    status.as_str().ends_with("_IN_PROGRESS")
}

/// True for the states a stack operation ends in.
pub fn is_terminal(status: &StackStatus) -> bool {
    !is_in_progress(status)
}

/// True for the terminal states in which the operation did what was asked.
pub fn succeeded(status: &StackStatus) -> bool {
    use StackStatus as S;
    matches!(
        status,
        S::CreateComplete | S::UpdateComplete | S::DeleteComplete | S::ImportComplete
    )
}

/// One parameter of the change set: a value, or "keep what the stack has".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Set(String),
    Previous,
}

/// The parameters to send: `set` (what deploy decides) for its keys, the stack's previous value
/// for every other parameter it has, and the template's default for the rest. Fails, saying what
/// to pass, when a parameter would have no value at all, or when `set` names one the template
/// does not declare.
pub fn parameters(
    template: &Template,
    set: &BTreeMap<String, String>,
    current: Option<&BTreeMap<String, String>>,
    template_name: &str,
) -> anyhow::Result<BTreeMap<String, Value>> {
    check_declared(template, set, template_name)?;
    let mut values = BTreeMap::new();
    for (name, has_default) in &template.parameters() {
        if let Some(value) = set.get(name) {
            values.insert(name.clone(), Value::Set(value.clone()));
        } else if current.is_some_and(|c| c.contains_key(name)) {
            values.insert(name.clone(), Value::Previous);
        } else if !has_default {
            anyhow::bail!(
                "{template_name} needs a value for its parameter {name}, which has no default and \
                 which the stack does not have yet: pass --parameter {name}=VALUE"
            );
        }
    }
    Ok(values)
}

/// Fails, listing what the template takes, when `set` names a parameter it does not declare.
pub fn check_declared(
    template: &Template,
    set: &BTreeMap<String, String>,
    template_name: &str,
) -> anyhow::Result<()> {
    let declared = template.parameters();
    if let Some(unknown) = set.keys().find(|k| !declared.contains_key(*k)) {
        anyhow::bail!(
            "{template_name} has no parameter {unknown}; its parameters are {}",
            declared
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (key, value) in set {
        if let Some(why) = template.refuses(key, value) {
            anyhow::bail!("--parameter {key}={value}: {why} ({template_name})");
        }
    }
    Ok(())
}

/// True when sending `template` with `values` would change nothing: the stack runs this exact
/// template, and every value deploy sets is the one it already has. Checked before any change set,
/// since CloudFormation takes a while to say a change set is empty (and the emulator never does).
pub fn unchanged(
    template: &Template,
    values: &BTreeMap<String, Value>,
    current_body: &str,
    current: &BTreeMap<String, String>,
) -> bool {
    template.body == current_body
        && values.iter().all(|(name, value)| match value {
            Value::Previous => true,
            Value::Set(value) => current.get(name) == Some(value),
        })
        // A parameter the stack has and the template dropped is a change too.
        && current.keys().all(|name| template.parameters().contains_key(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status as CloudFormation spells it.
    fn st(status: &str) -> StackStatus {
        StackStatus::from(status)
    }

    fn refused(next: Next) -> String {
        match next {
            Next::Refuse(message) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Every status CloudFormation documents for a stack, with what deploy does.
    #[test]
    fn every_stack_status_has_an_answer() {
        let cases = [
            ("CREATE_IN_PROGRESS", Next::Wait),
            ("CREATE_COMPLETE", Next::Update),
            ("ROLLBACK_IN_PROGRESS", Next::Wait),
            ("DELETE_IN_PROGRESS", Next::Wait),
            ("DELETE_COMPLETE", Next::Create),
            ("UPDATE_IN_PROGRESS", Next::Wait),
            ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", Next::Wait),
            ("UPDATE_COMPLETE", Next::Update),
            ("UPDATE_FAILED", Next::Update),
            ("UPDATE_ROLLBACK_IN_PROGRESS", Next::Wait),
            ("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", Next::Wait),
            ("UPDATE_ROLLBACK_COMPLETE", Next::Update),
            ("REVIEW_IN_PROGRESS", Next::Discard),
            ("IMPORT_IN_PROGRESS", Next::Wait),
            ("IMPORT_COMPLETE", Next::Update),
            ("IMPORT_ROLLBACK_IN_PROGRESS", Next::Wait),
            ("IMPORT_ROLLBACK_COMPLETE", Next::Update),
        ];
        for (status, expected) in cases {
            assert_eq!(
                next(Some(&st(status)), "hardware-dev", "us-west-2", false),
                expected,
                "{status}"
            );
        }
        assert_eq!(next(None, "hardware-dev", "us-west-2", false), Next::Create);
    }

    #[test]
    fn a_failed_first_deploy_is_recreated_only_when_asked() {
        for status in ["ROLLBACK_COMPLETE", "CREATE_FAILED"] {
            let message = refused(next(Some(&st(status)), "users-qa", "eu-west-1", false));
            assert!(message.starts_with(&format!("stack users-qa is in {status}")));
            assert!(message.contains("--recreate"), "{message}");
            assert!(
                message.contains("describe-stack-events --stack-name users-qa --region eu-west-1"),
                "{message}"
            );
            assert_eq!(
                next(Some(&st(status)), "users-qa", "eu-west-1", true),
                Next::Recreate
            );
        }
        // --recreate never deletes a stack that has a working version.
        assert_eq!(
            next(
                Some(&st("UPDATE_ROLLBACK_COMPLETE")),
                "users-qa",
                "eu-west-1",
                true
            ),
            Next::Update
        );
    }

    #[test]
    fn broken_stacks_are_refused_with_the_way_out() {
        let message = refused(next(
            Some(&st("UPDATE_ROLLBACK_FAILED")),
            "alerts-production",
            "us-west-2",
            true,
        ));
        assert!(
            message.contains(
                "aws cloudformation continue-update-rollback --stack-name alerts-production --region us-west-2"
            ),
            "{message}"
        );
        let message = refused(next(
            Some(&st("ROLLBACK_FAILED")),
            "a-dev",
            "us-west-2",
            true,
        ));
        assert!(message.contains("delete-stack"), "{message}");
        let message = refused(next(
            Some(&st("DELETE_FAILED")),
            "a-dev",
            "us-west-2",
            false,
        ));
        assert!(message.contains("DELETE_FAILED"), "{message}");
        let message = refused(next(
            Some(&st("SOMETHING_NEW")),
            "a-dev",
            "us-west-2",
            false,
        ));
        assert!(message.contains("SOMETHING_NEW"), "{message}");
    }

    #[test]
    fn terminal_states() {
        assert!(!is_terminal(&st(
            "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
        )));
        assert!(is_terminal(&st("UPDATE_ROLLBACK_COMPLETE")));
        assert!(!succeeded(&st("UPDATE_ROLLBACK_COMPLETE")));
        assert!(succeeded(&st("UPDATE_COMPLETE")));
        assert!(!succeeded(&st("ROLLBACK_COMPLETE")));
    }

    #[test]
    fn only_a_stack_running_one_release_is_settled() {
        for status in [
            "CREATE_COMPLETE",
            "UPDATE_COMPLETE",
            "UPDATE_ROLLBACK_COMPLETE",
        ] {
            assert!(is_settled(&st(status)), "{status}");
        }
        for status in [
            "UPDATE_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "REVIEW_IN_PROGRESS",
            "ROLLBACK_COMPLETE",
            "UPDATE_ROLLBACK_FAILED",
            "UPDATE_FAILED",
            "DELETE_FAILED",
        ] {
            assert!(!is_settled(&st(status)), "{status}");
        }
    }

    const SERVICE: &str = "
Parameters:
  Environment: {Type: String}
  ArtifactKey: {Type: String}
  DomainName: {Type: String, Default: ''}
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
  Function:
    Type: AWS::Lambda::Function
    Properties:
      Role: !GetAtt Role.Arn
";

    fn template() -> Template {
        Template::parse("svc.yaml", SERVICE.to_owned()).unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parameters_not_set_keep_their_previous_values() {
        let set = map(&[("Environment", "dev"), ("ArtifactKey", "k2")]);
        let current = map(&[
            ("Environment", "dev"),
            ("ArtifactKey", "k1"),
            ("DomainName", "example.com"),
        ]);
        let values = parameters(&template(), &set, Some(&current), "svc.yaml").unwrap();
        assert_eq!(values["ArtifactKey"], Value::Set("k2".into()));
        assert_eq!(values["DomainName"], Value::Previous);

        // A new stack leaves defaulted parameters to their defaults.
        let values = parameters(&template(), &set, None, "svc.yaml").unwrap();
        assert!(!values.contains_key("DomainName"));
    }

    #[test]
    fn parameters_without_any_value_are_refused() {
        let error = parameters(
            &template(),
            &map(&[("Environment", "dev")]),
            None,
            "svc.yaml",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "svc.yaml needs a value for its parameter ArtifactKey, which has no default and which \
             the stack does not have yet: pass --parameter ArtifactKey=VALUE"
        );
        let error = parameters(
            &template(),
            &map(&[("Environment", "dev"), ("ArtifactKey", "k"), ("Typo", "x")]),
            None,
            "svc.yaml",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "svc.yaml has no parameter Typo; its parameters are ArtifactKey, DomainName, Environment"
        );
    }

    #[test]
    fn only_an_identical_template_and_identical_values_are_unchanged() {
        let template = template();
        let current = map(&[("Environment", "dev"), ("ArtifactKey", "k1")]);
        let same = parameters(
            &template,
            &map(&[("ArtifactKey", "k1")]),
            Some(&current),
            "t",
        )
        .unwrap();
        assert!(unchanged(&template, &same, SERVICE, &current));

        let new_key = parameters(
            &template,
            &map(&[("ArtifactKey", "k2")]),
            Some(&current),
            "t",
        )
        .unwrap();
        assert!(!unchanged(&template, &new_key, SERVICE, &current));
        assert!(!unchanged(
            &template,
            &same,
            &SERVICE.replace("Role:\n", "Role2:\n"),
            &current
        ));
        let dropped = map(&[("Environment", "dev"), ("ArtifactKey", "k1"), ("Old", "x")]);
        assert!(!unchanged(&template, &same, SERVICE, &dropped));
    }

    #[test]
    fn the_release_digest_changes_with_the_stack_and_only_then() {
        let template = Template::parse(
            "t.yaml",
            "Parameters:\n  Key: {Type: String}\n  Kept: {Type: String}\n  Days: {Type: Number, Default: 30}\n  ReleaseDigest: {Type: String}\nResources: {}\n".into(),
        )
        .unwrap();
        let nested = [Template::parse("n.yaml", "Resources: {}\n".into()).unwrap()];
        let set = |key: &str| BTreeMap::from([("Key".to_owned(), key.to_owned())]);
        let current = BTreeMap::from([
            ("Key".to_owned(), "a".to_owned()),
            ("Kept".to_owned(), "k".to_owned()),
        ]);
        let digest = |set: &BTreeMap<String, String>, current| {
            release_digest(&template, &nested, set, current)
        };
        let first = digest(&set("a"), Some(&current));
        assert_eq!(first.len(), 64);
        // The same values, whether set, kept or defaulted, give the same digest.
        assert_eq!(first, digest(&current, None));
        let mut with_default = current.clone();
        with_default.insert("Days".to_owned(), "30".to_owned());
        assert_eq!(first, digest(&set("a"), Some(&with_default)));
        assert_ne!(first, digest(&set("b"), Some(&current)));
        assert_ne!(first, digest(&set("a"), None));
        let other_nested =
            [Template::parse("n.yaml", "Resources: {}\n# changed\n".into()).unwrap()];
        assert_ne!(
            first,
            release_digest(&template, &other_nested, &set("a"), Some(&current))
        );
    }
}
