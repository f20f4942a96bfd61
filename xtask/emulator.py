"""The AWS emulator (moto's server), handling one request at a time.

DynamoDB applies a conditional write atomically, and S3 applies `If-None-Match: *` atomically.
moto's server answers requests on parallel threads without a lock, so two conditional writes to
one item can both pass their check before either writes. Serialising requests gives the emulator
the atomicity the real services have, which the concurrency tests (session statuses, the deploy
lock) rely on. Arguments are moto_server's (-H HOST -p PORT).

It also pages the lists AWS pages and moto returns whole: a stack's resources and its events
come `EMULATOR_PAGE_SIZE` at a time (default 100) with a NextToken, so the release tool's
paginators are exercised; a test sets the size to 1.

And it leaves alone, on a stack update, a resource whose `Condition` is false, as CloudFormation
does: moto tries to update such a resource although it never created it, and fails the update.

It updates, on a stack update, the resources that depend on an updated one (by `Ref`,
`Fn::GetAtt` or `Fn::Sub`), after it, as CloudFormation does: moto updates only resources whose
own text or parameters changed, in template order, so a function's new code could be published
as a version before the function had it, and an alias would keep its old version.

And it gives CloudFormation's `AWS::Lambda::Version` and `AWS::Lambda::Alias` what Lambda
does with them: a version is published only when the function's code has the version's
`CodeSha256`, is replaced (published anew) when its properties change, and answers `Ref` and
`Fn::GetAtt ... Version`; an alias is created, moved to its new version on update (by a
CodeDeploy deployment when its `UpdatePolicy` says so: `emulator_traffic.py`), and answers `Ref`
with its ARN. moto accepts both types without that.

And it gives a stack made through a change set what CloudFormation gives every stack: its outputs
and exports, evaluated after each executed change set, and the region's exports for its
`Fn::ImportValue`s. moto builds a change set's stack from an empty template and no exports, and
never evaluates its outputs again.

A change set whose execution fails is rolled back as CloudFormation rolls it back (the failed
resource and the stack's events say why; a create ends ROLLBACK_COMPLETE, an update
UPDATE_ROLLBACK_COMPLETE), and a deleted stack's resources stay deleted: moto answers the
execution with the resource's own error, leaves the stack half made, and makes a deleted stack's
resources again when they are listed. `DeletionPolicy: RetainExceptOnCreate` is honoured (moto
knows only `Retain`).

It turns on a bucket's versioning when its `VersioningConfiguration` says so, as CloudFormation
does (moto ignores it, and every object's version is then "null").

It reads a template URL that names a version (`?versionId=`) at that version, as S3 serves such
a URL, and drops the items `!Ref AWS::NoValue` leaves in a list, as CloudFormation does: moto
reads the newest version whatever the URL says, and keeps those items as nulls.

It models IAM as AWS evaluates it once IAM enforcement is switched on (`--as-deployer-of`): the
emulator's own credentials are the administrator, statements are judged against the resources
it knows (S3's and CloudFormation's stacks), and conditions are not evaluated (see the comments
at the code). moto alone denies every statement with a condition or a resource it does not pass.

And, for tests, it can fail as S3 does under load: while the file `EMULATOR_FAULTS` names exists,
a request whose path starts with one of its lines is answered `503 SlowDown` (what S3 answers
when it throttles), so that a test can show the release tool riding out a passing fault.

Used by scripts/test and by `cargo xtask deploy --local`.
"""

import base64
import json
import os
import random as _random
import re
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

from moto.awslambda import models as awslambda
from moto.cloudwatch.models import cloudwatch_backends
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException, ValidationError
from moto.core.common_models import CloudFormationModel
from moto import server
from moto.cloudformation import models as cloudformation_models
from moto.cloudformation import parsing
from moto.cloudformation import responses as cloudformation_responses
from moto.cloudformation import utils as cloudformation_utils
from moto.cloudformation.responses import CloudFormationResponse
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.core.responses import ActionResult
from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase, PermissionResult
from moto.iam.models import User as IAMUser
from moto.iam.models import iam_backends
from moto.utilities.utils import get_partition
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.s3 import responses as s3_responses
from moto.s3.models import FakeBucket, s3_backends

# CodeDeploy and CloudWatch alarms live beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emulator_traffic as traffic  # noqa: E402

# Re-entrant: the emulator's own work (a deployment invoking a hook) may call into itself.
_one_at_a_time = threading.RLock()
_dispatch = DomainDispatcherApplication.__call__


