//! `bootstrap` against the AWS emulator: the real infrastructure template creates the bucket.

use crate::support::{Fixture, stderr, stdout};

/// A suffix no other run's stack or bucket has.
fn suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn bootstrap_creates_the_artifact_bucket_that_publish_uses() {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with scripts/test");
    let fixture = Fixture::copy("tiny");
    let template = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cloudformation/infrastructure.yaml");
    std::fs::copy(
        template,
        fixture.root.join("cloudformation/infrastructure.yaml"),
    )
    .unwrap();
    let suffix = suffix();
    let (stack, bucket) = (
        format!("infrastructure-{suffix}"),
        format!("artifacts-bootstrap-{suffix}"),
    );

    let bootstrap = || fixture.xtask(&["bootstrap", "--stack", &stack, "--bucket", &bucket]);
    let created = bootstrap();
    assert!(created.status.success(), "{}", stderr(&created));
    assert_eq!(
        stdout(&created),
        format!("stack {stack} in us-west-2: CREATE_COMPLETE\nartifact bucket: {bucket}\n")
    );

    let again = bootstrap();
    assert!(
        again.status.success(),
        "running it again is harmless:\n{}",
        stderr(&again)
    );
    assert!(
        stdout(&again).ends_with(&format!("artifact bucket: {bucket}\n")),
        "{}",
        stdout(&again)
    );

    let published = fixture.xtask(&["publish", "tiny", "dev", "--bucket", &bucket]);
    assert!(published.status.success(), "{}", stderr(&published));
    assert!(
        stdout(&published).contains("4 PUT"),
        "{}",
        stdout(&published)
    );
}

#[test]
fn bootstrap_gives_an_environment_its_own_pipeline_rights() {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with scripts/test");
    let fixture = Fixture::copy("tiny");
    for file in ["infrastructure.yaml", "pipeline.yaml"] {
        let template = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cloudformation")
            .join(file);
        std::fs::copy(template, fixture.root.join("cloudformation").join(file)).unwrap();
    }
    let suffix = suffix();
    let (stack, bucket) = (
        format!("infrastructure-{suffix}"),
        format!("artifacts-pipeline-{suffix}"),
    );

    // Before the region is bootstrapped, there is nothing to name: refused, nothing made.
    let early = fixture.xtask(&["bootstrap", "--stack", &stack, "--environment", "qa"]);
    assert!(!early.status.success());
    assert!(
        stderr(&early).contains(&format!(
            "error: the infrastructure stack {stack} does not exist in us-west-2: run `cargo xtask bootstrap --region us-west-2` first"
        )),
        "{}",
        stderr(&early)
    );
    let myself = fixture.xtask(&["bootstrap", "--environment", "qa", "--promotes-from", "qa"]);
    assert!(
        stderr(&myself).contains("error: qa cannot promote from itself"),
        "{}",
        stderr(&myself)
    );

    let region = fixture.xtask(&["bootstrap", "--stack", &stack, "--bucket", &bucket]);
    assert!(region.status.success(), "{}", stderr(&region));
    let production = fixture.xtask(&[
        "bootstrap",
        "--stack",
        &stack,
        "--environment",
        "production",
        "--promotes-from",
        "qa",
        "--github-repository",
        "biometrix/apis",
    ]);
    assert!(production.status.success(), "{}", stderr(&production));
    let out = stdout(&production);
    assert!(
        out.starts_with("stack biometrix-pipeline-production in us-west-2: "),
        "{out}"
    );
    // Named by CloudFormation (IAM is global; a name per environment would clash between
    // regions), on the pipeline's path.
    assert!(
        out.contains("DeployerPolicyArn: arn:aws:iam::123456789012:policy/biometrix/pipeline/"),
        "{out}"
    );
    assert!(
        out.contains("DeployerRoleArn: arn:aws:iam::123456789012:role/biometrix/pipeline/"),
        "{out}"
    );

    // The policy names this region's bucket and the role its stacks run as.
    let client = crate::deploy::cloudformation(&std::env::var("AWS_ENDPOINT_URL").unwrap());
    let parameters = crate::deploy::runtime().block_on(async {
        client
            .describe_stacks()
            .stack_name("biometrix-pipeline-production")
            .send()
            .await
            .unwrap()
            .stacks()[0]
            .parameters()
            .iter()
            .map(|p| {
                (
                    p.parameter_key().unwrap().to_owned(),
                    p.parameter_value().unwrap_or_default().to_owned(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    assert_eq!(parameters["ArtifactBucket"], bucket);
    assert_eq!(parameters["PromotesFrom"], "qa");
    assert!(
        parameters["CloudFormationRoleArn"].contains(":role/biometrix/pipeline/"),
        "{parameters:?}"
    );
}
