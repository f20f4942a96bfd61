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

Used by scripts/test and by `cargo xtask deploy --local`.
"""

import os
import threading

from moto import server
from moto.cloudformation import parsing
from moto.cloudformation.responses import CloudFormationResponse
from moto.core.responses import ActionResult
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_one_at_a_time = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _serialised(self, environ, start_response):
    with _one_at_a_time:
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

_update_resource = parsing.parse_and_update_resource


def _update_unless_absent(logical_id, resource_json, resources_map, **where):
    condition = resource_json.get("Condition")
    never_created = resources_map._parsed_resources.get(logical_id) is None
    if condition and never_created and not resources_map.lazy_condition_map[condition]:
        return None
    return _update_resource(logical_id, resource_json, resources_map, **where)


parsing.parse_and_update_resource = _update_unless_absent

if __name__ == "__main__":
    server.main()
