"""Periodic background work (revoke retries, and later the reaper and the
tunnel reconciler), each loop isolated so one failing pass never stops it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``job`` every ``interval`` seconds until `aclose`."""

    def __init__(self, name: str, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self._interval = interval
        self._job = job
        self._task: asyncio.Task[None] | None = None
        self.passes = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            try:
                await self._job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background job %s failed; retrying next pass", self.name)
            self.passes += 1
            await asyncio.sleep(self._interval)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