_FAULTS = os.environ.get("EMULATOR_FAULTS")
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def _failing(path):
    """Whether the test's fault file, while it exists, says `path` fails for now."""
    if not _FAULTS or not os.path.exists(_FAULTS):
        return False
    with open(_FAULTS) as faults:
        return any(path.startswith(line.strip()) for line in faults if line.strip())


# A Lambda Invoke that runs code is not serialised: the function calls the emulator back (its
# tables, its secrets) while the invocation waits for it.
_INVOCATION = re.compile(r"^/2015-03-31/functions/[^/]+/invocations$")


def _serialised(self, environ, start_response):
    if _failing(environ.get("PATH_INFO", "")):
        start_response("503 Slow Down", [("Content-Type", "application/xml")])
        return [_SLOW_DOWN]
    if _RUNNER and _INVOCATION.match(environ.get("PATH_INFO", "")):
        return list(_dispatch(self, environ, start_response))
    with _one_at_a_time:
        answered = traffic.cbor_request(environ, start_response)
        if answered is not None:
            return answered
        # The whole body is produced under the lock, not just the first chunk.
        return list(_dispatch(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serialised

_PAGE_SIZE = int(os.environ.get("EMULATOR_PAGE_SIZE", "100"))


def _paged(respond, key):
    def paged(self):
        items = list(respond(self).result[key])
        start = int(self._get_param("NextToken") or 0)
        end = start + _PAGE_SIZE
        return ActionResult(
            {key: items[start:end], "NextToken": str(end) if end < len(items) else None}
        )

    return paged


CloudFormationResponse.list_stack_resources = _paged(
    CloudFormationResponse.list_stack_resources, "StackResourceSummaries"
)
CloudFormationResponse.describe_stack_events = _paged(
    CloudFormationResponse.describe_stack_events, "StackEvents"
)

# A template URL that names a version (`?versionId=`) is read at that version, as S3 serves it;
# moto drops the query and reads the newest, which would hide a replaced template.
def _stack_from_s3_url_at_version(template_url, account_id, partition):
    version = parse_qs(urlparse(template_url).query).get("versionId", [None])[0]
    if version is None:
        return _stack_from_s3_url(template_url, account_id, partition)
    path = urlparse(template_url).path.lstrip("/")
    bucket, key = path.split("/", 1)
    found = s3_backends[account_id][partition].get_object(bucket, key, version_id=version)
    return found.value.decode("utf-8")


_stack_from_s3_url = cloudformation_utils.get_stack_from_s3_url
cloudformation_models.get_stack_from_s3_url = _stack_from_s3_url_at_version
cloudformation_responses.get_stack_from_s3_url = _stack_from_s3_url_at_version


# A nested stack is updated in place, as CloudFormation updates it: moto deletes it and creates
# a new one on every update, which deleted (and re-created) every resource in it, an alias too.
def _update_nested_in_place(
    cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
):
    properties = cloudformation_json["Properties"]
    template = _stack_from_s3_url_at_version(
        properties["TemplateURL"], account_id=account_id, partition=get_partition(region_name)
    )
    original_resource.update(template, parameters=properties.get("Parameters", {}))
    return original_resource


cloudformation_models.Stack.update_from_cloudformation_json = classmethod(_update_nested_in_place)

# A bucket's `VersioningConfiguration` turns versioning on, as CloudFormation does; moto ignores
# it, so every object would have the version "null" and nothing pinned to a version is shown.
def _versioned(method):
    def apply(cls, *args, **kwargs):
        bucket = method.__func__(cls, *args, **kwargs)
        cloudformation_json = args[2] if method.__name__.startswith("update") else args[1]
        status = (
            cloudformation_json.get("Properties", {})
            .get("VersioningConfiguration", {})
            .get("Status")
        )
        if status:
            bucket.versioning_status = status
        return bucket

    return classmethod(apply)


FakeBucket.create_from_cloudformation_json = _versioned(FakeBucket.create_from_cloudformation_json)
FakeBucket.update_from_cloudformation_json = _versioned(FakeBucket.update_from_cloudformation_json)

# IAM, once a request to /moto-api/reset-auth switches it on (`--as-deployer-of`):
# - The emulator's own credentials (`testing`) are the account's administrator, as the root user
#   is in AWS, and so are unsigned requests, which only the local harness makes: every local
#   command that does not act as a deployer goes on working.
# - A statement is judged as IAM judges it where the emulator knows the resource: S3's (moto
#   names bucket and key) and CloudFormation's (the stack, named here from the request's stack or
#   change set). Where it does not (moto passes "*"), an Allow applies on its actions alone and a
#   Deny only when it names every resource. Conditions are not evaluated: an Allow applies whatever
#   its condition, a conditional Deny does not. moto, by itself, denies whenever a statement has
#   a condition or names a resource it does not pass, and lets no administrator through.
_authorize = ActionAuthenticatorMixin._authenticate_and_authorize_action
_create_user = IAMUser.create_from_cloudformation_json.__func__


def _user_with_its_policies(cls, resource_name, cloudformation_json, account_id, region_name, **kw):
    # CloudFormation attaches a user's `ManagedPolicyArns`; moto makes the user without them.
    user = _create_user(cls, resource_name, cloudformation_json, account_id, region_name, **kw)
    backend = iam_backends[account_id][get_partition(region_name)]
    for arn in cloudformation_json.get("Properties", {}).get("ManagedPolicyArns", []):
        backend.attach_user_policy(arn, user.name)
    return user


IAMUser.create_from_cloudformation_json = classmethod(_user_with_its_policies)

# moto checks a signature by rebuilding the signed request from the parameters it parsed, and
# gets some encodings wrong (a URL with a query inside a form body), refusing requests AWS
# accepts. The access key still says who is asking, which is what IAM evaluates here.
IAMRequestBase.check_signature = lambda self: None
# S3 authorizes HeadBucket as s3:ListBucket; moto names it "HeadBucket", which no policy grants.
s3_responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"


def _authorize_unless_administrator(self, iam_request_cls, resource="*"):
    authorization = self.headers.get("Authorization") or ""
    if not authorization or "Credential=testing/" in authorization:
        return None
    try:
        return _authorize(self, iam_request_cls, resource)
    except AccessDeniedError as denied:
        # Said in the emulator's log, and answered as each service's protocol answers it (moto
        # sends EC2's XML to every service, which the SDKs cannot read as AccessDenied).
        message = f"{denied.message} on resource: {resource}"
        print(f"IAM denied: {message}", flush=True)
        service = authorization.split("Credential=", 1)[1].split("/")[3]
        if service in ("cloudformation", "iam", "sts"):
            denied.description = (
                '<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Error><Type>Sender</Type>'
                f"<Code>AccessDenied</Code><Message>{escape(message)}</Message></Error>"
                "<RequestId>denied</RequestId></ErrorResponse>"
            )
        elif service != "s3":
            denied.description = json.dumps({"__type": "AccessDeniedException", "message": message})
            denied.content_type = "application/json"
            denied.error_type = "AccessDeniedException"
        raise


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authorize_unless_administrator


def _statement_permits(self, action, resource="*", principal=None, incoming_condition_values=None):
    statement = self._statement
    if "NotAction" in statement:
        concerned = not self._check_element_matches("NotAction", action)
    else:
        concerned = self._check_element_matches("Action", action)
    if not concerned or "Resource" not in statement:
        return _statement_permits_as_moto(
            self, action, resource, principal, incoming_condition_values
        )
    allow = statement["Effect"] == "Allow"
    if resource == "*":
        named = statement["Resource"]
        applies = allow or "*" in (named if isinstance(named, list) else [named])
    else:
        applies = self._check_element_matches("Resource", resource)
    if not applies or (not allow and "Condition" in statement):
        return PermissionResult.NEUTRAL
    return PermissionResult.PERMITTED if allow else PermissionResult.DENIED


_statement_permits_as_moto = IAMPolicyStatement.is_action_permitted
IAMPolicyStatement.is_action_permitted = _statement_permits


def _stack_resource(self):
    backend = self.cloudformation_backend
    stack = self._get_param("StackName") or ""
    change_set = self._get_param("ChangeSetName") or ""
    if not stack.startswith("arn:") and change_set.startswith("arn:"):
        found = backend.change_sets.get(change_set)
        if found is not None:
            return found.stack_id
    if not stack or stack.startswith("arn:"):
        return stack or "*"
    for candidate in backend.stacks.values():
        if candidate.name == stack and candidate.status != "DELETE_COMPLETE":
            return candidate.stack_id
    return f"arn:aws:cloudformation:{self.region}:{self.current_account}:stack/{stack}/*"


CloudFormationResponse._determine_resource = _stack_resource

_clean_json = parsing.clean_json


def _clean_json_dropping_no_value(resource_json, resources_map):
    # `!If [Condition, X, !Ref AWS::NoValue]` inside a list removes the item in CloudFormation;
    # moto keeps it as null (a policy statement list then fails as "Syntax errors in policy").
    cleaned = _clean_json(resource_json, resources_map)
    if isinstance(resource_json, list):
        return [item for item in cleaned if item is not None]
    return cleaned


parsing.clean_json = _clean_json_dropping_no_value

_update_resource = parsing.parse_and_update_resource


def _update_unless_absent(logical_id, resource_json, resources_map, **where):
    condition = resource_json.get("Condition")
    never_created = resources_map._parsed_resources.get(logical_id) is None
    if condition and never_created and not resources_map.lazy_condition_map[condition]:
        return None
    # CloudFormation stops at the first resource that fails; moto would go on with the rest in
    # passes, half-replacing what depends on it (a nested stack whose version cannot be published).
    if _first_errors:
        raise _first_errors[0]
    try:
        updated = _update_resource(logical_id, resource_json, resources_map, **where)
    except Exception as error:
        _name_the_failure(error, logical_id)
        _first_errors.append(error)
        raise
    # A type moto cannot update keeps what it had, instead of becoming nothing.
    return updated if updated is not None else resources_map._parsed_resources.get(logical_id)


parsing.parse_and_update_resource = _update_unless_absent

_create_resource = parsing.parse_and_create_resource


def _create_naming_the_failure(logical_id, resource_json, resources_map, **where):
    try:
        return _create_resource(logical_id, resource_json, resources_map, **where)
    except Exception as error:
        _name_the_failure(error, logical_id)
        raise


def _name_the_failure(error, logical_id):
    """Marks `error` with the resource that failed, for the stack's events (see _roll_back): the
    innermost one, when a resource fails while another that refers to it is made."""
    if getattr(error, "_logical_id", None) is None:
        try:
            error._logical_id = logical_id
        except AttributeError:
            pass


parsing.parse_and_create_resource = _create_naming_the_failure

# moto retries a failed update in passes and reports the last error; CloudFormation stops at the
# first and reports it: the cause (a resource that depends on a failed one fails after it).
_first_errors = []
_update_stack = parsing.ResourceMap.update


def _update_reporting_the_first_error(self, template, parameters=None):
    outer = _first_errors[:]
    _first_errors.clear()
    try:
        return _update_stack(self, template, parameters)
    except Exception:
        if _first_errors:
            raise _first_errors[0] from None
        raise
    finally:
        _first_errors[:] = outer


parsing.ResourceMap.update = _update_reporting_the_first_error


def _references(value, names):
    """The resources among `names` that `value` refers to."""
    found = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and inner in names:
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                if target in names:
                    found.add(target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                for match in re.findall(r"\$\{([^}.!]+)", str(text)):
                    if match in names:
                        found.add(match)
                found |= _references(inner, names)
            else:
                found |= _references(inner, names)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner, names)
    return found


_diff = parsing.ResourceMap.build_resource_diff


def _updatable(resource_json):
    model = parsing.resource_class_from_type(resource_json.get("Type", ""))
    return model is not None and not hasattr(
        model.update_from_cloudformation_json, "__isabstractmethod__"
    )


def _diff_in_dependency_order(self, other_template, parameters=None):
    actions = _diff(self, other_template, parameters)
    new = other_template["Resources"]
    names = set(new)
    refers = {name: _references(new[name], names) for name in new}
    modified = set(actions["Modify"])
    # Only a resource moto really updates (or adds) can change what depends on it.
    changed = {name for name in modified if _updatable(new[name])} | set(actions["Add"])
    while True:
        more = {
            name
            for name in new
            if name in self._resource_json_map
            and name not in modified
            and refers[name] & changed
        }
        if not more:
            break
        modified |= more
        changed |= {name for name in more if _updatable(new[name])}
    ordered, done = [], set()

    def visit(name):
        if name in done:
            return
        done.add(name)
        for dependency in sorted(refers[name]):
            visit(dependency)
        if name in modified:
            ordered.append(name)

    for name in new:
        visit(name)
    actions["Modify"] = ordered
    return actions


parsing.ResourceMap.build_resource_diff = _diff_in_dependency_order


class _Version(CloudFormationModel):
    """A published version of a function, as CloudFormation makes it."""

    # moto files its models by the service in their module's name.
    __module__ = "moto.awslambda.emulator"

    def __init__(self, function, properties):
        self.function = function
        self.properties = properties

    @staticmethod
    def cloudformation_type():
        return "AWS::Lambda::Version"

    @property
    def physical_resource_id(self):
        return self.function.function_arn

    @classmethod
    def has_cfn_attr(cls, attr):
        return attr == "Version"

    def get_cfn_attribute(self, attribute_name):
        if attribute_name == "Version":
            return str(self.function.version)
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        properties = cloudformation_json["Properties"]
        backend = awslambda.lambda_backends[account_id][region_name]
        kept = traffic.reuse_version(backend, properties["FunctionName"], properties)
        if kept is not None:
            return cls(kept, properties)
        latest = backend.get_function(properties["FunctionName"])
        expected = properties.get("CodeSha256")
        if expected and expected != latest.code_sha_256:
            raise ValidationError(
                resource_name,
                f"CodeSha256 {expected} does not match the function's code ({latest.code_sha_256})",
            )
        published = backend.publish_version(
            properties["FunctionName"], properties.get("Description", "")
        )
        return cls(published, properties)

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    ):
        if cloudformation_json["Properties"] == original_resource.properties:
            return original_resource
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )


