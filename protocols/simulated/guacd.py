"""A simulated guacd: a real TCP server on loopback speaking guacd 1.5.5's protocol.

It reproduces the handshake byte for byte (``args`` lists of guacd 1.5.5 for
``vnc``, ``rdp`` and ``ssh``, the arity check on ``connect``, ``ready`` with a
``$uuid``), then either draws a desktop that answers input or replays a
capture of real guacd output (``tests/data/``). Production client code runs
against it unchanged. Run it alone with::

    python -m protocols.simulated.guacd --host 127.0.0.1 --port 4822 \
        [--mode desktop|replay] [--pace] [--echo-mouse] [--failure bad-password]

or in-process::

    server = SimulatedGuacd(SimulatedGuacdOptions(first_frame_delay=0.05))
    await server.start(host="127.0.0.1", port=0)
    ... GuacdEndpoint("127.0.0.1", server.port) ...
    await server.wait_for(lambda: server.crashes == 1, timeout=5)
    await server.aclose()

What it draws (``Mode.DESKTOP``) and where: see `protocols.simulated.desktop`
(background RGB (32, 64, 128); protocol marker at (0, 0, 32, 32); a left
click paints a 40x40 square of (255, 128, 0) centred on it, a right click
(0, 200, 255); key presses type white 12x20 blocks from (8, 48)). The first
frame comes ``first_frame_delay`` seconds after ``ready`` (a real guacd needs
that long to reach the desktop), each batch of drawing ends with ``sync``, and
an idle display gets a ``sync`` every ``idle_sync_interval`` seconds.

Like guacd 1.5.5 (``libguac/user-handshake.c``, ``guacd/connection.c``):

- ``select`` of an unknown protocol, a malformed handshake or ``size`` without
  two arguments: the connection is closed without a word;
- ``select,$id`` of an unknown connection: ``error,"No such connection.",516``;
  of a live one: the joiner gets the same desktop (read-only if
  ``read-only=true``);
- a ``connect`` with the wrong number of values: ``ready`` is sent, then the
  connection closes (guacd checks the count after acknowledging; no
  ``error``);
- the first ``connect`` value may be a version or ``""`` (a client that
  negotiates no version, such as pyguacamole);
- with ``echo_mouse`` (``--echo-mouse``) each client ``mouse`` is answered with
  ``mouse,<x>,<y>,<mask>,<timestamp>`` (guacd's remote cursor), so a client can
  time its input's round trip; off by default;
- client ``sync`` and ``nop`` get no answer; any client instruction counts as
  activity. After ``silence_nops`` seconds of client silence it sends ``nop``
  (10 s and 15 s by default), and at ``client_timeout`` it sends
  ``error,"Aborted. See logs.",776`` and ``disconnect`` and closes;
- a ``vnc`` connection that receives ``mouse`` before its first ``sync`` went
  out drops abruptly (EOF, no error), as guacd 1.5.5's VNC plugin crashes;
  counted in ``server.crashes`` so relay tests can assert it never happened.

Failure injection (`Failure`), chosen per connection, first match wins:
``server.inject(Failure.X, ...)`` queues failures for the next connections;
else a ``username`` or ``hostname`` parameter ``simfail-<failure>`` (e.g.
``simfail-bad-password``) picks one for that connection; else
``options.failure`` applies to all. Failures before ``ready`` are guacd's own
(a client must fail over); failures after it come from the "remote desktop".

Bounded: at most ``max_connections`` at once, every read has a timeout,
records are capped, a client that stops reading is dropped once 4 MiB are
queued for it. Only loopback addresses may be listened on.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import signal
import ssl
import sys
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from protocols.errors import InstructionError
from protocols.guacd_args import GUACD_1_5_5_ARGS, PROTOCOL_VERSION, RemoteProtocol
from protocols.instruction import BoundaryScanner, Instruction, Parser, encode_instructions
from protocols.simulated.desktop import Desktop

CAPTURE_FILES: dict[str, str] = {
    "vnc": "vnc-x11vnc-20s.guac",
    "rdp": "rdp-freerdp-shadow-20s.guac",
    "ssh": "ssh-sshd-10s.guac",
}
FAILURE_PREFIX = "simfail-"
MAX_QUEUED_OUTPUT = 4 * 1024 * 1024
_READ_SIZE = 65536

# What real guacd 1.5.5 said in the captures (transcript-*_badpw.txt) and source.
_BAD_PASSWORD = {
    "rdp": ("Server refused connection (wrong security type?)", 519),
    "vnc": ("Aborted. See logs.", 519),
    "ssh": ("Aborted. See logs.", 519),
}
_UNAUTHORIZED = {
    "rdp": ("Authentication failure (invalid credentials?)", 769),
    "vnc": ("Aborted. See logs.", 769),
    "ssh": ("Aborted. See logs.", 769),
}


class Mode(StrEnum):
    DESKTOP = "desktop"  # draw a desktop that answers input
    REPLAY = "replay"  # send the protocol's capture (tests/data)


class Failure(StrEnum):
    NONE = "none"
    # Before `ready`: guacd's own failures, a client fails over.
    EOF_BEFORE_ARGS = "eof-before-args"  # closes right after `select`
    EOF_BEFORE_READY = "eof-before-ready"  # closes after `connect`, no `ready`
    SLOW_HANDSHAKE = "slow-handshake"  # waits `slow_handshake_delay` before `ready`
    ERROR_IN_HANDSHAKE = "error-in-handshake"  # `error,...,512` instead of `ready`
    DISCONNECT_IN_HANDSHAKE = "disconnect-in-handshake"  # `disconnect` instead of `ready`
    # After `ready`: the remote desktop's failures, never to be retried.
    BAD_PASSWORD = "bad-password"  # `error` 519 with guacd's message, then close
    UNAUTHORIZED = "unauthorized"  # `error` 769, then close
    DISCONNECT_ON_WRITE = "disconnect-on-write"  # silence; `disconnect` on first client write
    # Nothing listens at the workspace's address, as guacd 1.5.5 tells it: VNC
    # is silent, SSH draws its terminal (no `sync`), each then says `disconnect`
    # on the first client write; RDP draws, then `error` 519.
    UNREACHABLE = "unreachable"
    CLIENT_TIMEOUT = "client-timeout"  # ignores the client: nops, then error 776
    EOF_AFTER_READY = "eof-after-ready"  # drops the connection right after `ready`


_DISCONNECT_ON_WRITE = (Failure.DISCONNECT_ON_WRITE, Failure.UNREACHABLE)
_BEFORE_READY = frozenset(
    {
        Failure.EOF_BEFORE_ARGS,
        Failure.EOF_BEFORE_READY,
        Failure.SLOW_HANDSHAKE,
        Failure.ERROR_IN_HANDSHAKE,
        Failure.DISCONNECT_IN_HANDSHAKE,
    }
)


@dataclass(frozen=True, slots=True)
class SimulatedGuacdOptions:
    """Behaviour of a `SimulatedGuacd`; durations in seconds."""

    mode: Mode = Mode.DESKTOP
    failure: Failure = Failure.NONE
    captures_dir: Path | None = None  # needed for Mode.REPLAY
    replay_pace: bool = False  # spread the replay by its `sync` timestamps
    replay_speed: float = 1.0  # with replay_pace: 2.0 plays twice as fast
    replay_chunk: int = 8192  # bytes a write at full speed (splits instructions)
    first_frame_delay: float = 0.2
    idle_sync_interval: float = 1.0
    silence_nops: tuple[float, ...] = (10.0, 15.0)
    client_timeout: float = 15.0
    handshake_timeout: float = 15.0
    slow_handshake_delay: float = 30.0
    failure_delay: float = 0.0  # from `ready` to an injected error
    write_timeout: float = 10.0
    vnc_crash_on_early_mouse: bool = True
    max_connections: int = 64
    # Answer each client `mouse` with `mouse,<x>,<y>,<mask>,<timestamp>`, as
    # guacd does to draw the remote cursor, so a client can time its input's
    # round trip (the relay benchmark). Off: input gets no answer in replay mode.
    echo_mouse: bool = False
    # Protocols whose connections ask the user for missing credentials (empty
    # `username`/`password` parameters) with `required`, as guacd does when the
    # remote desktop wants them, and wait for the client's `argv` streams.
    ask_credentials: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Accept plain strings ("replay", "bad-password") as the CLI and tests give them.
        object.__setattr__(self, "mode", Mode(self.mode))
        object.__setattr__(self, "failure", Failure(self.failure))
        if self.mode is Mode.REPLAY and self.captures_dir is None:
            raise ValueError("replay mode needs captures_dir (e.g. tests/data)")


@dataclass(frozen=True, slots=True)
class HandshakeRecord:
    """What one client sent during its handshake. Values may hold secrets."""

    selected: str
    protocol: str
    size: tuple[str, ...]
    audio: tuple[str, ...]
    video: tuple[str, ...]
    image: tuple[str, ...]
    timezone: str | None
    name: str | None
    version: str
    connect_values: tuple[str, ...] = field(repr=False)
    parameters: dict[str, str] = field(repr=False)
    accepted: bool
    connection_id: str


class SimulatedGuacd:
    """The server; see the module docstring. Records are for tests to read."""

    def __init__(self, options: SimulatedGuacdOptions | None = None) -> None:
        self.options = options or SimulatedGuacdOptions()
        self.connections = 0  # accepted so far
        self.active = 0
        self.crashes = 0  # VNC early-mouse crashes
        self.handshakes: deque[HandshakeRecord] = deque(maxlen=100)
        self.received: deque[Instruction] = deque(maxlen=1000)  # client input after ready
        # Values given through `argv` streams after `required`, by parameter name.
        self.credentials_received: deque[dict[str, str]] = deque(maxlen=100)
        self.clipboard_received: deque[str] = deque(maxlen=100)  # text the client pasted
        self.failures_applied: deque[Failure] = deque(maxlen=100)
        self.disconnects = 0  # client `disconnect` instructions: a viewer that said it left
        self._queued: deque[Failure] = deque()
        self._sessions: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()
        self._captures: dict[str, bytes] = {}
        self._paced: dict[str, list[tuple[float, bytes]]] = {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        return str(self._server.sockets[0].getsockname()[0])

    @property
    def last_handshake(self) -> HandshakeRecord | None:
        return self.handshakes[-1] if self.handshakes else None

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> None:
        """Listen on a loopback ``host``; ``port=0`` picks a free port."""
        if not _is_loopback(host):
            raise ValueError(f"the simulated guacd listens on loopback only, not {host!r}")
        self._server = await asyncio.start_server(self._accept, host, port, ssl=tls)

    async def aclose(self) -> None:
        """Stop listening, drop every connection, wait for their tasks."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimulatedGuacd:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def inject(self, *failures: Failure) -> None:
        """Queue failures: the next connections get them, one each, in order."""
        self._queued.extend(failures)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``predicate()`` holds (re-checked on each recorded event).

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def capture(self, protocol: str) -> bytes:
        """The capture replayed for ``protocol`` (read once)."""
        if protocol not in self._captures:
            directory = self.options.captures_dir
            if directory is None:
                raise ValueError("no captures_dir configured")
            self._captures[protocol] = (directory / CAPTURE_FILES[protocol]).read_bytes()
        return self._captures[protocol]

    def paced(self, protocol: str) -> list[tuple[float, bytes]]:
        """The capture for ``protocol`` cut after each `sync`, with the wait
        before each piece (computed once, not per connection)."""
        if protocol not in self._paced:
            self._paced[protocol] = _paced_segments(
                self.capture(protocol), self.options.replay_speed
            )
        return self._paced[protocol]

    def _notify(self) -> None:
        self._changed.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or self.active >= self.options.max_connections:
            writer.close()
            return
        self._tasks.add(task)
        self.connections += 1
        self.active += 1
        self._notify()
        failure = self._queued.popleft() if self._queued else None
        try:
            await _Connection(self, reader, writer, failure).run()
        except asyncio.CancelledError:
            # aclose() cancels us. End normally: asyncio's stream callback
            # would log a cancelled handler task as an error.
            pass
        finally:
            self.active -= 1
            self._tasks.discard(task)
            self._notify()


