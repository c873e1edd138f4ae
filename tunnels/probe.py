"""TCP reachability probe: does ``host:port`` accept a connection yet?

NetBird's ``connected`` flag only says a peer talks to the management
server, not that a WireGuard path from this host is up, so a grant is probed
before it is handed over. The probe opens and closes a TCP connection and
sends nothing; it never raises for a network failure, it reports.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """``attempts`` connects, ``interval`` seconds apart, each cut off after
    ``connect_timeout``: the probe takes at most about
    ``attempts * (connect_timeout + interval)`` seconds. The NetBird provider's
    defaults are in `tunnels.netbird.settings`."""

    attempts: int
    interval: float
    connect_timeout: float


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    attempts: int
    last_error: str = ""


async def probe_tcp(host: str, port: int, settings: ProbeSettings) -> ProbeResult:
    """Try to connect until one attempt succeeds or the attempts run out."""
    error = ""
    for attempt in range(1, settings.attempts + 1):
        error = await _connect_once(host, port, settings.connect_timeout)
        if not error:
            return ProbeResult(True, attempt)
        if attempt < settings.attempts:
            await asyncio.sleep(settings.interval)
    return ProbeResult(False, settings.attempts, error)


async def _connect_once(host: str, port: int, limit: float) -> str:
    """``""`` when a connection opened, else why not."""
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"no answer within {limit:g}s"
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else type(exc).__name__
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the peer may reset a connection that sent nothing; it did accept it
    return ""
