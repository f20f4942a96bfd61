//! 10,000 random API Gateway events through the alerts function's Lambda path (more with
//! `FUZZ_CASES`, one run again with `FUZZ_SEED`): nothing panics, every response keeps the contract.

use kit::testing::{Fuzz, Tokens, emulator, service_token};

#[tokio::test]
async fn random_events_keep_the_contract() {
    let tokens = Tokens::serve().await;
    // A table that does not exist: every store call fails, and must fail as a contract 500.
    let router = alerts::router(alerts::Alerts::new(
        alerts::Config {
            alerts_table: "fuzz-no-such-table".into(),
            auth: tokens.auth_config("alerts").await,
        },
        emulator().await,
    ));
    let report = Fuzz {
        service: "alerts",
        tokens: vec![
            tokens.accessory("0a:1b:2c:3d:4e:5f"),
            tokens.user(uuid::Uuid::nil()),
            service_token("fuzz", "alerts"),
        ],
        words: vec!["00000000-0000-0000-0000-000000000000"],
        routes: alerts::routes().paths().to_vec(),
        cases: 10_000,
    }
    .run(router)
    .await;
    println!("{report:?}");
    assert_eq!(report.by_status.values().sum::<usize>(), report.cases);
}
