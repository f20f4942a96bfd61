"""How a new Lambda version gets traffic in the emulator, as AWS documents it: CodeDeploy and
CloudWatch alarms, imported by `emulator.py` (its docstring says what the whole emulator does).

- CloudFormation makes `AWS::CodeDeploy::Application`, `AWS::CodeDeploy::DeploymentGroup` and
  `AWS::CloudWatch::Alarm` (moto makes none of them from a template).
- An alias whose `UpdatePolicy` is `CodeDeployLambdaAliasUpdate` is not moved by the stack update:
  the update starts a CodeDeploy deployment and waits for it, as CloudFormation does. The
  deployment runs on a thread of its own: it invokes the `BeforeAllowTrafficHook` (the function's
  code really runs) and waits for its `PutLifecycleEventHookExecutionStatus`, shifts the alias's
  routing weights as the deployment configuration says (canary, linear, all at once), watches the
  group's alarms all the while, invokes the `AfterAllowTrafficHook`, and ends `Succeeded`. A failed
  or silent hook ends it `Failed` (`HOOK_EXECUTION_FAILURE`), an alarm in `ALARM` ends it `Stopped`
  (`ALARM_ACTIVE`); either way the alias goes back to the version it had, and the stack update
  fails and is rolled back (`UPDATE_ROLLBACK_COMPLETE`).
- `GetDeployment`, `ListDeployments` (newest first), `ListDeploymentTargets` and
  `BatchGetDeploymentTargets` answer with the status, error, lifecycle events and the Lambda
  target's versions and weight, as deploy's follower reads them.
- Alarms are evaluated on the metrics put to the emulator's CloudWatch (the release tool's local
  runtime puts Lambda's and API Gateway's): whenever data arrives, when alarms are described and
  while a deployment watches them. `SetAlarmState` holds for one period, as it does in AWS until
  the next evaluation.

Time: `EMULATOR_TIME_COMPRESSION` (default 1) makes a deployment's minutes pass that many times
faster: its steps, the hooks' hour to answer, and the times its lifecycle events report (a start
five real seconds ago is reported five minutes ago at 60). Alarm periods are not compressed:
metrics carry real timestamps. Without a runner for Lambda's code (`EMULATOR_LAMBDA_RUNNER`),
nothing can run a hook, and an alias moves at once, as it did before.
"""

import json
import os
import random
import re
import string
import threading
import time
from datetime import datetime, timezone

from moto.awslambda import models as awslambda
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.cloudwatch import models as cloudwatch
from moto.codedeploy import models as codedeploy
from moto.codedeploy import responses as codedeploy_responses
from moto.core.common_models import CloudFormationModel
from moto.core.exceptions import JsonRESTError

COMPRESSION = float(os.environ.get("EMULATOR_TIME_COMPRESSION", "1"))
RUNNER = os.environ.get("EMULATOR_LAMBDA_RUNNER")

# How long a hook has to report its verdict, in the deployment's (compressed) seconds.
HOOK_TIMEOUT = 3600
# How often a waiting deployment looks at its alarms and hooks, in real seconds.
TICK = 0.1

# Deployments a stack update started and has yet to hand to their thread: filled while a change
# set executes (under the emulator's lock), taken by `emulator.py` once it has.
_pending = []
_state = threading.local()

# The verdicts hooks reported, by (deployment, hook execution).
HOOK_STATUSES = {}


def rolling_back():
    """While CloudFormation rolls a failed update back: aliases move at once and versions that
    exist are reused (the rollback restores the resources it had, it starts no deployment)."""

    class _Rolling:
        def __enter__(self):
            _state.rolling_back = True

        def __exit__(self, *exc):
            _state.rolling_back = False

    return _Rolling()


def _is_rolling_back():
    return getattr(_state, "rolling_back", False)


def take_pending():
    taken = list(_pending)
    _pending.clear()
    return taken


# --- CloudFormation's resources -------------------------------------------------------------