@traffic.remade_on_update
class _Alias(CloudFormationModel):
    """An alias of a function, as CloudFormation makes it."""

    __module__ = "moto.awslambda.emulator"

    def __init__(self, alias, function_name):
        self.alias = alias
        self.function_name = function_name

    @staticmethod
    def cloudformation_type():
        return "AWS::Lambda::Alias"

    @property
    def physical_resource_id(self):
        return self.alias.arn

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        properties = cloudformation_json["Properties"]
        backend = awslambda.lambda_backends[account_id][region_name]
        # An alias that exists is moved (an update, or moto's replacement of a nested stack on
        # every update, which creates the new stack's resources before it deletes the old ones).
        try:
            existing = backend.get_alias(properties["Name"], properties["FunctionName"])
        except Exception:
            existing = None
        version = str(properties["FunctionVersion"])
        if traffic.moves_by_deployment(cloudformation_json, existing, version):
            # CodeDeploy moves it, once the change set has executed.
            return cls(existing, properties["FunctionName"])
        make = backend.update_alias if existing else backend.create_alias
        alias = make(
            properties["Name"],
            properties["FunctionName"],
            version,
            properties.get("Description", ""),
            None,
        )
        return cls(alias, properties["FunctionName"])

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name
    ):
        properties = cloudformation_json["Properties"]
        backend = awslambda.lambda_backends[account_id][region_name]
        # Only while the function exists: a stack deleted with it has nothing left to remove.
        try:
            backend.delete_alias(properties["Name"], properties["FunctionName"])
        except Exception:
            pass


