//! A release checked over HTTP, the way its callers reach it: each of the service's store-free
//! probes sent to every base URL the API answers on, retried with backoff until the check's
//! deadline. In AWS those are the stage URL (from the stack's `RestApiId` output) and both custom
//! domains when the stack has them; on `--local`, the local gateway `local::check` starts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gate::probe::{DEADLINE, Failed, release_checks, retry};

use crate::workspace::Probe;

/// The probes of a release in AWS: sent to its API's stage URL and custom domains, read from the
/// outputs of the stack that runs it. On a failure, the function's last log lines are shown.
pub struct Urls<'a> {
    pub aws: &'a crate::aws::Connection,
    pub environment: crate::environments::Environment,
    pub progress: crate::progress::Progress,
}

impl super::rollout::Prober for Urls<'_> {
    fn probe<'a>(
        &'a self,
        service: &'a crate::workspace::Service,
        probes: &'a [Probe],
        stack: &'a super::report::StackReport,
    ) -> super::rollout::Probed<'a> {
        Box::pin(async move {
            let started = crate::aws::logs::now_ms();
            let bases = urls(&stack.outputs, &self.aws.region)?;
            let step = self.progress.step(&format!(
                "probing {} at {} ({} probes)",
                stack.stack,
                bases.join(", "),
                release_checks(probes).len()
            ));
            let result = check(&bases, probes).await?;
            match &result {
                Ok(()) => step.done(&format!("{} passed its probes", stack.stack)),
                Err(failed) => {
                    step.done(&format!("{} failed: {failed}", stack.stack));
                    if let Some(function) = service.functions.first() {
                        let name =
                            crate::environments::StackName::new(&service.name, self.environment)
                                .function(&function.name);
                        // Lambda delivers lines within seconds; what has arrived is shown.
                        let client = aws_sdk_cloudwatchlogs::Client::new(&self.aws.sdk);
                        let group = format!("/aws/lambda/{name}");
                        let lines =
                            match crate::aws::logs::filter(&client, &group, started - 60_000, None)
                                .await
                            {
                                Ok(events) => events
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|event| event.message)
                                    .collect(),
                                Err(error) => {
                                    vec![format!("(its logs could not be read: {error:#})")]
                                }
                            };
                        show_last_lines(self.progress, &name, &lines);
                    }
                }
            }
            Ok(result)
        })
    }
}

/// How many of a failing function's last log lines a probe failure shows.
const SHOWN_LINES: usize = 20;

/// Shows the last of `lines`, the log of `function` around a failed probe: usually the panic
/// or init error that made it fail. Each is cut to one screen line.
pub fn show_last_lines(progress: crate::progress::Progress, function: &str, lines: &[String]) {
    let lines: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        progress.note(&format!("  {function} wrote no log lines"));
        return;
    }
    let from = lines.len().saturating_sub(SHOWN_LINES);
    let mut text = format!("  the last log lines of {function}:\n");
    for line in &lines[from..] {
        let line: String = line.trim_end().chars().take(240).collect();
        text.push_str(&format!("  │ {line}\n"));
    }
    progress.text(&text);
}

/// The base URLs a deployed API answers on, each ending where the service's own `/v1` would:
/// a probe's path `/v1/x` is sent to `<base>/x`.
pub fn urls(outputs: &BTreeMap<String, String>, region: &str) -> anyhow::Result<Vec<String>> {
    let api = outputs.get("RestApiId").ok_or_else(|| {
        anyhow::anyhow!(
            "the stack has no RestApiId output, so its API cannot be probed; was it deployed from \
             this workspace's templates?"
        )
    })?;
    let mut urls = vec![format!(
        "https://{api}.execute-api.{region}.amazonaws.com/v1"
    )];
    for output in ["ServiceUrl", "ApisUrl"] {
        if let Some(url) = outputs.get(output) {
            urls.push(url.trim_end_matches('/').to_owned());
        }
    }
    Ok(urls)
}

/// Sends each store-free probe to each of `bases`; the first that does not get its answer by the
/// deadline.
pub async fn check(bases: &[String], probes: &[Probe]) -> anyhow::Result<Result<(), Failed>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(35))
        .build()?;
    let deadline = Instant::now() + DEADLINE;
    for base in bases {
        for probe in release_checks(probes) {
            if let Err(failed) = until_answered(&client, base, probe, deadline).await {
                return Ok(Err(failed));
            }
        }
    }
    Ok(Ok(()))
}

/// `<base>` and a probe's `/v1/...` path: the URL it is sent to.
fn url(base: &str, probe: &Probe) -> String {
    let path = probe.path.strip_prefix("/v1").unwrap_or(&probe.path);
    format!("{base}{path}")
}

async fn until_answered(
    client: &reqwest::Client,
    base: &str,
    probe: &Probe,
    deadline: Instant,
) -> Result<(), Failed> {
    let url = url(base, probe);
    retry(
        format!("{} at {url}", probe.label()),
        deadline,
        async || match send(client, &url, probe).await {
            Ok((status, body)) => probe.verdict(status, &body),
            Err(error) => Some(format!("no answer ({error})")),
        },
    )
    .await
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    probe: &Probe,
) -> Result<(u16, Vec<u8>), String> {
    let method = reqwest::Method::from_bytes(probe.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client.request(method, url);
    for (name, value) in &probe.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &probe.body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_url_and_both_domains_are_probed() {
        let mut outputs = BTreeMap::from([("RestApiId".to_owned(), "a1b2c3".to_owned())]);
        assert_eq!(
            urls(&outputs, "eu-west-1").unwrap(),
            ["https://a1b2c3.execute-api.eu-west-1.amazonaws.com/v1"]
        );
        outputs.insert(
            "ServiceUrl".into(),
            "https://hardware.dev.biometrix.io/v1".into(),
        );
        outputs.insert(
            "ApisUrl".into(),
            "https://apis.dev.biometrix.io/hardware".into(),
        );
        let bases = urls(&outputs, "eu-west-1").unwrap();
        assert_eq!(bases.len(), 3);
        let probe: Probe =
            serde_json::from_str(r#"{"path": "/v1/misc/time", "status": 200}"#).unwrap();
        let sent: Vec<String> = bases.iter().map(|b| url(b, &probe)).collect();
        assert_eq!(
            sent,
            [
                "https://a1b2c3.execute-api.eu-west-1.amazonaws.com/v1/misc/time",
                "https://hardware.dev.biometrix.io/v1/misc/time",
                "https://apis.dev.biometrix.io/hardware/misc/time",
            ]
        );
        assert!(
            urls(&BTreeMap::new(), "eu-west-1")
                .unwrap_err()
                .to_string()
                .contains("no RestApiId output")
        );
    }
}
