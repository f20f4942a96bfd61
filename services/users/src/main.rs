//! The users Lambda function, or `cargo run -p users` for a local server.

use std::process::ExitCode;

use kit::{Env, Mode};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let env = Env::from_process();
    let result = serve(&env).await;
    kit::exit(&env, result)
}

async fn serve(env: &Env) -> Result<(), kit::BoxError> {
    let mode = Mode::from_env(env)?;
    kit::init_tracing(&mode, env);
    let config = users::Config::from_env(env)?;
    let sdk = kit::aws_config(&mode).await;
    kit::run(users::router(users::Users::new(config, &sdk)), mode).await
}