_create_change_set = cloudformation_models.CloudFormationBackend.create_change_set
_execute_change_set = cloudformation_models.CloudFormationBackend.execute_change_set


def _create_change_set_importing(self, *args, **kwargs):
    created = _create_change_set(self, *args, **kwargs)
    for stack in self.stacks.values():
        stack.cross_stack_resources = self.exports
        stack.resource_map.cross_stack_resources = self.exports
    return created


def _execute_change_set_with_outputs(self, change_set_name, stack_name=None):
    change_set = next(
        (
            c
            for c in self.change_sets.values()
            if change_set_name in (c.change_set_id, c.change_set_name)
        ),
        None,
    )
    stack = self.stacks[change_set.stack_id] if change_set is not None else None
    before = (stack.template, dict(stack.resource_map.input_parameters or {})) if stack else None
    traffic.take_pending()
    try:
        _execute_change_set(self, change_set_name, stack_name)
    except (ValidationError, UnformattedGetAttTemplateException):
        # A template error, which CloudFormation finds before it changes anything (moto only now).
        raise
    except Exception as error:
        if change_set is None:
            raise
        _roll_back(self.stacks[change_set.stack_id], change_set, error)
        return
    if change_set is not None:
        stack = self.stacks[change_set.stack_id]
        stack.output_map = parsing.OutputMap(
            stack.resource_map, change_set.template_dict, stack.stack_id
        )
        for export in stack.exports:
            self.exports[export.name] = export
        deployments = traffic.take_pending()
        if deployments:
            _wait_for_deployments(stack, change_set, before, deployments)


