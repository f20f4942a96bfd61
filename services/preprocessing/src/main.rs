//! The preprocessing Lambda function, or `cargo run -p preprocessing` for a local server.

use std::process::ExitCode;

use kit::{Env, Mode};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    kit::exit(serve().await)
}

async fn serve() -> Result<(), kit::BoxError> {
    let env = Env::from_process();
    let mode = Mode::from_env(&env)?;
    kit::init_tracing(&mode, &env);
    let config = preprocessing::Config::from_env(&env)?;
    let sdk = kit::aws_config(&mode).await;
    kit::run(
        preprocessing::router(preprocessing::Preprocessing::new(config, &sdk)),
        mode,
    )
    .await
}
