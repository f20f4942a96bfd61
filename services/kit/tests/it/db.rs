//! TLS to PostgreSQL with `sslmode=verify-full`, against the TLS server `scripts/test` starts with a
//! certificate for `localhost` from a CA it made: that CA and that name connect (and the session is
//! encrypted); another CA, or another name for the same server, are refused.

use kit::db::{Database, DatabaseUrl};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the TLS test needs scripts/test's TLS PostgreSQL; run it with scripts/test")
    })
}

async fn verified(url: &str, ca: &str) -> Database {
    let url = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
    assert!(url.parse::<DatabaseUrl>().unwrap().is_verified());
    Database::new(
        &kit::testing::secrets().await,
        kit::testing::secret(&url).await,
    )
}

#[tokio::test]
async fn verify_full_connects_over_tls_with_the_right_ca_and_host_only() {
    let url = env("DATABASE_TLS_URL");
    let database = verified(&url, &env("DATABASE_TLS_CA")).await;
    let client = database
        .connection()
        .await
        .unwrap_or_else(|e| panic!("verify-full with the server's CA: {e:?}"));
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the session is encrypted");
    drop(client);

    let other_ca = verified(&url, &env("DATABASE_TLS_OTHER_CA")).await;
    assert!(
        other_ca.connection().await.is_err(),
        "a certificate from another CA is refused"
    );

    // The same server under a name its certificate does not carry.
    let by_address = url.replace("@localhost:", "@127.0.0.1:");
    assert_ne!(by_address, url);
    let wrong_name = verified(&by_address, &env("DATABASE_TLS_CA")).await;
    assert!(
        wrong_name.connection().await.is_err(),
        "a host name the certificate does not name is refused"
    );
}

#[tokio::test]
async fn a_url_that_would_reach_another_host_in_plaintext_is_refused_before_connecting() {
    let database = Database::new(
        &kit::testing::secrets().await,
        kit::testing::secret("postgres://legacy:hunter2@db.example.invalid:5432/legacy").await,
    );
    let error = match database.connection().await {
        Ok(_) => panic!("a plaintext connection to another host was opened"),
        Err(error) => error,
    };
    assert_eq!(error.status(), 500);
    let cause = format!("{error:?}");
    assert!(cause.contains("would be reached in plaintext"), "{cause}");
    assert!(!cause.contains("hunter2"), "{cause}");
}

#[tokio::test]
async fn the_test_server_wants_its_password() {
    let url = env("DATABASE_URL");
    let (scheme_user, rest) = url.split_once('@').expect("a URL with credentials");
    let user = scheme_user
        .rsplit_once(':')
        .map_or(scheme_user, |(user, _)| user);
    assert_ne!(user, scheme_user, "DATABASE_URL carries a password");
    for wrong in [format!("{user}@{rest}"), format!("{user}:not-it@{rest}")] {
        let refused = tokio_postgres::connect(&wrong, tokio_postgres::NoTls).await;
        let error = format!("{:?}", refused.err().expect("no trust on 127.0.0.1"));
        assert!(error.contains("password"), "{error}");
    }
}
