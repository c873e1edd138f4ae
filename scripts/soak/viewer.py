"""One soak viewer stream, as guacamole-common-js runs it, and the error tally
every stream reports to."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

DISPLAY = "GUAC_WIDTH=1024&GUAC_HEIGHT=768&GUAC_DPI=96&GUAC_IMAGE=image/png"
ECHO_LIMIT = 15.0  # guacamole-common-js closes a tunnel silent this long
SYNC = re.compile(r"4\.sync,(\d+)\.(\d+)")


@dataclass
class Errors:
    """Every error of the run, counted by kind, with the first 20 as examples."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Viewer:
    """One stream, as guacamole-common-js runs it: it acknowledges each
    ``sync``, pings every 500 ms and expects the echo, and presses a key every
    ``key_every`` seconds. Anything unasked (a close, a late echo) goes to
    ``errors``. `run` until `close`; ``first_sync`` is set at the first frame."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        errors: Errors,
        session_id: str,
        token: str,
        key_every: float,
    ) -> None:
        self.http = http
        self.base = base
        self.errors = errors
        self.session_id = session_id
        self.token = token
        self.key_every = key_every
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closing = False
        self.frames = 0
        self.bytes = 0
        self.syncs = 0
        self.last_echo = time.monotonic()
        self.first_sync = asyncio.Event()

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed

    async def run(self) -> None:
        url = f"{self.base}/viewer/{self.session_id}/websocket-tunnel?token={self.token}&{DISPLAY}"
        try:
            self.ws = await self.http.ws_connect(url, protocols=("guacamole",))
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors.add("connect", f"{self.session_id}: {type(exc).__name__}: {exc}")
            return
        tasks = [asyncio.create_task(self._pings()), asyncio.create_task(self._keys())]
        try:
            await self._read()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self) -> None:
        assert self.ws is not None
        ws = self.ws
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: str = msg.data
            self.frames += 1
            self.bytes += len(data)
            if data.startswith("0.,4.ping,"):
                self.last_echo = time.monotonic()
                continue
            for match in SYNC.finditer(data):
                self.syncs += 1
                self.first_sync.set()
                # The client acknowledges each frame, which keeps guacd's
                # silence watchdog quiet.
                await self._send(f"4.sync,{match.group(1)}.{match.group(2)};")
        if not self.closing:
            self.errors.add(
                "stream closed",
                f"{self.session_id}: code {ws.close_code} after {self.frames} frames",
            )

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if time.monotonic() - self.last_echo > ECHO_LIMIT and not self.closing:
                self.errors.add("echo late", f"{self.session_id}: no echo for 15 s")
                self.last_echo = time.monotonic()
            ms = str(int(time.time() * 1000))
            await self._send(f"0.,4.ping,{len(ms)}.{ms};")

    async def _keys(self) -> None:
        await asyncio.sleep(self.key_every * (0.2 + 0.8 * secrets.randbelow(1000) / 1000))
        while True:
            await self._send("3.key,2.65,1.1;")
            await self._send("3.key,2.65,1.0;")
            await asyncio.sleep(self.key_every)

    async def _send(self, text: str) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(text)

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()
