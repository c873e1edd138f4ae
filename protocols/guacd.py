"""The guacd client: connect, hand-shake, hand the raw stream to the relay.

Handshake (DESIGN.md section 3, protocol version 1.5.0)::

    -> select,<rdp|vnc|ssh>            (or select,$<connection-id> to join)
    <- args,VERSION_1_5_0,<name>...
    -> size,<w>,<h>,<dpi>  audio,...  video,...  image,...  timezone,<tz>  name,<user>
    -> connect,VERSION_1_5_0,<one value per name, in order, "" when unset>
    <- ready,$<connection-id>

Every step is bounded by `GuacdTimeouts`. Anything that goes wrong before
``ready`` raises a `protocols.errors.GuacdError` carrying its Guacamole
status; `GuacdClient.connect` then tries the next configured guacd. After
``ready`` nothing is retried and nothing is raised: guacd's later ``error``
(a wrong password is ``519`` with no ``sync``) comes from the remote desktop,
and retrying would replay the password and could lock the account. Those
instructions arrive on `GuacdConnection.reader` for the relay to forward.

Connection parameters (passwords, keys) are never logged nor put in exception
messages; logs name endpoints, steps and parameter *names* only.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from protocols.display import DisplaySettings
from protocols.errors import (
    GuacdClosed,
    GuacdError,
    GuacdHandshakeError,
    GuacdRefused,
    GuacdTimeout,
    GuacdUnreachable,
    IncompleteInstruction,
    InstructionError,
    NoGuacdAvailable,
)
from protocols.guacd_args import PROTOCOL_VERSION, RemoteProtocol
from protocols.instruction import ErrorReport, Instruction, encode_instructions
from protocols.stream import read_instruction

log = logging.getLogger(__name__)

_VERSION = re.compile(r"VERSION_(\d+)_(\d+)_(\d+)")
_OUR_VERSION = (1, 5, 0)
_TIMEZONE_SINCE = (1, 1, 0)  # guacd reads `timezone` during the handshake from 1.1.0
_NAME_SINCE = (1, 5, 0)  # ... and `name` from 1.5.0


@dataclass(frozen=True, slots=True)
class GuacdEndpoint:
    """One guacd daemon. ``tls`` set means guacd was started with TLS."""

    host: str
    port: int = 4822
    tls: ssl.SSLContext | None = None
    tls_server_name: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class GuacdTimeouts:
    """Seconds allowed for each step: TCP+TLS connect, each write, each reply."""

    connect: float = 5.0
    write: float = 5.0
    reply: float = 10.0


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """What to ask guacd for.

    ``parameters`` maps guacd parameter names to values (see
    `protocols.parameters.build_parameters`); names guacd does not ask for are
    ignored. ``user_name`` is sent with ``name`` (shown to other participants).
    ``join`` is a ``$connection-id`` to join instead of opening a new
    connection (add ``read-only=true`` to the parameters for a viewer).
    """

    protocol: RemoteProtocol
    parameters: Mapping[str, str] = field(repr=False)
    display: DisplaySettings = field(default_factory=DisplaySettings)
    user_name: str | None = None
    join: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class GuacdConnection:
    """A connection guacd accepted (it sent ``ready``).

    The relay pumps raw bytes: ``reader`` holds exactly what guacd sent after
    ``ready`` (nothing was read past it), ``writer`` goes to guacd. The caller
    must `aclose` it. ``connection_id`` is a join capability: never show it
    to a browser. ``arg_names`` are the parameter names guacd asked for.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    endpoint: GuacdEndpoint
    protocol_version: str
    arg_names: tuple[str, ...]
    connection_id: str = field(repr=False)
    # Called once when the connection is closed (a pool's count of live connections).
    on_close: list[Callable[[], None]] = field(default_factory=list, repr=False)

    async def aclose(self, grace: float = 2.0) -> None:
        """Close the TCP connection, waiting at most ``grace`` seconds; never raises."""
        while self.on_close:
            self.on_close.pop()()
        await _close(self.writer, grace)