def remade_on_update(model):
    """A resource model whose update makes it again from its new properties (creating takes over
    the existing resource, which is an update). A decorator, not a base class: moto finds models
    among CloudFormationModel's direct subclasses only."""

    def update(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    ):
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    model.update_from_cloudformation_json = classmethod(update)
    return model


@remade_on_update
class _Application(CloudFormationModel):
    __module__ = "moto.codedeploy.emulator"

    def __init__(self, name):
        self.name = name

    @staticmethod
    def cloudformation_type():
        return "AWS::CodeDeploy::Application"

    @property
    def physical_resource_id(self):
        return self.name

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        properties = cloudformation_json["Properties"]
        name = properties.get("ApplicationName") or resource_name
        backend = codedeploy.codedeploy_backends[account_id][region_name]
        if name not in backend.applications:
            backend.create_application(name, properties.get("ComputePlatform", "Server"), [])
        return cls(name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name
    ):
        backend = codedeploy.codedeploy_backends[account_id][region_name]
        name = cloudformation_json["Properties"].get("ApplicationName") or resource_name
        backend.applications.pop(name, None)
        backend.deployment_groups.pop(name, None)


@remade_on_update
class _DeploymentGroup(CloudFormationModel):
    __module__ = "moto.codedeploy.emulator"

    def __init__(self, group):
        self.group = group

    @staticmethod
    def cloudformation_type():
        return "AWS::CodeDeploy::DeploymentGroup"

    @property
    def physical_resource_id(self):
        return self.group.deployment_group_name

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        properties = cloudformation_json["Properties"]
        backend = codedeploy.codedeploy_backends[account_id][region_name]
        application = properties["ApplicationName"]
        name = properties.get("DeploymentGroupName") or resource_name
        backend.deployment_groups.get(application, {}).pop(name, None)
        alarms = properties.get("AlarmConfiguration") or {}
        backend.create_deployment_group(
            application,
            name,
            properties.get("DeploymentConfigName"),
            None,
            None,
            None,
            properties.get("ServiceRoleArn", ""),
            alarm_configuration=codedeploy.AlarmConfiguration(
                alarms=[{"name": a["Name"]} for a in alarms.get("Alarms", [])],
                enabled=str(alarms.get("Enabled", False)).lower() == "true",
                ignore_poll_alarm_failure=False,
            ),
            auto_rollback_configuration=properties.get("AutoRollbackConfiguration"),
            deployment_style=properties.get("DeploymentStyle"),
        )
        return cls(backend.deployment_groups[application][name])

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name
    ):
        properties = cloudformation_json["Properties"]
        backend = codedeploy.codedeploy_backends[account_id][region_name]
        name = properties.get("DeploymentGroupName") or resource_name
        backend.deployment_groups.get(properties["ApplicationName"], {}).pop(name, None)


@remade_on_update
class _Alarm(CloudFormationModel):
    __module__ = "moto.cloudwatch.emulator"

    def __init__(self, alarm):
        self.alarm = alarm

    @staticmethod
    def cloudformation_type():
        return "AWS::CloudWatch::Alarm"

    @property
    def physical_resource_id(self):
        return self.alarm.name

    @classmethod
    def has_cfn_attr(cls, attr):
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name):
        if attribute_name == "Arn":
            return self.alarm.alarm_arn
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        p = cloudformation_json["Properties"]
        backend = cloudwatch.cloudwatch_backends[account_id][region_name]
        alarm = backend.put_metric_alarm(
            name=p.get("AlarmName") or resource_name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            period=int(p.get("Period", 60)),
            threshold=float(p["Threshold"]),
            statistic=p.get("Statistic"),
            extended_statistic=p.get("ExtendedStatistic"),
            description=p.get("AlarmDescription", ""),
            dimensions=p.get("Dimensions", []),
            alarm_actions=p.get("AlarmActions", []),
            datapoints_to_alarm=int(p["DatapointsToAlarm"]) if "DatapointsToAlarm" in p else None,
            treat_missing_data=p.get("TreatMissingData"),
        )
        return cls(alarm)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name
    ):
        backend = cloudwatch.cloudwatch_backends[account_id][region_name]
        name = cloudformation_json["Properties"].get("AlarmName") or resource_name
        backend.alarms.pop(name, None)


