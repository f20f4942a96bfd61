//! What the change-set engine says to people: a change set as a table, a stack that is busy, an
//! operation that failed (each failing resource with its reason), a deletion that did not finish,
//! each with the way out.

use super::watch::Failure;
use crate::progress::table;

/// What to do about a stack whose deletion failed (`DELETE_FAILED`), after its failures.
pub fn not_deleted(stack: &str, region: &str) -> String {
    format!(
        "stack {stack} was not deleted. Fix what keeps each resource below (a bucket must be \
         empty, say), then destroy again; or keep those and delete the rest with `aws \
         cloudformation delete-stack --stack-name {stack} --region {region} --retain-resources \
         <their logical ids>`"
    )
}

/// Why a stack is refused with `--no-wait`, and what to do.
pub fn busy(stack: &str, status: &str, region: &str) -> String {
    format!(
        "stack {stack} is busy ({status}): another deploy, or someone in the console, is changing it; \
         run again without --no-wait to wait for it, or follow it with \
         `aws cloudformation describe-stack-events --stack-name {stack} --region {region}`"
    )
}

/// The change set as a table: action, logical id, type, replacement.
pub fn change_table(stack: &str, changes: &[aws_sdk_cloudformation::types::Change]) -> String {
    let rows: Vec<[String; 4]> = changes
        .iter()
        .filter_map(|change| change.resource_change())
        .map(|change| {
            [
                change.action().map_or("?", |a| a.as_str()).to_owned(),
                change.logical_resource_id().unwrap_or("?").to_owned(),
                change.resource_type().unwrap_or("?").to_owned(),
                change.replacement().map_or("-", |r| r.as_str()).to_owned(),
            ]
        })
        .collect();
    let mut text = table(
        &format!("change set for {stack}:"),
        ["ACTION", "LOGICAL ID", "TYPE", "REPLACEMENT"],
        &rows,
    );
    if rows.is_empty() {
        text.push_str("  (no resource changes listed)\n");
    }
    text
}

/// The error for a stack operation that ended badly: its final state and every failing resource.
pub fn failed(stack: &str, region: &str, status: &str, failures: &[Failure]) -> String {
    let mut message = format!("stack {stack} ended in {status}");
    message.push_str(match status {
        "UPDATE_ROLLBACK_COMPLETE" => {
            ": the update failed and was rolled back, so the previous version keeps serving"
        }
        "ROLLBACK_COMPLETE" => {
            ": its first deploy failed; fix the cause, then deploy again with --recreate"
        }
        _ => "",
    });
    if failures.is_empty() {
        message.push_str(&format!(
            "\nno resource reported a failure; see `aws cloudformation describe-stack-events \
             --stack-name {stack} --region {region}`"
        ));
    } else {
        message.push_str("\nfailed resources:");
        for failure in failures {
            message.push_str(&format!(
                "\n  {} ({}) {}: {}",
                failure.resource, failure.kind, failure.status, failure.reason
            ));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudformation::types::{ChangeAction, Replacement, ResourceChange};
    use expect_test::expect;

    use super::*;

    #[test]
    fn change_sets_print_as_aligned_tables() {
        let change = |action, id: &str, kind: &str, replacement| {
            aws_sdk_cloudformation::types::Change::builder()
                .resource_change(
                    ResourceChange::builder()
                        .action(action)
                        .logical_resource_id(id)
                        .resource_type(kind)
                        .set_replacement(replacement)
                        .build(),
                )
                .build()
        };
        let table = change_table(
            "hardware-dev",
            &[
                change(
                    ChangeAction::Modify,
                    "Function",
                    "AWS::Lambda::Function",
                    Some(Replacement::False),
                ),
                change(ChangeAction::Add, "Api", "AWS::CloudFormation::Stack", None),
            ],
        );
        expect![[r#"
            change set for hardware-dev:
              ACTION LOGICAL ID TYPE                       REPLACEMENT
              Modify Function   AWS::Lambda::Function      False
              Add    Api        AWS::CloudFormation::Stack -
        "#]]
        .assert_eq(&table);
        expect![[r#"
            change set for hardware-dev:
              ACTION LOGICAL ID TYPE REPLACEMENT
              (no resource changes listed)
        "#]]
        .assert_eq(&change_table("hardware-dev", &[]));
    }

    #[test]
    fn a_failed_deletion_names_the_way_out() {
        let error = anyhow::anyhow!(failed(
            "hardware-dev",
            "us-west-2",
            "DELETE_FAILED",
            &[Failure {
                resource: "FirmwareBucket".into(),
                kind: "AWS::S3::Bucket".into(),
                status: "DELETE_FAILED".into(),
                reason: "The bucket you tried to delete is not empty".into(),
            }],
        ))
        .context(not_deleted("hardware-dev", "us-west-2"));
        let said = format!("{error:#}");
        assert!(
            said.starts_with("stack hardware-dev was not deleted."),
            "{said}"
        );
        assert!(said.contains("--retain-resources"), "{said}");
        assert!(
            said.contains("The bucket you tried to delete is not empty"),
            "{said}"
        );
    }

    #[test]
    fn failures_name_every_resource_and_reason() {
        let message = failed(
            "hardware-dev",
            "us-west-2",
            "UPDATE_ROLLBACK_COMPLETE",
            &[Failure {
                resource: "Api/RestApi".into(),
                kind: "AWS::ApiGateway::RestApi".into(),
                status: "UPDATE_FAILED".into(),
                reason: "Invalid binary media type".into(),
            }],
        );
        assert_eq!(
            message,
            "stack hardware-dev ended in UPDATE_ROLLBACK_COMPLETE: the update failed and was rolled \
             back, so the previous version keeps serving\nfailed resources:\n  Api/RestApi \
             (AWS::ApiGateway::RestApi) UPDATE_FAILED: Invalid binary media type"
        );
    }
}
