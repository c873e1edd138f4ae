"""The guacd pool against two simulated guacds on loopback: health checks by
handshake, new connections on the least-loaded healthy guacd, a guacd that
goes away skipped until its check passes again, and joining a live
connection on the guacd that holds it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from protocols.errors import NoGuacdAvailable
from protocols.guacd import GuacdConnection, GuacdEndpoint
from protocols.guacd_pool import GuacdPool
from protocols.simulated.guacd import Failure, SimulatedGuacd
from tests.protocols.helpers import FAST, request_for

StartGuacd = Callable[..., Awaitable[SimulatedGuacd]]


def endpoint(server: SimulatedGuacd) -> GuacdEndpoint:
    return GuacdEndpoint("127.0.0.1", server.port)


def where(pool: GuacdPool) -> dict[int, tuple[bool | None, int]]:
    """port -> (healthy, live connections)."""
    return {s.endpoint.port: (s.healthy, s.live) for s in pool.states()}


@pytest.fixture
async def two(start_guacd: StartGuacd) -> tuple[SimulatedGuacd, SimulatedGuacd]:
    return await start_guacd(), await start_guacd()


async def test_checks_are_handshakes_that_open_no_remote_connection(two):
    a, b = two
    pool = GuacdPool([endpoint(a), endpoint(b)], timeouts=FAST)
    assert not pool.healthy() and pool.available()  # unknown before the first check

    await pool.check_all()

    assert where(pool) == {a.port: (True, 0), b.port: (True, 0)}
    assert pool.healthy()
    # Each check reached guacd's `args` and left: no connection to a desktop.
    assert (a.connections, b.connections) == (1, 1)
    assert (len(a.handshakes), len(b.handshakes)) == (0, 0)


async def test_connections_go_to_the_least_loaded_and_are_recorded(two):
    a, b = two
    pool = GuacdPool([endpoint(a), endpoint(b)], timeouts=FAST)
    await pool.check_all()
    opened: list[GuacdConnection] = []
    for tag in ("s1", "s2", "s3"):
        opened.append(await pool.connect(request_for(), tag=tag))

    assert [c.endpoint.port for c in opened] == [a.port, b.port, a.port]
    assert where(pool) == {a.port: (True, 2), b.port: (True, 1)}
    (second,) = pool.live("s2")
    assert (second.endpoint, second.connection_id) == (endpoint(b), opened[1].connection_id)

    await opened[0].aclose()
    await opened[2].aclose()
    assert where(pool) == {a.port: (True, 0), b.port: (True, 1)}
    # The next one goes to the guacd with fewer live connections: a.
    fourth = await pool.connect(request_for(), tag="s4")
    assert fourth.endpoint == endpoint(a)
    for connection in (opened[1], fourth):
        await connection.aclose()
    assert pool.live() == []


async def test_a_guacd_that_goes_away_is_skipped_until_it_passes_again(start_guacd: StartGuacd):
    a, b = await start_guacd(), await start_guacd()
    a_port = a.port
    pool = GuacdPool([endpoint(a), endpoint(b)], timeouts=FAST)
    await pool.check_all()
    live = await pool.connect(request_for(), tag="on-a")
    assert live.endpoint.port == a_port

    await a.aclose()  # guacd a dies mid-run, its viewer with it
    assert await live.reader.read() == b""  # what the relay sees, before closing its end
    await live.aclose()
    await pool.check_all()

    assert where(pool)[a_port][0] is False and pool.healthy()
    spread = [await pool.connect(request_for()) for _ in range(3)]
    assert {c.endpoint.port for c in spread} == {b.port}
    (state,) = [s for s in pool.states() if s.endpoint.port == a_port]
    assert state.failures == 1 and state.last_error

    # Back on the same port: the next check lets it take connections again.
    revived = SimulatedGuacd(a.options)
    await revived.start(port=a_port)
    async with revived:
        await pool.check_all()
        assert where(pool)[a_port] == (True, 0)
        back = await pool.connect(request_for())
        assert back.endpoint.port == a_port
        for connection in (back, *spread):
            await connection.aclose()


async def test_both_down_fails_fast_without_trying(two):
    a, b = two
    pool = GuacdPool([endpoint(a), endpoint(b)], timeouts=FAST)
    await pool.check_all()
    await a.aclose()
    await b.aclose()
    await pool.check_all()

    assert not pool.healthy() and not pool.available()
    tried = (a.connections, b.connections)
    with pytest.raises(NoGuacdAvailable, match="none passed its last health check"):
        await pool.connect(request_for())
    assert (a.connections, b.connections) == tried  # nothing was tried: fail fast


async def test_a_failure_before_ready_fails_over_and_marks_the_guacd(two):
    a, b = two
    pool = GuacdPool([endpoint(a), endpoint(b)], timeouts=FAST)
    await pool.check_all()
    a.inject(Failure.EOF_BEFORE_READY)

    connection = await pool.connect(request_for())

    assert connection.endpoint == endpoint(b)
    assert where(pool) == {a.port: (False, 0), b.port: (True, 1)}
    await connection.aclose()


async def test_a_viewer_joins_a_live_connection_on_its_guacd(two):
    a, b = two
    pool = GuacdPool([endpoint(a), endpoint(b)], timeouts=FAST)
    await pool.check_all()
    await (await pool.connect(request_for())).aclose()  # a has 0, b is next by order
    owner = await pool.connect(request_for(), tag="shared")
    (live,) = pool.live("shared")

    joined = await pool.connect_on(
        live.endpoint, request_for(join=live.connection_id, read_only=True), tag="shared"
    )

    assert joined.endpoint == owner.endpoint
    assert len(pool.live("shared")) == 2
    for connection in (joined, owner):
        await connection.aclose()


async def test_without_checks_every_guacd_is_always_tried(start_guacd: StartGuacd):
    down = GuacdEndpoint("127.0.0.1", 9)  # nothing listens there
    up = await start_guacd()
    pool = GuacdPool([down, endpoint(up)], timeouts=FAST, recheck=False)
    assert pool.healthy() and pool.available()
    for _ in range(2):  # the dead one is tried again each time, then fails over
        connection = await pool.connect(request_for())
        assert connection.endpoint == endpoint(up)
        await connection.aclose()
    assert [s.failures for s in pool.states()] == [2, 0]
