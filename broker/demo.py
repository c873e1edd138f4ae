"""The demo: every simulated adapter started in-process, so ``make run`` shows a
live desktop and a web app with the production client code in the path.

- a simulated NetBird Management API (tunnels.simulated) with a gateway group
  and one peer per demo workspace on 127.64.0.x; the broker uses the real
  NetBird provider against it, so sessions show ``encrypted``;
- a simulated guacd (protocols.simulated_guacd) drawing a desktop that answers
  mouse and keyboard;
- a simulated web app (protocols.simulated_webapp) listening on the HTML5
  workspace peer's address.

`demo_environment` yields the settings with the adapters' real addresses.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from broker.config import HostPort, Settings, WorkspaceConfig
from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions
from protocols.simulated.webapp import SimulatedWebApp
from tunnels.netbird.settings import NetBirdSettings
from tunnels.simulated.seed import demo_seed
from tunnels.simulated.server import SimulatedNetBird

log = logging.getLogger(__name__)


@asynccontextmanager
async def demo_environment(settings: Settings) -> AsyncIterator[Settings]:
    """Start the simulated adapters; yield ``settings`` pointed at them."""
    async with AsyncExitStack() as stack:
        seed = demo_seed()
        netbird = SimulatedNetBird(seed)
        await netbird.start(host="127.0.0.1", port=0)
        stack.push_async_callback(netbird.aclose)
        # The Windows demo has no stored credentials: guacd asks, the viewer prompts.
        guacd = SimulatedGuacd(SimulatedGuacdOptions(ask_credentials=frozenset({"rdp"})))
        await guacd.start(host="127.0.0.1", port=0)
        stack.push_async_callback(guacd.aclose)
        peers = {peer.name: peer.ip for peer in seed.workspaces}
        workspaces = []
        for ws in settings.workspaces:
            if ws.type == "html5":
                ws = await _start_webapp(stack, ws, peers.get(ws.peer, "127.0.0.1"))
            workspaces.append(ws)
        log.info(
            "demo: simulated NetBird at %s, simulated guacd at 127.0.0.1:%d",
            netbird.url,
            guacd.port,
        )
        yield dataclasses.replace(
            settings,
            workspaces=tuple(workspaces),
            tunnel=dataclasses.replace(settings.tunnel, provider="netbird"),
            netbird=NetBirdSettings(base_url=netbird.url, token=netbird.token),
            guacd=dataclasses.replace(
                settings.guacd, endpoints=(HostPort("127.0.0.1", guacd.port),)
            ),
        )


async def _start_webapp(
    stack: AsyncExitStack, ws: WorkspaceConfig, address: str
) -> WorkspaceConfig:
    app = SimulatedWebApp()
    await app.start(host=address, port=0)
    stack.push_async_callback(app.aclose)
    return dataclasses.replace(ws, host=address, port=app.port)