class GuacdClient:
    """Opens guacd connections, failing over between configured daemons.

    Endpoints are tried in order; the next one only after a failure before
    ``ready`` (unreachable, timed out, closed, refused the handshake).
    """

    def __init__(
        self, endpoints: Sequence[GuacdEndpoint], *, timeouts: GuacdTimeouts | None = None
    ) -> None:
        if not endpoints:
            raise ValueError("at least one guacd endpoint is needed")
        self._endpoints = tuple(endpoints)
        self._timeouts = timeouts or GuacdTimeouts()

    @property
    def endpoints(self) -> tuple[GuacdEndpoint, ...]:
        return self._endpoints

    async def connect(self, request: ConnectionRequest) -> GuacdConnection:
        """Connect and hand-shake. Raises `NoGuacdAvailable` if every guacd failed."""
        attempts: list[GuacdError] = []
        for endpoint in self._endpoints:
            try:
                return await open_connection(endpoint, request, timeouts=self._timeouts)
            except GuacdError as exc:
                log.warning(
                    "guacd %s failed before ready (%s, status %d)",
                    endpoint,
                    type(exc).__name__,
                    exc.status,
                )
                attempts.append(exc)
        raise NoGuacdAvailable(tuple(attempts))


async def open_connection(
    endpoint: GuacdEndpoint, request: ConnectionRequest, *, timeouts: GuacdTimeouts
) -> GuacdConnection:
    """Connect to one guacd and hand-shake; no failover. Raises `GuacdError`."""
    reader, writer = await _connect(endpoint, timeouts.connect)
    try:
        version, names, connection_id = await handshake(
            reader, writer, request, timeouts=timeouts, endpoint=str(endpoint)
        )
    except BaseException:
        await _close(writer, timeouts.write)
        raise
    return GuacdConnection(reader, writer, endpoint, version, names, connection_id)


async def probe(endpoint: GuacdEndpoint, protocol: RemoteProtocol, timeouts: GuacdTimeouts) -> None:
    """A health check of one guacd: connect, ``select`` a protocol, expect
    ``args``, then leave with ``disconnect`` (guacd starts no remote
    connection before ``connect``). Raises `GuacdError`."""
    reader, writer = await _connect(endpoint, timeouts.connect)
    try:
        step = _Steps(reader, writer, timeouts, str(endpoint))
        await step.send([Instruction("select", (protocol.value,))])
        await step.expect("args")
        writer.write(encode_instructions([Instruction("disconnect", ())]))
    finally:
        await _close(writer, timeouts.write)


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: ConnectionRequest,
    *,
    timeouts: GuacdTimeouts,
    endpoint: str | None = None,
) -> tuple[str, tuple[str, ...], str]:
    """Run the handshake on an open stream; return (version, arg names, connection id).

    Raises `GuacdError` subclasses; the caller closes the stream on failure.
    """
    step = _Steps(reader, writer, timeouts, endpoint)
    await step.send([Instruction("select", (request.join or request.protocol.value,))])
    offered = await step.expect("args")
    version, names = _negotiate(offered.args)
    await step.send(_client_instructions(request, version, names))
    ready = await step.expect("ready")
    if not ready.args or not ready.args[0]:
        raise GuacdHandshakeError("sent ready without a connection id", endpoint=endpoint)
    return _version_text(version), names, ready.args[0]


def connect_values(names: Sequence[str], parameters: Mapping[str, str]) -> list[str]:
    """One value per name guacd asked for, in its order; ``""`` when unset."""
    return [parameters.get(name, "") for name in names]


def _client_instructions(
    request: ConnectionRequest, version: tuple[int, int, int] | None, names: tuple[str, ...]
) -> list[Instruction]:
    unused = sorted(set(request.parameters) - set(names))
    if unused:
        log.info("guacd did not ask for parameter(s) %s; not sent", ", ".join(unused))
    supports = version or (1, 0, 0)
    instructions = request.display.handshake_instructions(with_timezone=supports >= _TIMEZONE_SINCE)
    if request.user_name is not None and supports >= _NAME_SINCE:
        instructions.append(Instruction("name", (request.user_name,)))
    values = connect_values(names, request.parameters)
    if version is not None:
        values.insert(0, _version_text(version))
    instructions.append(Instruction("connect", tuple(values)))
    return instructions


