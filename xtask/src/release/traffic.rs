//! How a new version of a function gets traffic in AWS: CodeDeploy moves the function's `live`
//! alias to it, as the deployment group's configuration says, after the pre-traffic gate passed
//! it, and moves it back when one of the group's alarms fires. This module chooses the
//! configuration and reads a deployment (its status, its traffic, why it ended) into what deploy
//! shows; `follow` polls it while the stack waits on the alias.

use std::future::Future;

use aws_sdk_codedeploy::types::{DeploymentStatus, ErrorCode};

use serde::Serialize;

use super::history::Cause;
use crate::progress::Progress;

pub use crate::environments::Traffic;

/// What deploy read of a CodeDeploy deployment, in the API's own words (`GetDeployment`, and
/// `BatchGetDeploymentTargets` for the Lambda target), so that the decisions below are plain
/// functions of documented values.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub id: String,
    /// `Created`, `Queued`, `InProgress`, `Baking`, `Ready`, `Succeeded`, `Failed` or `Stopped`, as
    /// the SDK's enum.
    pub status: DeploymentStatus,
    /// `ErrorInformation.code`: `ALARM_ACTIVE`, `HOOK_EXECUTION_FAILURE`, `TIMEOUT`, ...
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    pub current_version: Option<String>,
    pub target_version: Option<String>,
    /// The target version's share of traffic, from 0 to 1.
    pub target_weight: f64,
    /// Seconds from when traffic began to move (`AllowTraffic` started) to when it was read.
    pub shifting_for: Option<u64>,
}

/// How a deployment ended, or that it has not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Shift {
    InProgress,
    Succeeded {
        version: String,
    },
    /// One of the deployment group's alarms fired: the alias went back to the version before.
    RolledBackByAlarm {
        message: String,
    },
    /// The pre-traffic gate failed the version: no traffic ever reached it.
    RolledBackByProbe {
        message: String,
    },
    /// Anything else (a timeout, a permission CodeDeploy lacks, a person who stopped it).
    Failed {
        message: String,
    },
}

impl Shift {
    /// How reports say it.
    pub fn sentence(&self) -> String {
        match self {
            Shift::InProgress => "the deployment was still shifting traffic".to_owned(),
            Shift::Succeeded { version } => format!("version {version} took all the traffic"),
            Shift::RolledBackByAlarm { message } => {
                format!("rolled back by alarm: {message}")
            }
            Shift::RolledBackByProbe { message } => {
                format!("rolled back by probe (the pre-traffic gate): {message}")
            }
            Shift::Failed { message } => format!("failed: {message}"),
        }
    }

    /// Why the history remembers a release CodeDeploy turned away, and in which words; `None`
    /// for the other outcomes.
    pub fn turned_away(&self) -> Option<(Cause, &str)> {
        match self {
            Shift::RolledBackByProbe { message } => Some((Cause::Gate, message)),
            Shift::RolledBackByAlarm { message } => Some((Cause::Alarm, message)),
            _ => None,
        }
    }
}

/// A stack update CodeDeploy turned away, the gate failing the new version or an alarm stopping
/// its shift, which CloudFormation then rolled back: the release before it still runs.
#[derive(Debug)]
pub struct TurnedAway {
    pub shift: Shift,
    /// The release's digest, for its history entry.
    pub digest: String,
    /// What CloudFormation said of the stack.
    pub stack: String,
}

impl std::fmt::Display for TurnedAway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\nCodeDeploy: {}", self.stack, self.shift.sentence())
    }
}

impl std::error::Error for TurnedAway {}