# --- Alarms, evaluated on the metrics ---------------------------------------------------------


def _seconds(timestamp):
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if isinstance(timestamp, (int, float)):
        return float(timestamp)
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=timezone.utc)
    return timestamp.timestamp()


def _statistic(points, name):
    values, total, count, low, high = [], 0.0, 0.0, None, None
    for point in points:
        if isinstance(point, cloudwatch.MetricAggregatedDatum):
            total, count = total + point.sum, count + point.sample_count
            low = point.min if low is None else min(low, point.min)
            high = point.max if high is None else max(high, point.max)
        else:
            values.append(point.value)
            total, count = total + point.value, count + 1
            low = point.value if low is None else min(low, point.value)
            high = point.value if high is None else max(high, point.value)
    if name and name.startswith("p") and values:
        ordered = sorted(values)
        rank = max(0, min(len(ordered) - 1, int(len(ordered) * float(name[1:]) / 100 + 0.5) - 1))
        return ordered[rank]
    return {
        "Sum": total,
        "SampleCount": count,
        "Average": total / count if count else 0.0,
        "Minimum": low,
        "Maximum": high,
    }.get(name, total)


_BREACHES = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def evaluate(backend, alarm, now=None):
    """Sets `alarm`'s state from its metric's datapoints in its last evaluation periods (trailing
    windows ending now; AWS evaluates once a minute, on whole periods)."""
    now = now or time.time()
    if getattr(alarm, "_forced_until", 0) > now or not alarm.metric_name:
        return
    period, periods = int(alarm.period or 60), int(alarm.evaluation_periods or 1)
    needed = int(alarm.datapoints_to_alarm or periods)
    dimensions = sorted((d.name, d.value) for d in alarm.dimensions)
    points = [
        (p, _seconds(p.timestamp))
        for p in backend.metric_data
        if p.namespace == alarm.namespace
        and p.name == alarm.metric_name
        and sorted((d.name, d.value) for d in p.dimensions) == dimensions
    ]
    breaching, shown = 0, []
    for k in range(periods):
        window = [p for p, at in points if now - (k + 1) * period <= at < now - k * period]
        if not window:
            breaching += alarm.treat_missing_data == "breaching"
            continue
        value = _statistic(window, alarm.extended_statistic or alarm.statistic)
        shown.append(value)
        breaching += _BREACHES[alarm.comparison_operator](value, alarm.threshold)
    state = "ALARM" if breaching >= needed else "OK"
    if state != alarm.state_value:
        values = ", ".join(f"{v:g}" for v in shown) or "no datapoints"
        alarm.update_state(
            f"Threshold Crossed: {breaching} of the last {periods} period(s) of {period}s "
            f"breached ({values}; {alarm.comparison_operator} {alarm.threshold:g})",
            json.dumps({"version": "1.0", "recentDatapoints": shown}),
            state,
        )


def _evaluating(method):
    def evaluated(self, *args, **kwargs):
        now = time.time()
        for alarm in list(self.alarms.values()):
            evaluate(self, alarm, now)
        return method(self, *args, **kwargs)

    return evaluated


for _name in (
    "describe_alarms",
    "get_alarms_by_action_prefix",
    "get_alarms_by_alarm_name_prefix",
    "get_alarms_by_alarm_names",
    "get_alarms_by_state_value",
):
    _method = getattr(cloudwatch.CloudWatchBackend, _name)
    setattr(cloudwatch.CloudWatchBackend, _name, _evaluating(_method))

_put_metric_data = cloudwatch.CloudWatchBackend.put_metric_data


def _put_then_evaluate(self, namespace, metric_data):
    _put_metric_data(self, namespace, metric_data)
    now = time.time()
    for alarm in list(self.alarms.values()):
        evaluate(self, alarm, now)


