//! The users Lambda function, or `cargo run -p users` for a local server.

use kit::{Env, Mode};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let env = Env::from_process();
    let mode = Mode::from_env(&env)?;
    kit::init_tracing(&mode, &env);
    let config = users::Config::from_env(&env)?;
    kit::run(users::router(users::Users::new(config)), mode).await
}