def _wait_for_deployments(stack, change_set, before, deployments):
    """The update waits, UPDATE_IN_PROGRESS, for the CodeDeploy deployments its aliases started
    (`emulator_traffic`); it then completes, or is rolled back to the template and parameters it
    had `before`, as CloudFormation rolls back an alias whose deployment failed."""
    if stack.events and stack.events[-1].resource_status == "UPDATE_COMPLETE":
        stack.events.pop()
    stack.status = "UPDATE_IN_PROGRESS"
    change_set.execution_status = "EXECUTE_IN_PROGRESS"

    def ended(failure):
        if failure is None:
            stack._add_stack_event("UPDATE_COMPLETE")
            stack.status = "UPDATE_COMPLETE"
            change_set.execution_status = "EXECUTE_COMPLETE"
            return
        spec, deployment, code, message = failure
        error = ValidationError(
            message=f"CodeDeploy deployment {deployment} failed ({code}): {message}"
        )
        error._logical_id = _holder_of(stack, spec)
        stack.template, stack.parameters = before
        with traffic.rolling_back():
            _roll_back(stack, change_set, error)

    traffic.start(deployments, _one_at_a_time, ended)


def _holder_of(stack, deployment):
    """The logical id, in `stack`, of the alias a deployment moves, or of the nested stack that
    holds it."""

    def moved(resource):
        return (
            isinstance(resource, _Alias)
            and resource.alias.name == deployment["alias"]
            and resource.function_name == deployment["function"]
        )

    for logical_id, resource in stack.resource_map._parsed_resources.items():
        nested = getattr(resource, "resource_map", None)
        if moved(resource) or (
            nested is not None and any(map(moved, nested._parsed_resources.values()))
        ):
            return logical_id
    return None


