"""The broker's error tree. Each error carries the HTTP status it answers with.

    BrokerError                 500  unexpected; the message is never shown as is
    ├── BadRequest              400  malformed body or query
    │   └── Unprocessable       422  well-formed but invalid values
    ├── Unauthorized            401  missing or bad credential (adds WWW-Authenticate)
    ├── Forbidden               403  authenticated, not allowed
    ├── NotFound                404  missing, or not the caller's to see
    ├── Conflict                409  state does not allow it
    ├── TooManyRequests         429  a limit was reached (optional Retry-After)
    ├── UpstreamFailed          502  a dependency answered badly
    └── Unavailable             503  a dependency is down, or the broker is draining

Messages are shown to API callers: they must never contain secrets.

`ConfigError` (from `broker.config`, re-exported here) is no `BrokerError`:
it stops startup or a command, naming the setting to fix.
"""

from __future__ import annotations

# Raised by the config package; kept importable from here, beside the HTTP errors.
from broker.config.errors import ConfigError as ConfigError


class BrokerError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class BadRequest(BrokerError):
    status = 400
    code = "bad_request"


class Unprocessable(BadRequest):
    status = 422
    code = "unprocessable"


class Unauthorized(BrokerError):
    status = 401
    code = "unauthorized"


class Forbidden(BrokerError):
    status = 403
    code = "forbidden"


class NotFound(BrokerError):
    status = 404
    code = "not_found"


class Conflict(BrokerError):
    status = 409
    code = "conflict"


class TooManyRequests(BrokerError):
    status = 429
    code = "too_many_requests"

    def __init__(self, detail: str, *, retry_after: int | None = None, code: str | None = None):
        super().__init__(detail, code=code)
        self.retry_after = retry_after


class UpstreamFailed(BrokerError):
    status = 502
    code = "upstream_failed"


class Unavailable(BrokerError):
    status = 503
    code = "unavailable"
