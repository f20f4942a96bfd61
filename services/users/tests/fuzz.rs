//! 10,000 random API Gateway events through the users function's Lambda path (more with
//! `FUZZ_CASES`, one run again with `FUZZ_SEED`): nothing panics, every response keeps the contract.

use kit::testing::{Fuzz, Tokens, database, service_token};

#[tokio::test]
async fn random_events_keep_the_contract() {
    let tokens = Tokens::serve().await;
    let router = users::router(users::Users::new(
        users::Config {
            database: kit::testing::secret(&database().await).await,
            auth: tokens.auth_config("users").await,
        },
        kit::testing::emulator().await,
    ));
    let report = Fuzz {
        service: "users",
        tokens: vec![
            tokens.accessory("0a:1b:2c:3d:4e:5f"),
            tokens.user(uuid::Uuid::nil()),
            service_token("fuzz", "users"),
        ],
        words: vec!["00000000-0000-0000-0000-000000000000"],
        routes: users::routes().paths().to_vec(),
        cases: 10_000,
    }
    .run(router)
    .await;
    println!("{report:?}");
    assert_eq!(report.by_status.values().sum::<usize>(), report.cases);
    assert!(report.by_status.contains_key(&404), "{report:?}");
}