/// How `seen` ended, from its status and error code.
pub fn outcome(seen: &Seen) -> Shift {
    let message = || {
        seen.error_message
            .clone()
            .unwrap_or_else(|| format!("deployment {} is {}", seen.id, seen.status.as_str()))
    };
    match &seen.status {
        DeploymentStatus::Succeeded => Shift::Succeeded {
            version: seen.target_version.clone().unwrap_or_default(),
        },
        DeploymentStatus::Failed | DeploymentStatus::Stopped => match &seen.error_code {
            Some(ErrorCode::AlarmActive) => Shift::RolledBackByAlarm { message: message() },
            Some(ErrorCode::HookExecutionFailure) => {
                Shift::RolledBackByProbe { message: message() }
            }
            _ => Shift::Failed { message: message() },
        },
        _ => Shift::InProgress,
    }
}

/// The probe and answer of a gate's JSON log line saying a probe failed, as one sentence.
fn gate_failure(line: &str) -> Option<String> {
    let line: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let fields = &line["fields"];
    if !fields["message"].as_str()?.starts_with("a probe failed") {
        return None;
    }
    Some(format!(
        "version {} failed {}: {}",
        fields["version"].as_str().unwrap_or("?"),
        fields["probe"].as_str()?,
        fields["answer"].as_str().unwrap_or("no answer")
    ))
}

/// One line on where a deployment is: the traffic shifted so far and the next step, in `traffic`.
pub fn progress_line(seen: &Seen, traffic: Traffic) -> String {
    let target = seen.target_version.as_deref().unwrap_or("?");
    let current = seen.current_version.as_deref().unwrap_or("?");
    let Some(elapsed) = seen.shifting_for else {
        return format!(
            "deployment {}: the pre-traffic gate is probing version {target}; version {current} \
             has all the traffic",
            seen.id
        );
    };
    let share = (seen.target_weight * 100.0).round() as u8;
    let next = match traffic.step(elapsed) {
        (_, Some(at)) => {
            let (percent, _) = traffic.step(at);
            format!("; next: {percent}% in {}s", at.saturating_sub(elapsed))
        }
        (_, None) => String::new(),
    };
    format!(
        "deployment {}: version {target} has {share}% of the traffic, version {current} the rest \
         ({traffic}){next}",
        seen.id
    )
}

/// Follows the CodeDeploy deployment a stack update starts, if any, saying each change of its
/// traffic. Reading is best effort: a deployment that cannot be read (none yet, or a CodeDeploy
/// that refuses to answer) is simply not shown, and the stack's own outcome stays the verdict.
pub struct Follower {
    client: aws_sdk_codedeploy::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    application: String,
    group: String,
    since: aws_sdk_codedeploy::primitives::DateTime,
    traffic: Traffic,
    progress: Progress,
    said: Option<String>,
    seen: Option<Seen>,
}

/// How often a deployment is read while the stack waits on it.
const POLL: std::time::Duration = std::time::Duration::from_secs(5);

