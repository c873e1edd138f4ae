"""Background loops: each runs on its interval, and a wake (the event bus
listening again after a gap) runs the next pass at once."""

from __future__ import annotations

import asyncio

from broker.core.background import Periodic
from broker.core.pgevents import retry_delay


async def test_a_wake_runs_the_next_pass_now_not_an_interval_later() -> None:
    passes: asyncio.Queue[int] = asyncio.Queue()
    count = 0

    async def job() -> None:
        nonlocal count
        count += 1
        passes.put_nowait(count)

    loop = Periodic("test", 3600, job)
    loop.start()
    try:
        assert await asyncio.wait_for(passes.get(), 5) == 1  # the first pass, at start
        loop.wake()
        assert await asyncio.wait_for(passes.get(), 5) == 2
    finally:
        await loop.aclose()


def test_reconnecting_backs_off_from_a_short_first_wait_to_a_cap() -> None:
    waits = [retry_delay(n, 0.25, 10.0) for n in range(1, 9)]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
