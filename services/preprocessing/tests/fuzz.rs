//! 10,000 random API Gateway events through the preprocessing function's Lambda path (more with
//! `FUZZ_CASES`, one run again with `FUZZ_SEED`): nothing panics, every response keeps the contract.

use kit::testing::{Fuzz, Tokens, emulator, service_token};

#[tokio::test]
async fn random_events_keep_the_contract() {
    let tokens = Tokens::serve().await;
    // Stores that do not exist, and a hardware API that does not answer: every call out fails,
    // and must fail as a contract error.
    let router = preprocessing::router(preprocessing::Preprocessing::new(
        preprocessing::Config {
            sessions_table: "fuzz-no-such-table".into(),
            ingest_bucket: "fuzz-no-such-bucket".into(),
            hardware_url: "http://127.0.0.1:1/v1".into(),
            auth: tokens.auth_config("preprocessing").await,
            signer: kit::testing::service_secret().await,
        },
        emulator().await,
    ));
    let report = Fuzz {
        service: "preprocessing",
        tokens: vec![
            tokens.accessory("0a:1b:2c:3d:4e:5f"),
            tokens.user(uuid::Uuid::nil()),
            service_token("fuzz", "preprocessing"),
        ],
        words: vec!["00000000-0000-0000-0000-000000000000"],
        routes: preprocessing::routes().paths().to_vec(),
        cases: 10_000,
    }
    .run(router)
    .await;
    println!("{report:?}");
    assert_eq!(report.by_status.values().sum::<usize>(), report.cases);
}
