"""The AWS emulator (moto's server), handling one request at a time.

DynamoDB applies a conditional write atomically, and S3 applies `If-None-Match: *` atomically.
moto's server answers requests on parallel threads without a lock, so two conditional writes to
one item can both pass their check before either writes. Serialising requests gives the emulator
the atomicity the real services have, which the concurrency tests (session statuses, the deploy
lock) rely on. Arguments are moto_server's (-H HOST -p PORT).

Used by scripts/test and by `cargo xtask deploy --local`.
"""

import threading

from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_one_at_a_time = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _serialised(self, environ, start_response):
    with _one_at_a_time:
        # The whole body is produced under the lock, not just the first chunk.
        return list(_dispatch(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serialised

if __name__ == "__main__":
    server.main()