def _roll_back(stack, change_set, error):
    """A change set whose execution failed, rolled back as CloudFormation does: the call itself
    succeeded, the failed resource and the stack say why in their events, a create deletes what
    it made (keeping what `DeletionPolicy: Retain` keeps, but not `RetainExceptOnCreate`) and
    ends ROLLBACK_COMPLETE, an update
    puts the previous template and parameters back and ends UPDATE_ROLLBACK_COMPLETE. moto
    answers the ExecuteChangeSet call with the failed resource's own error (in the protocol of
    that resource's service) and leaves the stack half made."""
    creating = change_set.change_set_type == "CREATE"
    reason = getattr(error, "message", None) or str(error) or type(error).__name__
    failed = getattr(error, "_logical_id", None)
    if failed is not None:
        resource_json = change_set.template_dict.get("Resources", {}).get(failed, {})
        stack.events.append(
            cloudformation_models.Event(
                stack_id=stack.stack_id,
                stack_name=stack.name,
                logical_resource_id=failed,
                physical_resource_id="",
                resource_type=resource_json.get("Type", ""),
                resource_status="CREATE_FAILED" if creating else "UPDATE_FAILED",
                resource_status_reason=reason,
                resource_properties=None,
            )
        )
    cause = f"The following resource(s) failed to {'create' if creating else 'update'}: [{failed}]. "
    change_set.execution_status = "EXECUTE_FAILED"
    if creating:
        stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=cause + "Rollback requested by user.")
        try:
            _delete_without_reviving(stack.resource_map, rolling_back_its_create=True)
        except Exception:
            pass
        stack._add_stack_event("ROLLBACK_COMPLETE")
        stack.status = "ROLLBACK_COMPLETE"
    else:
        stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=cause)
        try:
            stack._parse_template()
            stack.resource_map.update(stack.template_dict, stack.parameters)
        except Exception:
            pass
        stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
        stack.status = "UPDATE_ROLLBACK_COMPLETE"


# moto makes, on a read, any resource of a stack's map it has not made: listing the resources of
# a deleted (or rolled back) stack would create its deleted resources again, outside any stack,
# and a new stack of the same name would then fail on them ("already exists"). What a deletion
# removed leaves the map; what it kept (Retain) stays in it.
_delete_resources = parsing.ResourceMap.delete


def _delete_without_reviving(self, rolling_back_its_create=False):
    # `RetainExceptOnCreate` keeps a resource as `Retain` does, except when the create that made
    # it is rolled back (moto knows only `Retain`).
    policies = {}
    for logical_id, resource_json in self._resource_json_map.items():
        if resource_json.get("DeletionPolicy") == "RetainExceptOnCreate":
            policies[logical_id] = resource_json
            resource_json["DeletionPolicy"] = "Delete" if rolling_back_its_create else "Retain"
    try:
        _delete_resources(self)
    finally:
        for resource_json in policies.values():
            resource_json["DeletionPolicy"] = "RetainExceptOnCreate"
        self._resource_json_map = {
            logical_id: resource_json
            for logical_id, resource_json in self._resource_json_map.items()
            if logical_id in self._parsed_resources
        }


parsing.ResourceMap.delete = _delete_without_reviving


cloudformation_models.CloudFormationBackend.create_change_set = _create_change_set_importing
cloudformation_models.CloudFormationBackend.execute_change_set = _execute_change_set_with_outputs


# moto's own `LambdaVersion` is defined before `_Version`, so the map from types to models, built
# from the subclasses in their order, keeps `_Version`.

