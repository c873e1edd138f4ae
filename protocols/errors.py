"""The error tree of the ``protocols`` package.

Every error carries the Guacamole status it maps to (``err.status``; its
``websocket_code`` and ``http_status`` follow from it), so the broker can
close a viewer tunnel or answer a REST call without knowing the subclass.
Messages never contain connection parameters (passwords, keys): they name
the guacd endpoint, the step that failed and, for guacd's own ``error``
instructions, guacd's message and code::

    GuacamoleError                     512 SERVER_ERROR
    ├── InstructionError               768 CLIENT_BAD_REQUEST   malformed instruction bytes
    │   ├── InstructionTooLarge        781 CLIENT_OVERRUN       beyond guacd's limits
    │   └── IncompleteInstruction      768                      stream ended inside one
    ├── InvalidDisplaySettings         768 (also a ValueError)  unusable display values
    └── GuacdError                     515 UPSTREAM_ERROR       guacd failed before `ready`
        ├── GuacdUnreachable           519 UPSTREAM_NOT_FOUND   TCP/TLS connect failed
        ├── GuacdTimeout               514 UPSTREAM_TIMEOUT     a connect/handshake step timed out
        ├── GuacdClosed                520 UPSTREAM_UNAVAILABLE EOF or `disconnect` before `ready`
        ├── GuacdHandshakeError        515 UPSTREAM_ERROR       unexpected or malformed reply
        ├── GuacdRefused               guacd's own code          `error` instruction before `ready`
        └── NoGuacdAvailable           last attempt's status    every configured guacd failed

``InstructionError`` defaults to the client's fault; when the bytes came from
guacd the relay should report ``UPSTREAM_ERROR`` instead (``GuacdClient``
does so during the handshake).

Every ``GuacdError`` happens before guacd answered ``ready``: it is a failure
of guacd itself and safe to retry on another guacd. Nothing after ``ready`` is
raised as an exception here: guacd's later ``error`` instructions come from
the remote desktop and reach the caller as bytes on the stream.
"""

from __future__ import annotations

from protocols.status import GuacamoleStatus


class GuacamoleError(Exception):
    """Base of the package's errors. ``status`` is the Guacamole status."""

    status: GuacamoleStatus = GuacamoleStatus.SERVER_ERROR

    def __init__(self, message: str, *, status: GuacamoleStatus | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InstructionError(GuacamoleError):
    """Bytes or text that are not a well-formed Guacamole instruction."""

    status = GuacamoleStatus.CLIENT_BAD_REQUEST


class InstructionTooLarge(InstructionError):
    """An instruction beyond guacd's limits (length, elements, length digits)."""

    status = GuacamoleStatus.CLIENT_OVERRUN


class IncompleteInstruction(InstructionError):
    """The input ended inside an instruction."""


class InvalidDisplaySettings(GuacamoleError, ValueError):
    """Display settings that cannot be sent to guacd."""

    status = GuacamoleStatus.CLIENT_BAD_REQUEST


class GuacdError(GuacamoleError):
    """guacd failed before ``ready``. ``endpoint`` is ``host:port`` when known."""

    status = GuacamoleStatus.UPSTREAM_ERROR

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: GuacamoleStatus | None = None,
    ) -> None:
        super().__init__(f"guacd {endpoint}: {message}" if endpoint else message, status=status)
        self.endpoint = endpoint


class GuacdUnreachable(GuacdError):
    status = GuacamoleStatus.UPSTREAM_NOT_FOUND


class GuacdTimeout(GuacdError):
    status = GuacamoleStatus.UPSTREAM_TIMEOUT


class GuacdClosed(GuacdError):
    status = GuacamoleStatus.UPSTREAM_UNAVAILABLE


class GuacdHandshakeError(GuacdError):
    status = GuacamoleStatus.UPSTREAM_ERROR


class GuacdRefused(GuacdError):
    """guacd sent ``error`` during the handshake; ``status`` is guacd's code."""

    def __init__(
        self, guacd_message: str, status: GuacamoleStatus, *, endpoint: str | None = None
    ) -> None:
        super().__init__(
            f"refused the handshake: {guacd_message!r} ({int(status)})",
            endpoint=endpoint,
            status=status,
        )
        self.guacd_message = guacd_message


class NoGuacdAvailable(GuacdError):
    """Every configured guacd failed; ``attempts`` holds each failure in order."""

    def __init__(self, attempts: tuple[GuacdError, ...]) -> None:
        detail = "; ".join(a.message for a in attempts) or "no guacd configured"
        status = attempts[-1].status if attempts else GuacamoleStatus.UPSTREAM_NOT_FOUND
        super().__init__(f"no guacd available ({detail})", status=status)
        self.attempts = attempts