cloudwatch.CloudWatchBackend.put_metric_data = _put_then_evaluate

_set_alarm_state = cloudwatch.CloudWatchBackend.set_alarm_state


def _set_alarm_state_for_a_period(self, alarm_name, reason, reason_data, state_value):
    _set_alarm_state(self, alarm_name, reason, reason_data, state_value)
    alarm = self.alarms[alarm_name]
    alarm._forced_until = time.time() + int(alarm.period or 60)


cloudwatch.CloudWatchBackend.set_alarm_state = _set_alarm_state_for_a_period


# --- The alias update, handed to CodeDeploy -------------------------------------------------


def moves_by_deployment(cloudformation_json, alias, version):
    """Whether this alias update is CodeDeploy's to make: the resource says so, the alias exists
    and goes to another version, and a hook can run. It is then recorded to start once the
    change set has executed, and the alias stays where it is."""
    policy = (cloudformation_json.get("UpdatePolicy") or {}).get("CodeDeployLambdaAliasUpdate")
    if not policy or not RUNNER or _is_rolling_back() or alias is None:
        return False
    if str(alias.function_version) == str(version):
        return False
    _pending.append(
        {
            "application": policy["ApplicationName"],
            "group": policy["DeploymentGroupName"],
            "before": policy.get("BeforeAllowTrafficHook"),
            "after": policy.get("AfterAllowTrafficHook"),
            "function": cloudformation_json["Properties"]["FunctionName"],
            "alias": alias.name,
            "current": str(alias.function_version),
            "target": str(version),
            "account": alias.arn.split(":")[4],
            "region": alias.arn.split(":")[3],
        }
    )
    return True


def reuse_version(backend, function_name, properties):
    """While a rollback restores a version resource: the version already published with this code
    and description (the newest such, which the update replaced), as CloudFormation keeps the
    old physical resource; None if there is none."""
    if not _is_rolling_back():
        return None
    for version in reversed(backend._lambdas._functions[function_name]["versions"]):
        if version.code_sha_256 == properties.get("CodeSha256") and version.description == (
            properties.get("Description", "")
        ):
            return version
    return None


def _steps(configuration):
    """(weight, at) pairs, in the deployment's seconds, for a predefined Lambda configuration."""
    name = str(configuration).removeprefix("CodeDeployDefault.")
    canary = re.fullmatch(r"LambdaCanary(\d+)Percent(\d+)Minutes?", name)
    if canary:
        return [(int(canary[1]) / 100, 0), (1.0, int(canary[2]) * 60)]
    linear = re.fullmatch(r"LambdaLinear(\d+)PercentEvery(\d+)Minutes?", name)
    if linear:
        percent, minutes = int(linear[1]), int(linear[2])
        steps = [(p / 100, i * minutes * 60) for i, p in enumerate(range(percent, 100, percent))]
        return steps + [(1.0, len(steps) * minutes * 60)]
    return [(1.0, 0)]