# Lambda's `Invoke` runs the function's code when the release tool started the emulator
# (EMULATOR_LAMBDA_RUNNER names its binary): the zip Lambda holds for the version invoked goes to
# `xtask lambda-run`, which runs it through the project's local Runtime API (arm64 under qemu), as
# `up` does, with the function's environment and the emulator's endpoint. The answer is Lambda's:
# the function's payload, or its error document with `X-Amz-Function-Error: Unhandled`. Without a
# runner, moto's own answer (it needs Docker to run code).
_RUNNER = os.environ.get("EMULATOR_LAMBDA_RUNNER")
_PAYLOAD_LIMIT = 6 * 1024 * 1024
_invoke = awslambda.LambdaFunction.invoke


def _invoke_running_the_code(self, body, request_headers, response_headers):
    if not _RUNNER:
        return _invoke(self, body, request_headers, response_headers)
    zips = os.path.join(tempfile.gettempdir(), "biometrix-emulator-zips")
    os.makedirs(zips, exist_ok=True)
    path = os.path.join(zips, re.sub(r"[^A-Za-z0-9]", "_", self.code_sha_256 or "none") + ".zip")
    if not os.path.exists(path):
        with open(path + ".partial", "wb") as out:
            out.write(self.code_bytes)
        os.replace(path + ".partial", path)
    if body and len(body) > _PAYLOAD_LIMIT:
        # Lambda refuses a synchronous request over 6 MB before running anything.
        refused = JsonRESTError(
            "RequestTooLargeException",
            f"Request must be smaller than {_PAYLOAD_LIMIT} bytes for the InvokeFunction operation",
        )
        refused.code = 413
        raise refused
    event = json.loads(body) if body else {}
    started = time.time()
    ran = subprocess.run(
        [
            _RUNNER,
            "lambda-run",
            "--zip",
            path,
            "--function",
            self.function_name,
            "--timeout",
            str(max(1, int(self.timeout))),
            "--memory",
            str(int(self.memory_size)),
        ],
        input=json.dumps({"event": event, "environment": self.environment_vars or {}}),
        capture_output=True,
        text=True,
        timeout=int(self.timeout) + 60,
    )
    if ran.returncode != 0:
        answer = {
            "payload": json.dumps(
                {"errorType": "Runtime.Unknown", "errorMessage": ran.stderr.strip()[-2000:]}
            ),
            "function_error": "Unhandled",
            "log": "",
        }
    else:
        answer = json.loads(ran.stdout)
    if answer.get("function_error"):
        response_headers["x-amz-function-error"] = answer["function_error"]
    with _one_at_a_time:
        _as_lambda_reports(self, answer, took=time.time() - started)
    response_headers["x-amz-executed-version"] = str(self.version)
    tail = answer.get("log", "")[-4096:]
    response_headers["x-amz-log-result"] = base64.b64encode(tail.encode()).decode()
    return answer["payload"].encode("utf-8")


awslambda.LambdaFunction.invoke = _invoke_running_the_code

# A function's code is updated only when the template's `Code` changed, as CloudFormation updates
# only what changed: moto set the template's code again on every update of the function (a new
# variable, say), undoing an `UpdateFunctionCode` made since, which CloudFormation leaves alone.
_update_function = awslambda.LambdaFunction.update_from_cloudformation_json.__func__


def _update_code_only_when_changed(
    cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
):
    code = json.dumps(cloudformation_json["Properties"].get("Code"), sort_keys=True)
    if getattr(original_resource, "_template_code", None) == code:
        original_resource.update_configuration(cloudformation_json["Properties"])
        return original_resource
    updated = _update_function(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    )
    updated._template_code = code
    return updated


_create_function = awslambda.LambdaFunction.create_from_cloudformation_json.__func__


def _create_remembering_the_code(
    cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
):
    # As the template says it (moto changes the dictionary it is given).
    code = json.dumps(cloudformation_json["Properties"].get("Code"), sort_keys=True)
    created = _create_function(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    )
    created._template_code = code
    return created


awslambda.LambdaFunction.update_from_cloudformation_json = classmethod(
    _update_code_only_when_changed
)
awslambda.LambdaFunction.create_from_cloudformation_json = classmethod(_create_remembering_the_code)


