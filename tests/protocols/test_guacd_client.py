"""The production guacd client against the simulated guacd on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import pytest

from protocols.errors import (
    GuacdClosed,
    GuacdRefused,
    GuacdTimeout,
    GuacdUnreachable,
    NoGuacdAvailable,
)
from protocols.guacd import (
    ConnectionRequest,
    GuacdClient,
    GuacdConnection,
    GuacdEndpoint,
    GuacdTimeouts,
)
from protocols.guacd_args import GUACD_1_5_5_ARGS, RemoteProtocol
from protocols.instruction import BoundaryScanner, Instruction
from protocols.simulated.desktop import BACKGROUND, LEFT_CLICK, MARKER_COLOURS
from protocols.simulated.guacd import Failure, SimulatedGuacd
from protocols.status import GuacamoleStatus
from tests.protocols.helpers import FAST, PASSWORD, Canvas, StreamView, request_for

StartGuacd = Callable[..., Awaitable[SimulatedGuacd]]


def endpoint(server: SimulatedGuacd) -> GuacdEndpoint:
    return GuacdEndpoint("127.0.0.1", server.port)


async def connect(server: SimulatedGuacd, request: ConnectionRequest) -> GuacdConnection:
    return await GuacdClient([endpoint(server)], timeouts=FAST).connect(request)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send(connection: GuacdConnection, *instructions: Instruction) -> None:
    for instruction in instructions:
        connection.writer.write(instruction.to_bytes())


# ------------------------------------------------------------------ handshake


@pytest.mark.parametrize("protocol", list(RemoteProtocol))
async def test_handshake_succeeds_with_one_value_per_name(
    start_guacd: StartGuacd, protocol: RemoteProtocol
) -> None:
    server = await start_guacd()
    connection = await connect(server, request_for(protocol))
    try:
        record = server.last_handshake
        assert record is not None and record.accepted
        names = GUACD_1_5_5_ARGS[protocol]
        assert connection.arg_names == names
        assert len(record.connect_values) == len(names) + 1
        assert record.version == connection.protocol_version == "VERSION_1_5_0"
        assert record.parameters["hostname"] == "127.64.0.10"
        assert record.parameters["password"] == PASSWORD
        assert record.parameters["port"] == "5900"
        assert record.size == ("800", "600", "96")
        assert (record.audio, record.video, record.image) == (("audio/L16",), (), ("image/png",))
        assert (record.timezone, record.name) == ("Europe/Berlin", "Alice")
        assert connection.connection_id == record.connection_id
        assert connection.connection_id.startswith("$")
    finally:
        await connection.aclose()


async def test_after_ready_the_stream_draws_the_desktop(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    connection = await connect(server, request_for(RemoteProtocol.RDP))
    view = StreamView(connection.reader)
    try:
        await view.until_opcode("sync")
        assert view.opcodes()[:3] == ["size", "img", "blob"]
        canvas = Canvas().apply(view.instructions)
        assert (canvas.width, canvas.height) == (800, 600)
        assert canvas.pixel(400, 300) == BACKGROUND
        assert canvas.pixel(5, 5) == MARKER_COLOURS["rdp"]

        send(connection, Instruction.of("mouse", 400, 300, 1), Instruction.of("mouse", 400, 300, 0))
        await view.until_opcode("sync", count=2)
        canvas.apply(view.instructions)
        assert canvas.pixel(400, 300) == LEFT_CLICK
    finally:
        await connection.aclose()


async def test_connection_repr_hides_the_join_capability() -> None:
    reader = asyncio.StreamReader()
    connection = GuacdConnection(
        reader,
        None,
        GuacdEndpoint("h"),
        "VERSION_1_5_0",
        (),
        "$secret-id",  # type: ignore[arg-type]
    )
    assert "$secret-id" not in repr(connection)
    assert PASSWORD not in repr(request_for())


# ------------------------------------------------- failures before `ready`


async def test_unreachable_guacd_is_upstream_not_found() -> None:
    client = GuacdClient([GuacdEndpoint("127.0.0.1", closed_port())], timeouts=FAST)
    with pytest.raises(NoGuacdAvailable) as caught:
        await client.connect(request_for())
    assert isinstance(caught.value.attempts[0], GuacdUnreachable)
    assert caught.value.status is GuacamoleStatus.UPSTREAM_NOT_FOUND
    assert caught.value.status.websocket_code == 1011


@pytest.mark.parametrize(
    ("failure", "error", "status"),
    [
        (Failure.EOF_BEFORE_ARGS, GuacdClosed, GuacamoleStatus.UPSTREAM_UNAVAILABLE),
        (Failure.EOF_BEFORE_READY, GuacdClosed, GuacamoleStatus.UPSTREAM_UNAVAILABLE),
        (Failure.DISCONNECT_IN_HANDSHAKE, GuacdClosed, GuacamoleStatus.UPSTREAM_UNAVAILABLE),
        (Failure.ERROR_IN_HANDSHAKE, GuacdRefused, GuacamoleStatus.SERVER_ERROR),
        (Failure.SLOW_HANDSHAKE, GuacdTimeout, GuacamoleStatus.UPSTREAM_TIMEOUT),
    ],
)
async def test_failures_before_ready_are_typed_errors(
    start_guacd: StartGuacd,
    failure: Failure,
    error: type[Exception],
    status: GuacamoleStatus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_guacd()
    server.inject(failure)
    client = GuacdClient([endpoint(server)], timeouts=GuacdTimeouts(reply=0.3))
    with pytest.raises(NoGuacdAvailable) as caught:
        await client.connect(request_for())
    (attempt,) = caught.value.attempts
    assert isinstance(attempt, error)
    assert attempt.status is status and caught.value.status is status
    assert PASSWORD not in str(caught.value) and PASSWORD not in caplog.text


async def test_failure_chosen_per_connection_by_username(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    with pytest.raises(NoGuacdAvailable):
        await connect(server, request_for(username="simfail-eof-before-ready"))
    connection = await connect(server, request_for())
    await connection.aclose()
    assert list(server.failures_applied) == [Failure.EOF_BEFORE_READY]


async def test_guacd_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = GuacdClient([GuacdEndpoint("127.0.0.1", port)], timeouts=GuacdTimeouts(reply=0.2))
        with pytest.raises(NoGuacdAvailable) as caught:
            await client.connect(request_for())
        assert isinstance(caught.value.attempts[0], GuacdTimeout)
        assert "no args" in str(caught.value)
    finally:
        server.close()
        await server.wait_closed()


async def test_joining_an_unknown_connection_is_resource_not_found(
    start_guacd: StartGuacd,
) -> None:
    server = await start_guacd()
    with pytest.raises(NoGuacdAvailable) as caught:
        await connect(server, request_for(join="$00000000-0000-0000-0000-000000000000"))
    (attempt,) = caught.value.attempts
    assert isinstance(attempt, GuacdRefused)
    assert attempt.status is GuacamoleStatus.RESOURCE_NOT_FOUND
    assert attempt.guacd_message == "No such connection."


# -------------------------------------------------- failures after `ready`


@pytest.mark.parametrize(
    ("protocol", "failure", "message", "code"),
    [
        (
            RemoteProtocol.RDP,
            Failure.BAD_PASSWORD,
            "Server refused connection (wrong security type?)",
            519,
        ),
        (RemoteProtocol.VNC, Failure.BAD_PASSWORD, "Aborted. See logs.", 519),
        (
            RemoteProtocol.RDP,
            Failure.UNAUTHORIZED,
            "Authentication failure (invalid credentials?)",
            769,
        ),
    ],
)
async def test_remote_desktop_errors_arrive_as_error_instructions(
    start_guacd: StartGuacd, protocol: RemoteProtocol, failure: Failure, message: str, code: int
) -> None:
    server = await start_guacd()
    server.inject(failure)
    connection = await connect(server, request_for(protocol))  # ready: no exception
    scanner = BoundaryScanner()
    async with asyncio.timeout(5):
        while data := await connection.reader.read(65536):
            scanner.feed(data)
            scanner.take()
    await connection.aclose()
    assert scanner.error is not None
    assert (scanner.error.message, scanner.error.code) == (message, code)
    assert not scanner.sync_seen  # a wrong password draws no frame


async def test_silence_then_disconnect_on_first_write(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    server.inject(Failure.DISCONNECT_ON_WRITE)
    connection = await connect(server, request_for(RemoteProtocol.SSH))
    send(connection, Instruction("nop"))
    view = StreamView(connection.reader)
    await view.until_eof()
    await connection.aclose()
    assert view.opcodes() == ["disconnect"]


async def test_eof_right_after_ready(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    server.inject(Failure.EOF_AFTER_READY)
    connection = await connect(server, request_for())
    view = StreamView(connection.reader)
    await view.until_eof()
    await connection.aclose()
    assert view.instructions == []


async def test_silent_client_gets_nops_then_client_timeout(start_guacd: StartGuacd) -> None:
    server = await start_guacd(silence_nops=(0.2, 0.3), client_timeout=0.3, idle_sync_interval=60)
    connection = await connect(server, request_for())
    view = StreamView(connection.reader)
    await view.until_eof()
    await connection.aclose()
    tail = [i for i in view.instructions if i.opcode in ("nop", "error", "disconnect")]
    assert tail == [
        Instruction("nop"),
        Instruction("nop"),
        Instruction("error", ("Aborted. See logs.", "776")),
        Instruction("disconnect"),
    ]


async def test_client_timeout_failure_ignores_even_a_talking_client(
    start_guacd: StartGuacd,
) -> None:
    server = await start_guacd(silence_nops=(0.1,), client_timeout=0.2)
    server.inject(Failure.CLIENT_TIMEOUT)
    connection = await connect(server, request_for())
    send(connection, Instruction("nop"), Instruction.of("sync", 1))
    view = StreamView(connection.reader)
    await view.until_eof()
    await connection.aclose()
    assert view.opcodes() == ["nop", "error", "disconnect"]
    assert view.instructions[1].args[1] == "776"


async def test_answering_syncs_keeps_the_connection_open(start_guacd: StartGuacd) -> None:
    server = await start_guacd(silence_nops=(0.15,), client_timeout=0.25, idle_sync_interval=0.05)
    connection = await connect(server, request_for())
    view = StreamView(connection.reader)
    answered = 0

    def answer(seen: list[Instruction]) -> bool:
        nonlocal answered
        for sync in [i for i in seen if i.opcode == "sync"][answered:]:
            send(connection, sync)  # what guacamole-common-js does
            answered += 1
        return answered >= 15  # well past client_timeout

    await view.until(answer)
    await connection.aclose()
    assert "error" not in view.opcodes() and not view.eof


# --------------------------------------------------------- the VNC crash


async def test_vnc_mouse_before_first_sync_drops_the_connection(start_guacd: StartGuacd) -> None:
    server = await start_guacd(first_frame_delay=30)
    connection = await connect(server, request_for(RemoteProtocol.VNC))
    send(connection, Instruction.of("mouse", 10, 10, 0))
    view = StreamView(connection.reader)
    await view.until_eof()
    await connection.aclose()
    assert view.instructions == []  # no error: a crash
    assert server.crashes == 1


async def test_vnc_mouse_after_first_sync_is_safe(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    connection = await connect(server, request_for(RemoteProtocol.VNC))
    view = StreamView(connection.reader)
    await view.until_opcode("sync")  # what the relay must wait for
    send(connection, Instruction.of("mouse", 100, 100, 1))
    await view.until_opcode("sync", count=2)
    await connection.aclose()
    assert server.crashes == 0


async def test_rdp_tolerates_early_mouse(start_guacd: StartGuacd) -> None:
    server = await start_guacd(first_frame_delay=0.1)
    connection = await connect(server, request_for(RemoteProtocol.RDP))
    send(connection, Instruction.of("mouse", 10, 10, 0))
    view = StreamView(connection.reader)
    await view.until_opcode("sync")
    await connection.aclose()
    assert server.crashes == 0


# ------------------------------------------------------------- failover


async def test_fails_over_when_the_first_guacd_is_unreachable(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    client = GuacdClient(
        [GuacdEndpoint("127.0.0.1", closed_port()), endpoint(server)], timeouts=FAST
    )
    connection = await client.connect(request_for())
    await connection.aclose()
    assert connection.endpoint == endpoint(server)


async def test_fails_over_when_the_first_closes_before_ready(start_guacd: StartGuacd) -> None:
    first, second = await start_guacd(), await start_guacd()
    first.inject(Failure.EOF_BEFORE_READY)
    client = GuacdClient([endpoint(first), endpoint(second)], timeouts=FAST)
    connection = await client.connect(request_for())
    await connection.aclose()
    assert connection.endpoint == endpoint(second)
    assert first.connections == second.connections == 1


async def test_never_fails_over_after_ready(start_guacd: StartGuacd) -> None:
    first, second = await start_guacd(), await start_guacd()
    first.inject(Failure.BAD_PASSWORD)
    client = GuacdClient([endpoint(first), endpoint(second)], timeouts=FAST)
    connection = await client.connect(request_for(RemoteProtocol.RDP))
    view = StreamView(connection.reader)
    await view.until_eof()
    await connection.aclose()
    assert connection.endpoint == endpoint(first)
    assert view.opcodes()[-1] == "error"
    assert second.connections == 0  # the password went to one guacd only


async def test_every_guacd_failing_lists_each_attempt(start_guacd: StartGuacd) -> None:
    first, second = await start_guacd(), await start_guacd()
    first.inject(Failure.EOF_BEFORE_ARGS)
    second.inject(Failure.ERROR_IN_HANDSHAKE)
    client = GuacdClient([endpoint(first), endpoint(second)], timeouts=FAST)
    with pytest.raises(NoGuacdAvailable) as caught:
        await client.connect(request_for())
    assert [type(a) for a in caught.value.attempts] == [GuacdClosed, GuacdRefused]
    assert caught.value.status is GuacamoleStatus.SERVER_ERROR


# ------------------------------------------------------- joins and replay


async def test_read_only_joiner_sees_the_owners_desktop(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    owner = await connect(server, request_for(RemoteProtocol.RDP))
    owner_view = StreamView(owner.reader)
    await owner_view.until_opcode("sync")
    joiner = await connect(
        server, request_for(RemoteProtocol.RDP, join=owner.connection_id, read_only=True)
    )
    joiner_view = StreamView(joiner.reader)
    await joiner_view.until_opcode("sync")
    assert joiner.connection_id == owner.connection_id

    send(joiner, Instruction.of("mouse", 300, 300, 1))  # read-only: ignored
    send(owner, Instruction.of("mouse", 100, 100, 1))
    await joiner_view.until(lambda seen: Canvas().apply(seen).pixel(100, 100) == LEFT_CLICK)
    await owner.aclose()
    await joiner.aclose()
    assert Canvas().apply(joiner_view.instructions).pixel(300, 300) == BACKGROUND


@pytest.mark.parametrize("protocol", list(RemoteProtocol))
async def test_replay_sends_the_capture_byte_for_byte(
    start_guacd: StartGuacd, protocol: RemoteProtocol
) -> None:
    server = await start_guacd(mode="replay", replay_chunk=4096, idle_sync_interval=60)
    capture = server.capture(protocol.value)
    connection = await connect(server, request_for(protocol))
    received = b""
    async with asyncio.timeout(10):
        while len(received) < len(capture):
            received += await connection.reader.read(65536)
    await connection.aclose()
    assert received == capture


@pytest.mark.parametrize("echo", [True, False])
async def test_mouse_is_echoed_only_when_asked(start_guacd: StartGuacd, echo: bool) -> None:
    # The relay benchmark times input by guacd's echo (`--echo-mouse`); by
    # default a replaying guacd answers input with nothing.
    server = await start_guacd(mode="replay", echo_mouse=echo, idle_sync_interval=60)
    connection = await connect(server, request_for(RemoteProtocol.SSH))
    view = StreamView(connection.reader)
    await view.until_opcode("sync")
    send(connection, Instruction.of("mouse", 123, 4093, 0), Instruction("disconnect"))
    seen = await view.until_eof()
    await connection.aclose()
    echoes = [i.args[:3] for i in seen if i.opcode == "mouse" and i.args[:2] == ("123", "4093")]
    assert echoes == ([("123", "4093", "0")] if echo else [])
    assert seen[-1].opcode == "disconnect"


async def test_paced_replay_follows_sync_timestamps(start_guacd: StartGuacd) -> None:
    server = await start_guacd(
        mode="replay", replay_pace=True, replay_speed=50.0, idle_sync_interval=60
    )
    capture = server.capture("ssh")
    connection = await connect(server, request_for(RemoteProtocol.SSH))
    received = b""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(10):
        while len(received) < len(capture):
            received += await connection.reader.read(65536)
    elapsed = loop.time() - started
    await connection.aclose()
    assert received == capture
    # The capture's syncs span 9 s (835483..844485 ms): at 50x, about 0.18 s.
    assert elapsed >= 9.0 / 50 * 0.9