class _Deployment:
    """One Lambda deployment: moto's `DeploymentInfo` with what the Lambda target adds."""

    def __init__(self, spec, lock, on_end):
        self.spec, self.lock, self.on_end = spec, lock, on_end
        self.backend = codedeploy.codedeploy_backends[spec["account"]][spec["region"]]
        self.lambdas = awslambda.lambda_backends[spec["account"]][spec["region"]]
        created = self.backend.create_deployment(
            spec["application"],
            spec["group"],
            {"revisionType": "AppSpecContent", "appSpecContent": {"content": self._appspec()}},
        )
        info = self.backend.deployments.pop(created)
        info.deployment_id = "d-" + "".join(
            random.choices(string.ascii_uppercase + string.digits, k=9)
        )
        info.creator = "CloudFormation"
        info.error_information = {}
        info.lambda_target = self
        self.backend.deployments[info.deployment_id] = info
        self.info = info
        self.group = self.backend.deployment_groups[spec["application"]][spec["group"]]
        self.weight = 0.0
        self.events = [
            {"name": name, "status": "Pending", "start": None, "end": None}
            for name in ("BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic")
        ]
        self.updated = time.time()

    def _appspec(self):
        s = self.spec
        hooks = [
            {event: s[key]}
            for event, key in (("BeforeAllowTraffic", "before"), ("AfterAllowTraffic", "after"))
            if s[key]
        ]
        return json.dumps(
            {
                "version": 0.0,
                "Resources": [
                    {
                        s["function"]: {
                            "Type": "AWS::Lambda::Function",
                            "Properties": {
                                "Name": s["function"],
                                "Alias": s["alias"],
                                "CurrentVersion": s["current"],
                                "TargetVersion": s["target"],
                            },
                        }
                    }
                ],
                "Hooks": hooks,
            }
        )

    def reported(self, real):
        """A lifecycle event's time as the API reports it, on the deployment's compressed clock."""
        now = time.time()
        return now - (now - real) * COMPRESSION

    def _event(self, name):
        return next(e for e in self.events if e["name"] == name)

    def _mark(self, name, status):
        event = self._event(name)
        if status == "InProgress":
            event["start"] = time.time()
        else:
            event["end"] = time.time()
        event["status"] = status
        self.updated = time.time()

    def _elapsed(self, since):
        return (time.time() - since) * COMPRESSION

    def _alarm_firing(self):
        """The names of the group's alarms in ALARM (evaluated now), when it watches them."""
        configuration = self.group.alarm_configuration
        if not configuration or not configuration.enabled:
            return []
        watch = cloudwatch.cloudwatch_backends[self.spec["account"]][self.spec["region"]]
        firing = []
        for entry in configuration.alarms:
            alarm = watch.alarms.get(entry["name"])
            if alarm is None:
                continue
            evaluate(watch, alarm)
            if alarm.state_value == "ALARM":
                firing.append(alarm.name)
        return firing

    def _route(self, weight):
        s = self.spec
        if weight >= 1.0:
            self.lambdas.update_alias(s["alias"], s["function"], s["target"], None, {})
        elif weight <= 0.0:
            self.lambdas.update_alias(s["alias"], s["function"], s["current"], None, {})
        else:
            self.lambdas.update_alias(
                s["alias"],
                s["function"],
                s["current"],
                None,
                {"AdditionalVersionWeights": {s["target"]: weight}},
            )
        self.weight = max(0.0, min(1.0, weight))
        self.updated = time.time()

    def _hook(self, name, function):
        """Invokes the hook function and waits for its verdict: None when it reported Succeeded,
        else the failure, as (code, message)."""
        with self.lock:
            self._mark(name, "InProgress")
        execution = "".join(random.choices(string.ascii_letters + string.digits, k=40))
        event = json.dumps(
            {"DeploymentId": self.info.deployment_id, "LifecycleEventHookExecutionId": execution}
        )
        try:
            # CodeDeploy invokes the hook asynchronously; its verdict is what it reports.
            self.lambdas.invoke(function, None, event, {}, {})
        except Exception as error:
            print(f"CodeDeploy could not invoke {function}: {error}", flush=True)
        since = time.time()
        while self._elapsed(since) < HOOK_TIMEOUT:
            status = HOOK_STATUSES.get((self.info.deployment_id, execution))
            if status is not None:
                with self.lock:
                    self._mark(name, status)
                if status == "Succeeded":
                    return None
                return (
                    "HOOK_EXECUTION_FAILURE",
                    f"The {name} lifecycle event hook {function} reported Failed.",
                )
            time.sleep(TICK)
        with self.lock:
            self._mark(name, "Failed")
        return (
            "HOOK_EXECUTION_FAILURE",
            f"The {name} lifecycle event hook {function} did not report its status within an "
            "hour (PutLifecycleEventHookExecutionStatus).",
        )

    def run(self):
        outcome = None
        try:
            outcome = self._shift()
        except Exception as error:
            outcome = ("INTERNAL_ERROR", f"the emulator's CodeDeploy failed: {error}")
        with self.lock:
            info = self.info
            info.complete_time = codedeploy.utcnow()
            if outcome is None:
                info.status = "Succeeded"
            else:
                code, message = outcome
                if self.weight > 0.0:
                    self._route(0.0)
                self.weight = 0.0
                info.status = "Stopped" if code == "ALARM_ACTIVE" else "Failed"
                info.error_information = {"code": code, "message": message}
                for event in self.events:
                    if event["status"] in ("Pending", "InProgress"):
                        event["status"] = "Skipped" if event["status"] == "Pending" else "Failed"
                print(f"CodeDeploy {info.deployment_id}: {info.status}: {message}", flush=True)
            self.updated = time.time()
            self.on_end(outcome and (self.spec, info.deployment_id, *outcome))

    def _stopped_by_alarm(self):
        firing = self._alarm_firing()
        if not firing:
            return None
        return (
            "ALARM_ACTIVE",
            "One or more alarms have been activated according to the Amazon CloudWatch metrics "
            "you selected, and the affected deployments have been stopped. Activated alarms: "
            + ", ".join(f"<{name}>" for name in firing),
        )

    def _shift(self):
        s = self.spec
        with self.lock:
            self.info.status = "InProgress"
            self.info.start_time = codedeploy.utcnow()
            stopped = self._stopped_by_alarm()
        if stopped:
            return stopped
        failed = s["before"] and self._hook("BeforeAllowTraffic", s["before"])
        if failed:
            return failed
        with self.lock:
            self._mark("AllowTraffic", "InProgress")
        since = time.time()
        for weight, at in _steps(self.info.deployment_config_name):
            while self._elapsed(since) < at:
                with self.lock:
                    stopped = self._stopped_by_alarm()
                if stopped:
                    return stopped
                time.sleep(TICK)
            with self.lock:
                stopped = self._stopped_by_alarm()
                if stopped:
                    return stopped
                self._route(weight)
        with self.lock:
            self._mark("AllowTraffic", "Succeeded")
        failed = s["after"] and self._hook("AfterAllowTraffic", s["after"])
        if failed:
            return failed
        with self.lock:
            self._event("AfterAllowTraffic")["status"] = (
                "Succeeded" if s["after"] else "Skipped"
            )
            if not s["before"]:
                self._event("BeforeAllowTraffic")["status"] = "Skipped"
        return None


