"""Periodic background work (revoke retries, the reaper, the tunnel
reconciler, guacd health checks, the retention pruner), each loop isolated so
one failing pass never stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``job`` every ``interval`` seconds until `aclose`, the first time
    after ``first_delay`` seconds (at once by default); `wake` runs the next
    pass now."""

    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], Awaitable[object]],
        *,
        first_delay: float = 0.0,
    ) -> None:
        self.name = name
        self._interval = interval
        self._job = job
        self._first_delay = first_delay
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.passes = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        if self._first_delay > 0:
            await asyncio.sleep(self._first_delay)
        while True:
            # Cleared before the pass: a wake during it may come from news the
            # pass has already missed, so it earns another pass right after.
            self._wake.clear()
            try:
                await self._job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background job %s failed; retrying next pass", self.name)
            self.passes += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    def wake(self) -> None:
        """Run the next pass now instead of at the end of the interval (once,
        however many wakes come before it starts)."""
        self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