def _as_lambda_reports(function, answer, took):
    """What Lambda records of an invocation: the function's output in its log group (a stream
    per invocation here, where Lambda has one per instance), and its `Invocations`, `Errors` and
    `Duration` metrics, by function, by alias (`Resource`) and by the version that ran."""
    now = int(time.time() * 1000)
    version = str(function.version)
    request = f"{now:x}-{_random.getrandbits(48):012x}"
    lines = [f"START RequestId: {request} Version: {version}"]
    lines += [line for line in answer.get("log", "").splitlines() if line.strip()]
    lines += [
        f"END RequestId: {request}",
        f"REPORT RequestId: {request}\tDuration: {took * 1000:.2f} ms\t"
        f"Memory Size: {int(function.memory_size)} MB",
    ]
    logs = function.logs_backend
    group = function.logs_group_name
    stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{version}]{request}"
    try:
        if group not in logs.groups:
            logs.create_log_group(group, {})
        logs.create_log_stream(group, stream)
        logs.put_log_events(group, stream, [{"timestamp": now, "message": l} for l in lines])
    except Exception as error:
        print(f"could not write the logs of {function.function_name}: {error}", flush=True)
    name = function.function_name
    alias = getattr(_invoked, "alias", None)
    dimension_sets = [[{"Name": "FunctionName", "Value": name}]]
    if alias:
        resource = [
            {"Name": "FunctionName", "Value": name},
            {"Name": "Resource", "Value": f"{name}:{alias}"},
        ]
        dimension_sets += [resource, resource + [{"Name": "ExecutedVersion", "Value": version}]]
    errors = 1.0 if answer.get("function_error") else 0.0
    data = [
        {"MetricName": metric, "Value": value, "Unit": unit, "Dimensions": dimensions}
        for dimensions in dimension_sets
        for metric, value, unit in (
            ("Invocations", 1.0, "Count"),
            ("Errors", errors, "Count"),
            ("Duration", took * 1000, "Milliseconds"),
        )
    ]
    cloudwatch_backends[function.account_id][function.region].put_metric_data("AWS/Lambda", data)


# The alias an invocation came through, for its metrics.
_invoked = threading.local()

_backend_invoke = awslambda.LambdaBackend.invoke


def _invoke_by_weight(self, function_name, qualifier, body, headers, response_headers):
    """An alias with a routing configuration sends each invocation to its version, or to an
    additional one with that version's weight, as Lambda routes a canary; moto always takes the
    alias's own version."""
    name = function_name
    if name.startswith("arn:"):
        parts = name.split(":")
        name = parts[6]
        qualifier = parts[7] if len(parts) > 7 else qualifier
    elif ":" in name:
        name, qualifier = name.split(":", 1)
    alias = None
    if _RUNNER and qualifier and qualifier != "$LATEST" and not qualifier.isdigit():
        alias = self._lambdas._get_function_aliases(name).get(qualifier)
    weights = ((alias.routing_config or {}) if alias else {}).get("AdditionalVersionWeights") or {}
    if weights:
        roll, total = _random.random(), 0.0
        for version, weight in weights.items():
            total += float(weight)
            if roll < total:
                qualifier = str(version)
                break
    _invoked.alias = alias.name if alias else None
    try:
        return _backend_invoke(self, name, qualifier, body, headers, response_headers)
    finally:
        _invoked.alias = None


awslambda.LambdaBackend.invoke = _invoke_by_weight

# A published version keeps the code it was published with, its location included: moto's
# version is a shallow copy sharing the function's `code` (bucket and key), so a later update
# of the function's code moved every version's location to the new key.
_publish_version = awslambda.LambdaStorage.publish_version


def _publish_version_keeping_its_code(self, name_or_arn, description=""):
    published = _publish_version(self, name_or_arn, description)
    if published is not None and not getattr(published, "_own_code", False):
        published.code = dict(published.code)
        published._own_code = True
    return published


awslambda.LambdaStorage.publish_version = _publish_version_keeping_its_code

# Lambda's Invoke names the version or alias as `?Qualifier=`; moto reads only `qualifier`, and
# so ran $LATEST whatever was asked.
from moto.awslambda.responses import LambdaResponse as _LambdaResponse

_response_invoke = _LambdaResponse.invoke


def _invoke_reading_the_qualifier(self):
    if "Qualifier" in self.querystring and "qualifier" not in self.querystring:
        self.querystring["qualifier"] = self.querystring["Qualifier"]
    return _response_invoke(self)


_LambdaResponse.invoke = _invoke_reading_the_qualifier


def _own_endpoint():
    """The functions run against this emulator: its address, from the server's arguments."""
    args = sys.argv[1:]
    host = args[args.index("-H") + 1] if "-H" in args else "127.0.0.1"
    port = args[args.index("-p") + 1] if "-p" in args else "5000"
    return f"http://{host}:{port}"


if __name__ == "__main__":
    if _RUNNER:
        # A function the emulator runs talks to this emulator, whatever its starter's environment
        # pointed at.
        os.environ["AWS_ENDPOINT_URL"] = _own_endpoint()
        os.environ["AWS_ACCESS_KEY_ID"] = "testing"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
        os.environ.setdefault("AWS_REGION", "us-west-2")
    server.main()