def start(specs, lock, on_end):
    """Starts a deployment for each of `specs` (under `lock`, which the caller holds), each on a
    thread of its own; once all have ended, calls `on_end` under the lock with None when every one
    succeeded, else the first failure as (its spec, deployment id, code, message)."""
    remaining, failures = [len(specs)], []

    def ended(outcome):
        if outcome is not None:
            failures.append(outcome)
        remaining[0] -= 1
        if remaining[0] == 0:
            on_end(failures[0] if failures else None)

    for spec in specs:
        threading.Thread(target=_Deployment(spec, lock, ended).run, daemon=True).start()


# --- CodeDeploy's API, as the follower reads it ---------------------------------------------

_deployment_info = codedeploy_responses._deployment_info


def _deployment_info_with_its_error(deployment):
    info = _deployment_info(deployment)
    info["errorInformation"] = getattr(deployment, "error_information", {}) or {}
    info["deploymentStyle"] = info.get("deploymentStyle") or {
        "deploymentType": "BLUE_GREEN",
        "deploymentOption": "WITH_TRAFFIC_CONTROL",
    }
    return info


codedeploy_responses._deployment_info = _deployment_info_with_its_error

_list_deployments = codedeploy.CodeDeployBackend.list_deployments


def _newest_first(self, *args, **kwargs):
    listed = _list_deployments(self, *args, **kwargs)
    return sorted(listed, key=lambda d: self.deployments[d].create_time, reverse=True)


codedeploy.CodeDeployBackend.list_deployments = _newest_first

_Response = codedeploy_responses.CodeDeployResponse


