//! The pre-traffic gate, as a Lambda function: CodeDeploy calls it before it moves any traffic to a
//! new version; it invokes that version with the release's probes and reports the verdict. See
//! `gate::hook` for the decisions and ARCHITECTURE.md ("Gradual traffic") for the design.

use std::time::Instant;

use aws_lambda_events::event::codedeploy::CodeDeployLifecycleEvent;
use aws_sdk_lambda::primitives::Blob;
use gate::hook::{self, Invoked, Target};
use gate::probe::{DEADLINE, Failed, Probe, release_checks, retry};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_ansi(false)
        .with_current_span(false)
        .init();
    let target = Target::from_env(|name| std::env::var(name).ok())?;
    let config = aws_config::load_from_env().await;
    let clients = Clients {
        lambda: aws_sdk_lambda::Client::new(&config),
        codedeploy: aws_sdk_codedeploy::Client::new(&config),
    };
    let (target, clients) = (&target, &clients);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<CodeDeployLifecycleEvent>| gate(target, clients, event.payload),
    ))
    .await
}

struct Clients {
    lambda: aws_sdk_lambda::Client,
    codedeploy: aws_sdk_codedeploy::Client,
}

/// Probes the target version and tells CodeDeploy the verdict.
async fn gate(
    target: &Target,
    clients: &Clients,
    hook: CodeDeployLifecycleEvent,
) -> Result<(), lambda_runtime::Error> {
    let deadline = Instant::now() + DEADLINE;
    let mut failed = None;
    for probe in release_checks(&target.probes) {
        if let Err(failure) = until_answered(target, clients, probe, &hook, deadline).await {
            failed = Some(failure);
            break;
        }
    }
    let status = hook::status(failed.as_ref());
    match &failed {
        None => tracing::info!(
            deployment = hook.deployment_id,
            version = target.version,
            "every probe passed"
        ),
        Some(failure) => tracing::warn!(
            deployment = hook.deployment_id,
            version = target.version,
            probe = failure.probe,
            answer = failure.answer,
            "a probe failed: no traffic goes to this version"
        ),
    }
    clients
        .codedeploy
        .put_lifecycle_event_hook_execution_status()
        .deployment_id(&hook.deployment_id)
        .lifecycle_event_hook_execution_id(&hook.lifecycle_event_hook_execution_id)
        .status(status)
        .send()
        .await?;
    Ok(())
}

/// Invokes the version with `probe` until it gets its answer or the deadline passes.
async fn until_answered(
    target: &Target,
    clients: &Clients,
    probe: &Probe,
    hook: &CodeDeployLifecycleEvent,
    deadline: Instant,
) -> Result<(), Failed> {
    let mut attempt = 0;
    retry(probe.label(), deadline, async || {
        attempt += 1;
        let request_id = format!("{}-{attempt}", hook.deployment_id);
        match invoke(target, clients, probe, &request_id).await {
            Ok(invoked) => hook::judge(probe, &invoked),
            Err(error) => Some(error),
        }
    })
    .await
}

async fn invoke(
    target: &Target,
    clients: &Clients,
    probe: &Probe,
    request_id: &str,
) -> Result<Invoked, String> {
    let event = target.event(probe, request_id)?;
    let output = clients
        .lambda
        .invoke()
        .function_name(&target.function)
        .qualifier(&target.version)
        .payload(Blob::new(event))
        .send()
        .await
        .map_err(|error| {
            format!(
                "no answer ({})",
                aws_sdk_lambda::error::DisplayErrorContext(&error)
            )
        })?;
    Ok(Invoked {
        function_error: output.function_error().map(str::to_owned),
        payload: output
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default(),
    })
}
