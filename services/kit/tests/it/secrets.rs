//! Secrets read at run time from the emulator's Secrets Manager: rotation reaches a running
//! process without a restart, the previous value keeps verifying during a rotation, an outage
//! keeps the last value, and the database reconnects with a rotated URL.

use std::time::Duration;

use kit::testing::{emulator, secret};
use kit::{ApiError, AuthConfig, Principal, SecretArn, SecretStore, ServiceSecret, Verifier};

const FIRST: &str = "the first service secret, 32 bytes or more";
const SECOND: &str = "the second service secret, 32 bytes or more";
const THIRD: &str = "the third service secret, 32 bytes or more!";

async fn client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(emulator().await)
}

/// Rotates the secret the way Secrets Manager's rotation does: the new value becomes
/// `AWSCURRENT`, the old one `AWSPREVIOUS`.
async fn rotate(arn: &SecretArn, value: &str) {
    client()
        .await
        .put_secret_value()
        .secret_id(arn.as_str())
        .secret_string(value)
        .send()
        .await
        .expect("the emulator rotates the secret");
}

fn token(secret: &str) -> String {
    let secret: ServiceSecret = secret.parse().expect("long enough");
    secret.issue("preprocessing", "hardware", None)
}

fn verifier(arn: SecretArn, store: &SecretStore) -> Verifier {
    Verifier::new(
        AuthConfig {
            service_secret: Some(arn),
            service_audience: Some("hardware".into()),
            ..AuthConfig::default()
        },
        store,
    )
}

fn service() -> Principal {
    Principal::Service {
        subject: "preprocessing".into(),
    }
}

#[tokio::test]
async fn a_rotation_reaches_a_running_verifier_and_the_previous_value_still_verifies() {
    let arn = secret(FIRST).await;
    // Read again on every use, so the test need not wait out the five minutes.
    let store = SecretStore::new(emulator().await).with_ttl(Duration::ZERO);
    let verifier = verifier(arn.clone(), &store);
    assert_eq!(verifier.verify(&token(FIRST)).await.unwrap(), service());
    let refused = verifier.verify(&token(SECOND)).await.unwrap_err();
    assert!(matches!(refused, ApiError::Unauthorized(_)), "{refused:?}");

    rotate(&arn, SECOND).await;
    assert_eq!(verifier.verify(&token(SECOND)).await.unwrap(), service());
    assert_eq!(
        verifier.verify(&token(FIRST)).await.unwrap(),
        service(),
        "a caller that still holds the previous value is not locked out"
    );

    rotate(&arn, THIRD).await;
    assert_eq!(verifier.verify(&token(THIRD)).await.unwrap(), service());
    assert_eq!(verifier.verify(&token(SECOND)).await.unwrap(), service());
    let retired = verifier.verify(&token(FIRST)).await.unwrap_err();
    assert!(matches!(retired, ApiError::Unauthorized(_)), "{retired:?}");
}

#[tokio::test]
async fn a_value_is_kept_for_its_ttl_and_read_once_by_many_requests() {
    let arn = secret(FIRST).await;
    let store = SecretStore::new(emulator().await);
    let secret = store.secret::<ServiceSecret>(arn.clone());
    let first = secret.get().await.unwrap();
    rotate(&arn, SECOND).await;
    let cached = secret.get().await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &cached),
        "within the TTL the value is not read again"
    );
    assert!(
        cached.previous.is_none(),
        "only asked for the current value"
    );
    assert_eq!(kit::SECRET_TTL, Duration::from_secs(300));
}

#[tokio::test]
async fn a_missing_or_malformed_secret_is_a_server_error_that_names_no_value() {
    let store = SecretStore::new(emulator().await);
    let missing: SecretArn =
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:test/no-such-secret-AbCdEf"
            .parse()
            .unwrap();
    let error = store
        .secret::<ServiceSecret>(missing)
        .get()
        .await
        .unwrap_err();
    let ApiError::Internal(cause) = &error else {
        panic!("not a server error: {error:?}")
    };
    assert!(cause.to_string().contains("ResourceNotFound"), "{cause}");
    // A value that cannot be a service secret: the problem is named, the value never is.
    let short = secret("too-short-hunter2").await;
    let error = store
        .secret::<ServiceSecret>(short)
        .get()
        .await
        .unwrap_err();
    let ApiError::Internal(cause) = &error else {
        panic!("not a server error: {error:?}")
    };
    let text = cause.to_string();
    assert!(text.contains("must be at least 32 bytes long"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(error.to_string(), "internal server error");
}

#[tokio::test]
async fn a_failing_read_keeps_the_last_value_and_backs_off() {
    let arn = secret(FIRST).await;
    let store = SecretStore::new(emulator().await).with_ttl(Duration::ZERO);
    let secret = store.secret::<ServiceSecret>(arn.clone());
    let before = secret.get().await.unwrap();
    client()
        .await
        .delete_secret()
        .secret_id(arn.as_str())
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let after = secret.get().await.expect("the last value stays in use");
    assert!(std::sync::Arc::ptr_eq(&before, &after));
    // The read failed just now: within the backoff the next ones answer at once, from the cache.
    assert!(std::sync::Arc::ptr_eq(
        &before,
        &secret.get().await.unwrap()
    ));
    let fresh = store.secret::<ServiceSecret>(arn).get().await.unwrap_err();
    assert!(
        matches!(fresh, ApiError::Internal(_)),
        "with no value to keep, the failure is a server error: {fresh:?}"
    );
}

#[tokio::test]
async fn the_database_reconnects_with_a_rotated_url() {
    let url = kit::testing::database().await;
    let (base, database) = url.rsplit_once('/').unwrap();
    let wrong = format!("{base}/{database}_that_is_not_there");
    let arn = secret(&wrong).await;
    let store = SecretStore::new(emulator().await);
    let db = kit::db::Database::new(&store, arn.clone());
    assert!(db.connection().await.is_err(), "no such database");
    // A rotation within the five minutes: the failed connection had the secret read again.
    rotate(&arn, &url).await;
    let client = db
        .connection()
        .await
        .unwrap_or_else(|e| panic!("the rotated URL connects: {e:?}"));
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), database);
}