def _target(deployment):
    target = getattr(deployment, "lambda_target", None)
    if target is None:
        raise codedeploy.DeploymentDoesNotExistException(
            f"The deployment {deployment.deployment_id} has no Lambda target"
        )
    s = target.spec
    status = {"Stopped": "Failed", "Created": "Pending", "Queued": "Pending"}.get(
        deployment.status, deployment.status
    )
    return {
        "deploymentTargetType": "LambdaTarget",
        "lambdaTarget": {
            "deploymentId": deployment.deployment_id,
            "targetId": f"{s['function']}:{s['alias']}",
            "targetArn": (
                f"arn:aws:lambda:{s['region']}:{s['account']}:function:{s['function']}:{s['alias']}"
            ),
            "status": status,
            "lastUpdatedAt": target.updated,
            "lifecycleEvents": [
                {
                    "lifecycleEventName": e["name"],
                    "status": e["status"],
                    **({"startTime": target.reported(e["start"])} if e["start"] else {}),
                    **({"endTime": target.reported(e["end"])} if e["end"] else {}),
                }
                for e in target.events
            ],
            "lambdaFunctionInfo": {
                "functionName": s["function"],
                "functionAlias": s["alias"],
                "currentVersion": s["current"],
                "targetVersion": s["target"],
                "targetVersionWeight": target.weight,
            },
        },
    }


def _deployment(self):
    params = json.loads(self.body or "{}")
    deployment = self.codedeploy_backend.deployments.get(params.get("deploymentId"))
    if deployment is None:
        raise codedeploy.DeploymentDoesNotExistException(
            f"The deployment {params.get('deploymentId')} could not be found"
        )
    return deployment, params


def _list_deployment_targets(self):
    deployment, _ = _deployment(self)
    target = getattr(deployment, "lambda_target", None)
    ids = [f"{target.spec['function']}:{target.spec['alias']}"] if target else []
    return json.dumps({"targetIds": ids})


def _batch_get_deployment_targets(self):
    deployment, params = _deployment(self)
    wanted = params.get("targetIds") or []
    targets = [_target(deployment)] if getattr(deployment, "lambda_target", None) else []
    targets = [t for t in targets if not wanted or t["lambdaTarget"]["targetId"] in wanted]
    return json.dumps({"deploymentTargets": targets})


def _put_lifecycle_event_hook_execution_status(self):
    params = json.loads(self.body or "{}")
    hook = params.get("lifecycleEventHookExecutionId")
    if params.get("status") not in ("Succeeded", "Failed"):
        raise JsonRESTError("ValidationException", "status must be Succeeded or Failed")
    HOOK_STATUSES[(params.get("deploymentId"), hook)] = params["status"]
    return json.dumps({"lifecycleEventHookExecutionId": hook})


_Response.list_deployment_targets = _list_deployment_targets
_Response.batch_get_deployment_targets = _batch_get_deployment_targets
_Response.put_lifecycle_event_hook_execution_status = _put_lifecycle_event_hook_execution_status


# --- CloudWatch's Smithy RPC v2 CBOR protocol -----------------------------------------------
# The AWS SDKs of 2026 speak it to CloudWatch (`POST /service/GraniteServiceVersion20100801/
# operation/<Operation>`, CBOR bodies, RFC 8949); moto knows only the query protocol. The release
# tool's local runtime puts its metrics that way, and tests set alarm states, so PutMetricData and
# SetAlarmState are answered here.

_CBOR_PATH = re.compile(r"^/service/GraniteServiceVersion20100801/operation/(\w+)$")


