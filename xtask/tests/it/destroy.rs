//! `destroy` on the emulator: what CloudFormation keeps is said first and stays, the stack goes, its
//! history stays, a second destroy is a success, and production needs its confirmation.

use serde_json::Value;

use crate::deploy::{deployed, stand_in};
use crate::support::{Fixture, assert_refused, stderr, stdout};

fn destroy(fixture: &Fixture, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["destroy", "hardware"];
    args.extend_from_slice(extra);
    args.push("--local");
    fixture.xtask(&args)
}

#[test]
fn destroy_keeps_the_retained_stores_and_the_history_and_is_idempotent() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    let output = destroy(&fixture, &["dev", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["outcome"], "deleted", "{report:#}");
    let kept: Vec<&str> = report["retained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["physical_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        [
            "hardware-dev-firmware",
            "hardware-dev-sync",
            "biometrix-hardware-dev-firmware-us-west-2"
        ]
    );
    assert_eq!(
        report["retained"][0]["remove"],
        "aws dynamodb delete-table --table-name hardware-dev-firmware --region us-west-2"
    );
    // Said before the deletion starts.
    let said = stderr(&output);
    let listed = said
        .find("keeps these (retained by their DeletionPolicy)")
        .expect(&said);
    assert!(
        listed < said.find("deleting hardware-dev\n").unwrap_or(usize::MAX),
        "{said}"
    );
    assert!(
        said.contains(
            "their names are fixed by the template: deploying hardware-dev again is refused \
             while any of hardware-dev-firmware, hardware-dev-sync, \
             biometrix-hardware-dev-firmware-us-west-2 exists"
        ),
        "{said}"
    );

    // The tables and the history stay (that the stack is gone, the second destroy below shows).
    let tables =
        crate::deploy::emulator_post(&fixture, "DynamoDB_20120810.ListTables", "dynamodb", "{}");
    assert!(tables.contains("hardware-dev-firmware"), "{tables}");
    assert!(tables.contains("hardware-dev-sync"), "{tables}");
    assert_eq!(
        report["history"],
        "s3://biometrix-infrastructure-us-west-2/deployments/hardware-dev.json"
    );
    crate::deploy::bucket_object(&fixture, "deployments/hardware-dev.json");

    // Again: the stack is gone, there is nothing to destroy, and that is a success.
    let again = destroy(&fixture, &["dev"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("hardware-dev: did not exist, nothing to destroy"),
        "{}",
        stdout(&again)
    );

    // A new deploy is refused before anything is built or changed, naming each store in the way
    // and how to remove it; the emulator is left as it was.
    let refused = crate::deploy::deploy(&fixture, &[]);
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(
        said.contains(
            "hardware-dev does not exist, and creating it would fail: the template names stores \
             that already exist"
        ) && said.contains(
            "AWS::DynamoDB::Table  hardware-dev-sync\n    aws dynamodb delete-table --table-name \
             hardware-dev-sync --region us-west-2"
        ) && said.contains("AWS::S3::Bucket  biometrix-hardware-dev-firmware-us-west-2"),
        "{said}"
    );
    assert!(!said.contains("packag"), "refused before the build: {said}");
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let described = crate::deploy::runtime().block_on(
        crate::deploy::cloudformation(&endpoint)
            .describe_stacks()
            .stack_name("hardware-dev")
            .send(),
    );
    assert!(described.is_err(), "no stack was made: {described:?}");

    // Once they are removed as it says, the same environment deploys again.
    for table in ["hardware-dev-firmware", "hardware-dev-sync"] {
        crate::deploy::emulator_post(
            &fixture,
            "DynamoDB_20120810.DeleteTable",
            "dynamodb",
            &format!(r#"{{"TableName": "{table}"}}"#),
        );
    }
    let s3 = crate::deploy::s3(&endpoint);
    let bucket = "biometrix-hardware-dev-firmware-us-west-2";
    crate::deploy::runtime().block_on(async {
        let versions = s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        for version in versions.versions() {
            s3.delete_object()
                .bucket(bucket)
                .key(version.key().unwrap())
                .set_version_id(version.version_id().map(str::to_owned))
                .send()
                .await
                .unwrap();
        }
        s3.delete_bucket().bucket(bucket).send().await.unwrap();
    });

    // A create that fails halfway (a log group someone made by hand holds the function's name)
    // is rolled back as CloudFormation rolls it back, and says why; the emulator stays usable.
    let group = r#"{"logGroupName": "/aws/lambda/hardware-dev-apigateway-execute"}"#;
    crate::deploy::emulator_post(&fixture, "Logs_20140328.CreateLogGroup", "logs", group);
    let failed = crate::deploy::deploy(&fixture, &[]);
    assert!(!failed.status.success());
    let said = stderr(&failed);
    assert!(
        said.contains("LogGroup") && said.contains("already exists"),
        "{said}"
    );
    assert!(!said.contains("error parsing XML"), "{said}");
    // Its stores went with the failed create, so once the cause is gone, --recreate works.
    let refused = crate::deploy::deploy(&fixture, &[]);
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(
        said.contains("stack hardware-dev is in ROLLBACK_COMPLETE") && said.contains("--recreate"),
        "{said}"
    );
    crate::deploy::emulator_post(&fixture, "Logs_20140328.DeleteLogGroup", "logs", group);
    deployed(&fixture, &["--recreate"]);
}

#[test]
fn production_is_only_destroyed_when_confirmed() {
    let fixture = stand_in();
    let output = destroy(&fixture, &["production"]);
    assert_refused(
        &output,
        "production is protected ([workspace.metadata.environments] in Cargo.toml): destroying \
         hardware-production deletes the API its callers use; if that is what you want, add \
         --confirm production",
    );
    let output = destroy(&fixture, &["dev", "--confirm", "production"]);
    assert_refused(
        &output,
        "--confirm production does not name the environment being destroyed (dev)",
    );
    let output = fixture.xtask(&["destroy", "hardwar", "dev", "--local"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown service `hardwar`"),
        "{}",
        stderr(&output)
    );
    // Confirmed, a production stack that does not exist is nothing to destroy.
    let output = destroy(&fixture, &["production", "--confirm", "production"]);
    assert!(output.status.success(), "{}", stderr(&output));
}
