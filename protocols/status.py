"""Guacamole status codes and what each maps to at the other edges.

One table (DESIGN.md section 2): the decimal code guacd puts in ``error``
instructions and the broker puts in a WebSocket close *reason*, the WebSocket
close *code* that goes with it, and the HTTP status guacamole-common uses for
the same condition.

Callers closing a viewer tunnel must use ``status.websocket_code`` as the close
code and ``status.close_reason`` (the decimal code, nothing else) as the reason:
guacamole-common-js shows any free text in the reason as an error.

`Ending` is how one stream ends: a status and the text shown to the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class GuacamoleStatus(IntEnum):
    """A Guacamole protocol status (the decimal value is the wire value)."""

    SUCCESS = 0x0000
    UNSUPPORTED = 0x0100
    SERVER_ERROR = 0x0200
    SERVER_BUSY = 0x0201
    UPSTREAM_TIMEOUT = 0x0202
    UPSTREAM_ERROR = 0x0203
    RESOURCE_NOT_FOUND = 0x0204
    RESOURCE_CONFLICT = 0x0205
    RESOURCE_CLOSED = 0x0206
    UPSTREAM_NOT_FOUND = 0x0207
    UPSTREAM_UNAVAILABLE = 0x0208
    SESSION_CONFLICT = 0x0209
    SESSION_TIMEOUT = 0x020A
    SESSION_CLOSED = 0x020B
    CLIENT_BAD_REQUEST = 0x0300
    CLIENT_UNAUTHORIZED = 0x0301
    CLIENT_FORBIDDEN = 0x0303
    CLIENT_TIMEOUT = 0x0308
    CLIENT_OVERRUN = 0x030D
    CLIENT_BAD_TYPE = 0x030F
    CLIENT_TOO_MANY = 0x031D

    @property
    def websocket_code(self) -> int:
        """The WebSocket close code to send with this status."""
        return _CODES[self][0]

    @property
    def http_status(self) -> int:
        """The HTTP status guacamole-common answers with for this condition."""
        return _CODES[self][1]

    @property
    def close_reason(self) -> str:
        """The WebSocket close reason: the decimal code and nothing else."""
        return str(int(self))

    @property
    def is_error(self) -> bool:
        return self is not GuacamoleStatus.SUCCESS

    @classmethod
    def from_code(cls, code: int) -> GuacamoleStatus:
        """The status for a decimal code received from guacd.

        Codes this table does not know fall back by class like
        guacamole-common does: 0x03xx is the client's fault
        (``CLIENT_BAD_REQUEST``), anything else ``SERVER_ERROR``.
        """
        try:
            return cls(code)
        except ValueError:
            if 0x0300 <= code <= 0x03FF:
                return cls.CLIENT_BAD_REQUEST
            return cls.SERVER_ERROR


@dataclass(frozen=True, slots=True)
class Ending:
    """How a stream ends: the status the viewer sees and, when not SUCCESS,
    the text of an ``error`` instruction shown to the user (None: the other
    side has said it already, e.g. guacd sent its own ``error``)."""

    status: GuacamoleStatus
    message: str | None = None


_S = GuacamoleStatus
# status -> (WebSocket close code, HTTP status)
_CODES: dict[GuacamoleStatus, tuple[int, int]] = {
    _S.SUCCESS: (1000, 200),
    _S.UNSUPPORTED: (1011, 501),
    _S.SERVER_ERROR: (1011, 500),
    _S.SERVER_BUSY: (1008, 503),
    _S.UPSTREAM_TIMEOUT: (1011, 504),
    _S.UPSTREAM_ERROR: (1011, 502),
    _S.RESOURCE_NOT_FOUND: (1002, 404),
    _S.RESOURCE_CONFLICT: (1008, 409),
    _S.RESOURCE_CLOSED: (1002, 404),
    _S.UPSTREAM_NOT_FOUND: (1011, 502),
    _S.UPSTREAM_UNAVAILABLE: (1011, 502),
    _S.SESSION_CONFLICT: (1008, 409),
    _S.SESSION_TIMEOUT: (1002, 408),
    _S.SESSION_CLOSED: (1002, 404),
    _S.CLIENT_BAD_REQUEST: (1002, 400),
    _S.CLIENT_UNAUTHORIZED: (1008, 403),
    _S.CLIENT_FORBIDDEN: (1008, 403),
    _S.CLIENT_TIMEOUT: (1002, 408),
    _S.CLIENT_OVERRUN: (1009, 413),
    _S.CLIENT_BAD_TYPE: (1003, 415),
    _S.CLIENT_TOO_MANY: (1008, 429),
}