class _Session:
    """One guacd connection (one `$id`): its desktop and the users viewing it."""

    def __init__(self, connection_id: str, protocol: str, desktop: Desktop) -> None:
        self.connection_id = connection_id
        self.protocol = protocol
        self.desktop = desktop
        self.users: set[_Connection] = set()
        self.first_frame_sent = False
        self.sync_sent = False

    def broadcast(self, instructions: list[Instruction]) -> None:
        data = encode_instructions([*instructions, _sync()])
        for user in list(self.users):
            user.send(data)


class _Stop(Exception):
    """Ends a connection's loops (after it was closed or aborted)."""


class _Connection:
    """One client TCP connection, from `select` to close."""

    def __init__(
        self,
        server: SimulatedGuacd,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        failure: Failure | None,
    ) -> None:
        self.server, self.options = server, server.options
        self.reader, self.writer = reader, writer
        self.failure = failure
        self.parser = Parser()
        self.inbox: deque[Instruction] = deque()
        self.outgoing = BoundaryScanner()
        self.session: _Session | None = None
        self.read_only = False
        self.closed = False
        self.last_activity = asyncio.get_running_loop().time()
        self.record: HandshakeRecord | None = None
        self.asked: tuple[str, ...] = ()
        self.argv_streams: dict[str, tuple[str, list[str]]] = {}
        self.answers: dict[str, str] = {}
        self.answered = asyncio.Event()
        self.clipboard_streams: dict[str, list[str]] = {}

    async def run(self) -> None:
        try:
            if await self._handshake():
                await self._serve()
        except (_Stop, OSError, InstructionError, TimeoutError):
            pass
        finally:
            self._leave_session()
            self.close()

    # ------------------------------------------------------------ output

    def send(self, data: bytes) -> None:
        """Queue bytes for the client, noting when the first `sync` goes out."""
        if self.closed:
            return
        self.writer.write(data)
        if self.session is None or not self.session.sync_sent:
            # Only the first `sync` matters (see `_crashes_vnc`): scan until it.
            self.outgoing.feed(data)
            self.outgoing.take()
            if self.outgoing.sync_seen and self.session is not None:
                self.session.sync_sent = True
        if self.writer.transport.get_write_buffer_size() > MAX_QUEUED_OUTPUT:
            self.abort()  # the client stopped reading

    def send_instructions(self, *instructions: Instruction) -> None:
        self.send(encode_instructions(instructions))

    async def drain(self) -> None:
        async with asyncio.timeout(self.options.write_timeout):
            await self.writer.drain()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()

    def abort(self) -> None:
        """Drop the connection at once, unsent bytes lost: what a crash looks like."""
        if not self.closed:
            self.closed = True
            self.writer.transport.abort()

    # --------------------------------------------------------- handshake

    async def _next(self) -> Instruction | None:
        while not self.inbox:
            async with asyncio.timeout(self.options.handshake_timeout):
                data = await self.reader.read(_READ_SIZE)
            if not data:
                return None
            self.inbox.extend(self.parser.feed(data))
        return self.inbox.popleft()

    async def _handshake(self) -> bool:
        select = await self._next()
        if select is None or select.opcode != "select" or len(select.args) != 1:
            return False
        if self.failure is Failure.EOF_BEFORE_ARGS:
            return self._fail_before_ready()
        target = select.args[0]
        protocol = self._protocol_of(target)
        if protocol is None:
            return False
        self.send_instructions(
            Instruction("args", (PROTOCOL_VERSION, *GUACD_1_5_5_ARGS[RemoteProtocol(protocol)]))
        )
        record = await self._read_until_connect(target, protocol)
        if record is None:
            return False
        return await self._answer_connect(record)

    def _protocol_of(self, target: str) -> str | None:
        if target.startswith("$"):
            session = self.server._sessions.get(target)
            if session is None:
                self.send_instructions(Instruction.of("error", "No such connection.", 516))
                return None
            return session.protocol
        return target if target in CAPTURE_FILES else None

    async def _read_until_connect(self, target: str, protocol: str) -> HandshakeRecord | None:
        seen: dict[str, tuple[str, ...]] = {}
        while True:
            instruction = await self._next()
            if instruction is None:
                return None
            if instruction.opcode == "connect":
                break
            if instruction.opcode == "size" and len(instruction.args) < 2:
                return None  # guacd: "size instruction lacked required arguments"
            seen[instruction.opcode] = instruction.args
        names = GUACD_1_5_5_ARGS[RemoteProtocol(protocol)]
        values = instruction.args
        accepted = len(values) == len(names) + 1
        connection_id = target if target.startswith("$") else f"${uuid.uuid4()}"
        return HandshakeRecord(
            selected=target,
            protocol=protocol,
            size=seen.get("size", ()),
            audio=seen.get("audio", ()),
            video=seen.get("video", ()),
            image=seen.get("image", ()),
            timezone=(seen.get("timezone") or (None,))[0],
            name=(seen.get("name") or (None,))[0],
            version=values[0] if values else "",
            connect_values=values,
            parameters=dict(zip(names, values[1:], strict=False)) if accepted else {},
            accepted=accepted,
            connection_id=connection_id,
        )

    async def _answer_connect(self, record: HandshakeRecord) -> bool:
        self.server.handshakes.append(record)
        self.server._notify()
        self.failure = self._choose_failure(record)
        if self.failure is not Failure.NONE:
            self.server.failures_applied.append(self.failure)
        if self.failure is Failure.SLOW_HANDSHAKE:
            await asyncio.sleep(self.options.slow_handshake_delay)
        elif self.failure in _BEFORE_READY:
            return self._fail_before_ready()
        self.send_instructions(Instruction("ready", (record.connection_id,)))
        if not record.accepted:
            return False  # guacd 1.5.5: "Client did not return the expected number..."
        self.read_only = record.parameters.get("read-only") == "true"
        self.record = record
        self._join_session(record)
        return True

    def _choose_failure(self, record: HandshakeRecord) -> Failure:
        if self.failure is not None:
            return self.failure
        for name in ("username", "hostname"):
            value = record.parameters.get(name, "")
            if value.startswith(FAILURE_PREFIX):
                with contextlib.suppress(ValueError):
                    return Failure(value.removeprefix(FAILURE_PREFIX))
        return self.options.failure

    def _fail_before_ready(self) -> bool:
        if self.failure is Failure.ERROR_IN_HANDSHAKE:
            self.send_instructions(Instruction.of("error", "Aborted. See logs.", 512))
            self.close()
        elif self.failure is Failure.DISCONNECT_IN_HANDSHAKE:
            self.send_instructions(Instruction("disconnect"))
            self.close()
        else:
            self.abort()
        return False

    def _join_session(self, record: HandshakeRecord) -> None:
        session = self.server._sessions.get(record.connection_id)
        if session is None:
            width, height = (_int(v, 1024) for v in (record.size + ("1024", "768"))[:2])
            desktop = Desktop(record.protocol, width, height)
            session = _Session(record.connection_id, record.protocol, desktop)
            self.server._sessions[record.connection_id] = session
        session.users.add(self)
        self.session = session
        self.last_activity = asyncio.get_running_loop().time()

    def _leave_session(self) -> None:
        session = self.session
        if session is not None:
            session.users.discard(self)
            if not session.users:
                self.server._sessions.pop(session.connection_id, None)

    # ------------------------------------------------------------ serving

    async def _serve(self) -> None:
        tasks = [
            asyncio.create_task(self._read_input()),
            asyncio.create_task(self._watch_silence()),
            asyncio.create_task(self._produce()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_input(self) -> None:
        while not self.closed:
            async with asyncio.timeout(self.options.client_timeout + 60):
                data = await self.reader.read(_READ_SIZE)
            if not data:
                return
            for instruction in self.parser.feed(data):
                self._on_input(instruction)

    def _on_input(self, instruction: Instruction) -> None:
        self.server.received.append(instruction)
        if instruction.opcode == "disconnect":
            self.server.disconnects += 1
        self.server._notify()
        if self.failure is Failure.CLIENT_TIMEOUT or self.closed:
            return
        self.last_activity = asyncio.get_running_loop().time()
        if self.asked and instruction.opcode in ("argv", "blob", "end"):
            self._on_argv(instruction)
            return
        if self._on_clipboard(instruction):
            return
        if self.failure in _DISCONNECT_ON_WRITE or instruction.opcode == "disconnect":
            self.send_instructions(Instruction("disconnect"))
            self.close()
            raise _Stop
        session = self.session
        if session is None or (self.read_only and instruction.opcode != "size"):
            return
        if instruction.opcode == "mouse":
            if self._crashes_vnc(session):
                raise _Stop
            if self.options.echo_mouse:
                stamp = int(asyncio.get_running_loop().time() * 1000)
                self.send_instructions(Instruction("mouse", (*instruction.args[:3], str(stamp))))
        drawing = _drawing_for(session.desktop, instruction)
        if drawing and session.first_frame_sent and self.options.mode is Mode.DESKTOP:
            session.broadcast(drawing)

    def _crashes_vnc(self, session: _Session) -> bool:
        if session.protocol != "vnc" or session.sync_sent:
            return False
        if not self.options.vnc_crash_on_early_mouse:
            return False
        self.server.crashes += 1
        self.server._notify()
        self.abort()
        return True

    async def _watch_silence(self) -> None:
        schedule, limit = self.options.silence_nops, self.options.client_timeout
        loop = asyncio.get_running_loop()
        sent = 0
        while not self.closed:
            silence = loop.time() - self.last_activity
            if sent and silence < schedule[sent - 1]:
                sent = 0  # the client spoke since our last nop
            deadline = schedule[sent] if sent < len(schedule) else limit
            if silence < deadline:
                # Look again when the deadline would pass: input meanwhile only
                # moved `last_activity` (waking on each one costs a busy server).
                await asyncio.sleep(deadline - silence)
                continue
            if sent < len(schedule):
                self.send_instructions(Instruction("nop"))
                sent += 1
                continue
            self.send_instructions(
                Instruction.of("error", "Aborted. See logs.", 776), Instruction("disconnect")
            )
            await self.drain()
            self.close()
            return

    async def _produce(self) -> None:
        failure = self.failure
        if failure is Failure.EOF_AFTER_READY:
            self.abort()
            return
        if failure in (Failure.BAD_PASSWORD, Failure.UNAUTHORIZED):
            await self._remote_refuses(failure)
            return
        if failure is Failure.UNREACHABLE and await self._unreachable():
            return
        if failure in (*_DISCONNECT_ON_WRITE, Failure.CLIENT_TIMEOUT):
            await asyncio.Event().wait()  # silent until the watchdog or input ends it
        await self._ask_credentials()
        if self.options.mode is Mode.REPLAY:
            await self._replay()
        else:
            await self._first_frame()
        await self._idle()

    async def _ask_credentials(self) -> None:
        """guacd's `required`: name the missing credentials and wait for the
        client's `argv` streams (`argv,<stream>,text/plain,<name>`, `blob`s of
        base64, `end`) before reaching the desktop."""
        record = self.record
        if record is None or record.protocol not in self.options.ask_credentials:
            return
        missing = tuple(n for n in ("username", "password") if not record.parameters.get(n))
        if not missing:
            return
        self.asked = missing
        self.send_instructions(Instruction("required", missing))
        await self.drain()
        await self.answered.wait()
        self.server.credentials_received.append(dict(self.answers))
        self.server._notify()

    def _on_clipboard(self, instruction: Instruction) -> bool:
        """The remote clipboard: text the client sends (``clipboard`` stream) is
        kept and, like a desktop app copying it back, returned as
        ``remote: <text>``. ``disable-paste`` drops what comes in, ``disable-copy``
        sends nothing out, as guacd does. True when the instruction was consumed."""
        args = instruction.args
        opcode = instruction.opcode
        if opcode == "clipboard" and len(args) >= 2:
            self.clipboard_streams[args[0]] = []
            return True
        if opcode not in ("blob", "end") or not args or args[0] not in self.clipboard_streams:
            return False
        if opcode == "blob" and len(args) >= 2:
            self.clipboard_streams[args[0]].append(args[1])
            return True
        chunks = self.clipboard_streams.pop(args[0])
        params = self.record.parameters if self.record is not None else {}
        if params.get("disable-paste") == "true":
            return True
        try:
            text = base64.b64decode("".join(chunks)).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return True
        self.server.clipboard_received.append(text)
        self.server._notify()
        if params.get("disable-copy") != "true":
            reply = base64.b64encode(f"remote: {text}".encode()).decode()
            self.send_instructions(
                Instruction("clipboard", ("90", "text/plain")),
                Instruction("blob", ("90", reply)),
                Instruction("end", ("90",)),
            )
        return True

    def _on_argv(self, instruction: Instruction) -> None:
        args = instruction.args
        if instruction.opcode == "argv" and len(args) >= 3:
            self.argv_streams[args[0]] = (args[2], [])
        elif instruction.opcode == "blob" and len(args) >= 2 and args[0] in self.argv_streams:
            self.argv_streams[args[0]][1].append(args[1])
        elif instruction.opcode == "end" and args and args[0] in self.argv_streams:
            name, chunks = self.argv_streams.pop(args[0])
            try:
                value = base64.b64decode("".join(chunks)).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                value = ""
            self.answers[name] = value
            if all(self.answers.get(n) for n in self.asked):
                self.answered.set()

    async def _remote_refuses(self, failure: Failure) -> None:
        assert self.session is not None
        protocol = self.session.protocol
        if protocol == "rdp":
            # As in transcript-rdp_nla_badpw.txt: drawing, but no sync, then the error.
            self.send_instructions(*self.session.desktop.full_frame())
        await asyncio.sleep(self.options.failure_delay)
        table = _BAD_PASSWORD if failure is Failure.BAD_PASSWORD else _UNAUTHORIZED
        message, status = table[protocol]
        self.send_instructions(Instruction.of("error", message, status))
        await self.drain()
        self.close()

    async def _unreachable(self) -> bool:
        """Draw what guacd 1.5.5 draws for an unreachable server; True when
        the connection is over (RDP's `error`), else `disconnect` follows the
        client's next write."""
        assert self.session is not None
        protocol = self.session.protocol
        if protocol != "vnc":
            self.send_instructions(*self.session.desktop.full_frame())  # never a sync
        if protocol == "rdp":
            message, status = _BAD_PASSWORD["rdp"]
            self.send_instructions(Instruction.of("error", message, status))
        await self.drain()
        if protocol == "rdp":
            self.close()
            return True
        return False

    async def _first_frame(self) -> None:
        assert self.session is not None
        session = self.session
        if not session.first_frame_sent:
            await asyncio.sleep(self.options.first_frame_delay)
            session.first_frame_sent = True
            session.broadcast(session.desktop.full_frame())
        else:  # a joiner: draw what is there
            self.send(encode_instructions([*session.desktop.full_frame(), _sync()]))
        await self.drain()

    async def _replay(self) -> None:
        assert self.session is not None
        data = self.server.capture(self.session.protocol)
        if not self.options.replay_pace:
            size = max(1, self.options.replay_chunk)
            for start in range(0, len(data), size):
                self.send(data[start : start + size])
                await self.drain()
            return
        # Each piece is due at its offset from the start (not `delay` after the
        # previous write), so the pace holds however long the writes took.
        loop = asyncio.get_running_loop()
        due = loop.time()
        for delay, segment in self.server.paced(self.session.protocol):
            due += delay
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            self.send(segment)
            await self.drain()

    async def _idle(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.options.idle_sync_interval)
            self.send_instructions(_sync())
            await self.drain()


def _drawing_for(desktop: Desktop, instruction: Instruction) -> list[Instruction]:
    args = instruction.args
    if instruction.opcode == "mouse" and len(args) >= 3:
        return desktop.mouse(_int(args[0], 0), _int(args[1], 0), _int(args[2], 0))
    if instruction.opcode == "key" and len(args) >= 2:
        return desktop.key(_int(args[0], 0), args[1] == "1")
    if instruction.opcode == "size" and len(args) >= 2:
        return desktop.resize(_int(args[0], desktop.width), _int(args[1], desktop.height))
    return []


def _paced_segments(data: bytes, speed: float) -> list[tuple[float, bytes]]:
    """Split a capture after each `sync`, with the wait before each piece.

    The captures hold no times; the `sync` timestamps (milliseconds) inside
    them are the pace. Waits are capped at 5 s.
    """
    segments: list[tuple[float, bytes]] = []
    current: list[Instruction] = []
    previous: int | None = None
    delay = 0.0
    for instruction in Parser().feed(data):
        current.append(instruction)
        if instruction.opcode == "sync" and instruction.args:
            stamp = _int(instruction.args[0], 0)
            if previous is not None:
                delay = min(max(0.0, (stamp - previous) / 1000 / max(speed, 1e-3)), 5.0)
            previous = stamp
            segments.append((delay, encode_instructions(current)))
            current, delay = [], 0.0
    if current:
        segments.append((0.0, encode_instructions(current)))
    return segments


def _sync() -> Instruction:
    return Instruction.of("sync", int(asyncio.get_running_loop().time() * 1000))


def _int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    # The captures kept in the source tree (tests/data); pass --captures elsewhere.
    default_captures = Path(__file__).resolve().parents[2] / "tests" / "data"
    parser = argparse.ArgumentParser(
        prog="python -m protocols.simulated.guacd", description="Simulated guacd on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4822)
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.DESKTOP.value)
    parser.add_argument("--failure", choices=[f.value for f in Failure], default="none")
    parser.add_argument("--captures", type=Path, default=default_captures)
    parser.add_argument("--pace", action="store_true", help="replay at the capture's pace")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--first-frame-delay", type=float, default=0.2)
    parser.add_argument("--client-timeout", type=float, default=15.0)
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument(
        "--echo-mouse", action="store_true", help="answer each client `mouse` with a `mouse`"
    )
    parser.add_argument(
        "--ask-credentials",
        default="",
        help="protocols (comma-separated) that prompt with `required`",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    nops = tuple(t for t in (10.0, 15.0) if t < args.client_timeout) or (args.client_timeout,)
    options = SimulatedGuacdOptions(
        mode=Mode(args.mode),
        failure=Failure(args.failure),
        captures_dir=args.captures,
        replay_pace=args.pace,
        replay_speed=args.speed,
        first_frame_delay=args.first_frame_delay,
        silence_nops=nops,
        client_timeout=args.client_timeout,
        ask_credentials=frozenset(p for p in args.ask_credentials.split(",") if p),
        max_connections=args.max_connections,
        echo_mouse=args.echo_mouse,
    )
    server = SimulatedGuacd(options)
    await server.start(args.host, args.port)
    print(f"simulated guacd listening on {server.host}:{server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.aclose()


def main(argv: list[str] | None = None) -> None:
    """Run until SIGINT/SIGTERM."""
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:
        sys.exit(f"simulated guacd: {exc}")


if __name__ == "__main__":
    main()
