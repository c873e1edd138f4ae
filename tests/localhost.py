"""``localhost`` names for test clients: Chromium sends ``*.localhost`` to
loopback, and so must aiohttp clients that visit HTML5 app origins."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class LocalhostResolver(AbstractResolver):
    """``localhost`` and ``*.localhost`` are loopback, like in Chromium."""

    def __init__(self) -> None:
        self._default = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host == "localhost" or host.endswith(".localhost"):
            return [
                ResolveResult(
                    hostname=host,
                    host="127.0.0.1",
                    port=port,
                    family=socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        return await self._default.resolve(host, port, family)

    async def close(self) -> None:
        await self._default.close()