impl Follower {
    /// Follows the deployments of `stack`'s group (`apigateway.yaml` names them after the stack)
    /// that start from now.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        stack: &str,
        traffic: Traffic,
        progress: Progress,
    ) -> Follower {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Follower {
            client: aws_sdk_codedeploy::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            application: stack.to_owned(),
            group: format!("{stack}-live"),
            since: aws_sdk_codedeploy::primitives::DateTime::from_secs(now as i64 - 5),
            traffic,
            progress,
            said: None,
            seen: None,
        }
    }

    /// Runs `work` (the stack update), reading the deployment every few seconds meanwhile.
    pub async fn during<F: Future>(&mut self, work: F) -> F::Output {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = crate::wait::pause(POLL) => self.poll().await,
            }
        }
    }

    /// How the deployment ended, read once more; `None` when there was none. A version the gate
    /// failed is said in the gate's words (its log line), which CodeDeploy does not keep.
    pub async fn finish(mut self) -> Option<Shift> {
        self.poll().await;
        match self.seen.as_ref().map(outcome)? {
            Shift::RolledBackByProbe { message } => Some(Shift::RolledBackByProbe {
                message: self.gate_verdict().await.unwrap_or(message),
            }),
            shift => Some(shift),
        }
    }

    /// Where the gate of the stack's group logs (`apigateway.yaml` names it after the stack).
    fn gate_log_group(&self) -> String {
        format!("/aws/lambda/{}-pre-traffic-gate", self.application)
    }

    /// The gate's last "a probe failed" line since the follower started: the probe and what the
    /// version answered.
    async fn gate_verdict(&self) -> Option<String> {
        let start = self.since.secs() * 1000;
        let events = crate::aws::logs::filter(&self.logs, &self.gate_log_group(), start, None)
            .await
            .ok()??;
        events
            .iter()
            .rev()
            .find_map(|event| gate_failure(&event.message))
    }

    async fn poll(&mut self) {
        let Ok(Some(seen)) = self.read().await else {
            return;
        };
        let line = match outcome(&seen) {
            Shift::InProgress => progress_line(&seen, self.traffic),
            Shift::Succeeded { version } => {
                format!(
                    "deployment {}: version {version} has all the traffic",
                    seen.id
                )
            }
            Shift::RolledBackByAlarm { message } => format!(
                "deployment {}: an alarm fired, and CodeDeploy moved the traffic back to version \
                 {}: {message}",
                seen.id,
                seen.current_version.as_deref().unwrap_or("?")
            ),
            Shift::RolledBackByProbe { message } => format!(
                "deployment {}: the pre-traffic gate failed version {}, which got no traffic: \
                 {message} (its log group is {})",
                seen.id,
                seen.target_version.as_deref().unwrap_or("?"),
                self.gate_log_group()
            ),
            Shift::Failed { message } => format!("deployment {}: {message}", seen.id),
        };
        if self.said.as_ref() != Some(&line) {
            self.progress.note(&line);
            self.said = Some(line);
        }
        self.seen = Some(seen);
    }

    /// The newest deployment of the group since the follower started, with its Lambda target.
    async fn read(&self) -> anyhow::Result<Option<Seen>> {
        use aws_sdk_codedeploy::types::TimeRange;
        let listed = self
            .client
            .list_deployments()
            .application_name(&self.application)
            .deployment_group_name(&self.group)
            .create_time_range(TimeRange::builder().start(self.since).build())
            .send()
            .await?;
        let Some(id) = listed.deployments().first() else {
            return Ok(None);
        };
        let info = self
            .client
            .get_deployment()
            .deployment_id(id)
            .send()
            .await?;
        let Some(info) = info.deployment_info() else {
            return Ok(None);
        };
        let targets = self
            .client
            .list_deployment_targets()
            .deployment_id(id)
            .send()
            .await?;
        let target = self
            .client
            .batch_get_deployment_targets()
            .deployment_id(id)
            .set_target_ids(Some(targets.target_ids().to_vec()))
            .send()
            .await?;
        let lambda = target
            .deployment_targets()
            .iter()
            .find_map(|t| t.lambda_target());
        let function = lambda.and_then(|l| l.lambda_function_info());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let shifting_for = lambda
            .into_iter()
            .flat_map(|l| l.lifecycle_events())
            .find(|e| e.lifecycle_event_name() == Some("AllowTraffic"))
            .and_then(|e| e.start_time())
            .map(|start| (now - start.secs()).max(0) as u64);
        Ok(Some(Seen {
            id: id.clone(),
            status: info.status().cloned().unwrap_or(DeploymentStatus::Created),
            error_code: info.error_information().and_then(|e| e.code()).cloned(),
            error_message: info
                .error_information()
                .and_then(|e| e.message())
                .map(str::to_owned),
            current_version: function
                .and_then(|f| f.current_version())
                .map(str::to_owned),
            target_version: function.and_then(|f| f.target_version()).map(str::to_owned),
            target_weight: function.map_or(0.0, |f| f.target_version_weight()),
            shifting_for,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_environment_has_its_configuration() {
        let builtin = crate::environments::Environments::builtin();
        let chosen: Vec<&str> = ["dev", "qa", "production"]
            .iter()
            .map(|e| builtin.resolve(e).unwrap().traffic().configuration())
            .collect();
        assert_eq!(
            chosen,
            [
                "CodeDeployDefault.LambdaAllAtOnce",
                "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
                "CodeDeployDefault.LambdaCanary10Percent5Minutes",
            ]
        );
    }

    #[test]
    fn policies_parse_by_name_and_unknown_ones_are_listed() {
        assert_eq!("canary".parse::<Traffic>(), Ok(Traffic::Canary));
        assert_eq!(
            "slow".parse::<Traffic>(),
            Err("unknown traffic policy `slow`: known ones are all-at-once, linear, canary".into())
        );
    }

    #[test]
    fn steps_follow_the_configurations() {
        assert_eq!(Traffic::AllAtOnce.step(0), (100, None));
        assert_eq!(Traffic::Canary.step(0), (10, Some(300)));
        assert_eq!(Traffic::Canary.step(299), (10, Some(300)));
        assert_eq!(Traffic::Canary.step(300), (100, None));
        assert_eq!(Traffic::Linear.step(0), (10, Some(60)));
        assert_eq!(Traffic::Linear.step(61), (20, Some(120)));
        assert_eq!(Traffic::Linear.step(539), (90, Some(540)));
        assert_eq!(Traffic::Linear.step(540), (100, None));
    }

    fn seen(status: &str, code: Option<&str>) -> Seen {
        Seen {
            id: "d-ABC123".into(),
            status: status.into(),
            error_code: code.map(ErrorCode::from),
            error_message: code.map(|c| format!("the deployment failed: {c}")),
            current_version: Some("7".into()),
            target_version: Some("8".into()),
            target_weight: 0.1,
            shifting_for: Some(65),
        }
    }

    /// Every status and error code CodeDeploy documents for a deployment, with what deploy says.
    #[test]
    fn each_documented_state_has_an_outcome() {
        for status in ["Created", "Queued", "InProgress", "Baking", "Ready"] {
            assert_eq!(outcome(&seen(status, None)), Shift::InProgress, "{status}");
        }
        assert_eq!(
            outcome(&seen("Succeeded", None)),
            Shift::Succeeded {
                version: "8".into()
            }
        );
        assert_eq!(
            outcome(&seen("Stopped", Some("ALARM_ACTIVE"))),
            Shift::RolledBackByAlarm {
                message: "the deployment failed: ALARM_ACTIVE".into()
            }
        );
        assert_eq!(
            outcome(&seen("Failed", Some("HOOK_EXECUTION_FAILURE"))),
            Shift::RolledBackByProbe {
                message: "the deployment failed: HOOK_EXECUTION_FAILURE".into()
            }
        );
        for code in ["TIMEOUT", "IAM_ROLE_PERMISSIONS", "MANUAL_STOP"] {
            assert!(matches!(
                outcome(&seen("Failed", Some(code))),
                Shift::Failed { .. }
            ));
        }
        let mut bare = seen("Stopped", None);
        bare.error_message = None;
        assert_eq!(
            outcome(&bare),
            Shift::Failed {
                message: "deployment d-ABC123 is Stopped".into()
            }
        );
    }

    #[test]
    fn progress_names_the_traffic_and_the_next_step() {
        let shifting = seen("InProgress", None);
        assert_eq!(
            progress_line(&shifting, Traffic::Linear),
            "deployment d-ABC123: version 8 has 10% of the traffic, version 7 the rest (linear, \
             10% a minute); next: 30% in 55s"
        );
        assert_eq!(
            progress_line(&shifting, Traffic::Canary),
            "deployment d-ABC123: version 8 has 10% of the traffic, version 7 the rest (canary, \
             10% for 5 minutes); next: 100% in 235s"
        );
        let mut gating = shifting.clone();
        gating.shifting_for = None;
        assert_eq!(
            progress_line(&gating, Traffic::Canary),
            "deployment d-ABC123: the pre-traffic gate is probing version 8; version 7 has all \
             the traffic"
        );
    }
}