def _cbor_decode(data, at=0):
    """The item at `at`, and where the next begins."""
    first = data[at]
    major, info = first >> 5, first & 31
    at += 1
    if major == 7:
        if info == 20:
            return False, at
        if info == 21:
            return True, at
        if info in (22, 23):
            return None, at
        size = {25: 2, 26: 4, 27: 8}[info]
        raw = data[at : at + size]
        if size == 2:
            half = int.from_bytes(raw, "big")
            exponent, mantissa = (half >> 10) & 31, half & 1023
            value = (
                mantissa * 2**-24
                if exponent == 0
                else float("inf") if exponent == 31 else (1024 + mantissa) * 2 ** (exponent - 25)
            )
            return (-value if half & 0x8000 else value), at + 2
        import struct

        return struct.unpack(">f" if size == 4 else ">d", raw)[0], at + size
    if info < 24:
        argument = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        argument, at = int.from_bytes(data[at : at + size], "big"), at + size
    elif info == 31:
        argument = None
    else:
        raise ValueError(f"malformed CBOR at byte {at - 1}")
    if major == 0:
        return argument, at
    if major == 1:
        return -1 - argument, at
    if major in (2, 3):
        if argument is None:
            chunks = []
            while data[at] != 0xFF:
                chunk, at = _cbor_decode(data, at)
                chunks.append(chunk)
            joined = (b"" if major == 2 else "").join(chunks)
            return joined, at + 1
        raw = data[at : at + argument]
        return (bytes(raw) if major == 2 else raw.decode("utf-8")), at + argument
    if major == 4:
        items = []
        while data[at] != 0xFF if argument is None else len(items) < argument:
            item, at = _cbor_decode(data, at)
            items.append(item)
        return items, at + (1 if argument is None else 0)
    if major == 5:
        result, count = {}, 0
        while data[at] != 0xFF if argument is None else count < argument:
            key, at = _cbor_decode(data, at)
            result[key], at = _cbor_decode(data, at)
            count += 1
        return result, at + (1 if argument is None else 0)
    # A tag: 1 is a timestamp (epoch seconds), which stays a number.
    return _cbor_decode(data, at)


def _cbor_encode(value):
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        raise ValueError("too large")

    if isinstance(value, str):
        raw = value.encode("utf-8")
        return head(3, len(raw)) + raw
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(
            _cbor_encode(k) + _cbor_encode(v) for k, v in value.items()
        )
    raise ValueError(f"cannot encode {type(value).__name__}")


def cbor_request(environ, start_response):
    """Answers a CloudWatch request in the RPC v2 CBOR protocol, or None when it is not one."""
    found = _CBOR_PATH.match(environ.get("PATH_INFO", ""))
    if not found:
        return None
    from moto.iam.models import get_account_id_from

    headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]

    def answer(status, body):
        start_response(status, headers)
        return [_cbor_encode(body)]

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    try:
        scope = authorization.split("Credential=", 1)[1].split(",")[0].split("/")
        account, region = get_account_id_from(scope[0]), scope[2]
        request, _ = _cbor_decode(body, 0) if body else ({}, 0)
    except Exception as error:
        return answer("400 Bad Request", {"__type": "InvalidParameterInput", "message": str(error)})
    backend = cloudwatch.cloudwatch_backends[account][region]
    if found[1] == "SetAlarmState":
        try:
            backend.set_alarm_state(
                request["AlarmName"],
                request.get("StateReason", ""),
                request.get("StateReasonData"),
                request["StateValue"],
            )
        except Exception as error:
            return answer("400 Bad Request", {"__type": "ResourceNotFound", "message": str(error)})
        return answer("200 OK", {})
    if found[1] != "PutMetricData":
        return answer(
            "400 Bad Request",
            {"__type": "UnknownOperationException", "message": f"{found[1]} is not modelled here"},
        )
    data = []
    for datum in request.get("MetricData", []):
        entry = {k: v for k, v in datum.items() if k != "Timestamp"}
        if "Timestamp" in datum:
            at = datetime.fromtimestamp(datum["Timestamp"], timezone.utc)
            entry["Timestamp"] = at.replace(tzinfo=None)
        data.append(entry)
    try:
        backend.put_metric_data(request["Namespace"], data)
    except Exception as error:
        return answer("400 Bad Request", {"__type": "InvalidParameterValue", "message": str(error)})
    return answer("200 OK", {})