def _negotiate(offered: tuple[str, ...]) -> tuple[tuple[int, int, int] | None, tuple[str, ...]]:
    """Split ``args`` into the version to speak and the parameter names.

    Like guacamole-common: the lower of guacd's version and ours; a guacd
    older than 1.1 sends names only and gets values only.
    """
    match = _VERSION.fullmatch(offered[0]) if offered else None
    if match is None:
        return None, offered
    theirs = (int(match[1]), int(match[2]), int(match[3]))
    return min(theirs, _OUR_VERSION), offered[1:]


def _version_text(version: tuple[int, int, int] | None) -> str:
    if version is None:
        return "VERSION_1_0_0"
    if version == _OUR_VERSION:
        return PROTOCOL_VERSION
    return "VERSION_{}_{}_{}".format(*version)


class _Steps:
    """Timed sends and expected replies, errors mapped to `GuacdError`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeouts: GuacdTimeouts,
        endpoint: str | None,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._timeouts, self._endpoint = timeouts, endpoint

    async def send(self, instructions: list[Instruction]) -> None:
        what = instructions[-1].opcode
        try:
            self._writer.write(encode_instructions(instructions))
            async with asyncio.timeout(self._timeouts.write):
                await self._writer.drain()
        except TimeoutError as exc:
            raise GuacdTimeout(f"could not send {what} in time", endpoint=self._endpoint) from exc
        except OSError as exc:
            raise GuacdClosed(f"connection lost sending {what}", endpoint=self._endpoint) from exc

    async def expect(self, opcode: str) -> Instruction:
        """The next instruction, which must be ``opcode`` (``nop`` is skipped)."""
        try:
            async with asyncio.timeout(self._timeouts.reply):
                instruction = await self._read_skipping_nops()
        except TimeoutError as exc:
            raise GuacdTimeout(
                f"no {opcode} within {self._timeouts.reply:g}s", endpoint=self._endpoint
            ) from exc
        except (IncompleteInstruction, OSError) as exc:
            raise GuacdClosed(f"connection lost before {opcode}", endpoint=self._endpoint) from exc
        except InstructionError as exc:
            raise GuacdHandshakeError(
                f"malformed reply before {opcode}: {exc.message}", endpoint=self._endpoint
            ) from exc
        return self._check(instruction, opcode)

    async def _read_skipping_nops(self) -> Instruction | None:
        while True:
            instruction = await read_instruction(self._reader)
            if instruction is None or instruction.opcode != "nop":
                return instruction

    def _check(self, instruction: Instruction | None, opcode: str) -> Instruction:
        endpoint = self._endpoint
        if instruction is None:
            raise GuacdClosed(f"closed the connection before {opcode}", endpoint=endpoint)
        if instruction.opcode == opcode:
            return instruction
        if instruction.opcode == "error":
            report = ErrorReport.from_instruction(instruction)
            raise GuacdRefused(report.message, report.status, endpoint=endpoint)
        if instruction.opcode == "disconnect":
            raise GuacdClosed(f"sent disconnect before {opcode}", endpoint=endpoint)
        raise GuacdHandshakeError(
            f"expected {opcode}, got {instruction.opcode!r}", endpoint=endpoint
        )


async def _connect(
    endpoint: GuacdEndpoint, seconds: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(seconds):
            if endpoint.tls is None:
                return await asyncio.open_connection(endpoint.host, endpoint.port)
            return await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls,
                server_hostname=endpoint.tls_server_name or endpoint.host,
                ssl_handshake_timeout=seconds,
            )
    except TimeoutError as exc:
        raise GuacdTimeout(f"no connection within {seconds:g}s", endpoint=str(endpoint)) from exc
    except ssl.SSLError as exc:
        raise GuacdUnreachable(
            f"TLS handshake failed ({exc.reason or type(exc).__name__})", endpoint=str(endpoint)
        ) from exc
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GuacdUnreachable(f"unreachable ({reason})", endpoint=str(endpoint)) from exc


async def _close(writer: asyncio.StreamWriter, grace: float) -> None:
    writer.close()
    try:
        async with asyncio.timeout(grace):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        pass
