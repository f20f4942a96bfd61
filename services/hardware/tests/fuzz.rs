//! 10,000 random API Gateway events through the hardware function's Lambda path (more with
//! `FUZZ_CASES`, one run again with `FUZZ_SEED`): nothing panics, every response keeps the contract.

use kit::testing::{Fuzz, Tokens, emulator, service_token};

#[tokio::test]
async fn random_events_keep_the_contract() {
    let tokens = Tokens::serve().await;
    // Stores that do not exist: every store call fails, and must fail as a contract 500.
    let router = hardware::router(hardware::Hardware::new(
        hardware::Config {
            firmware_table: "fuzz-no-such-table".into(),
            firmware_bucket: "fuzz-no-such-bucket".into(),
            sync_table: "fuzz-no-such-table".into(),
            database: kit::testing::no_database().await,
            accessory_pool_id: "us-west-2_fuzznopool".into(),
            accessory_client_id: "fuzz-no-client".into(),
            auth: tokens.auth_config("hardware").await,
        },
        emulator().await,
    ));
    let report = Fuzz {
        service: "hardware",
        tokens: vec![
            tokens.accessory("0a:1b:2c:3d:4e:5f"),
            tokens.user(uuid::Uuid::new_v4()),
            service_token("fuzz", "hardware"),
        ],
        words: vec!["latest", "1.10"],
        routes: hardware::routes().paths().to_vec(),
        cases: 10_000,
    }
    .run(router)
    .await;
    println!("{report:?}");
    assert_eq!(report.by_status.values().sum::<usize>(), report.cases);
    assert!(
        report.by_status.contains_key(&200),
        "some requests reach a handler: {report:?}"
    );
    assert!(report.by_status.contains_key(&404), "{report:?}");
}
