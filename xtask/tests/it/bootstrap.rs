//! `bootstrap` against the AWS emulator: the real infrastructure template creates the bucket.

use crate::support::{Fixture, stderr, stdout};

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
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
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
