"""The demo: every simulated adapter started in-process, so ``make run`` shows a
live desktop and a web app with the production client code in the path.

- a simulated NetBird Management API (tunnels.simulated) with a gateway group
  and one peer per demo workspace on 127.64.0.x; the broker uses the real
  NetBird provider against it, so sessions show ``encrypted``;
- a simulated guacd (protocols.simulated.guacd) drawing a desktop that answers
  mouse and keyboard;
- a simulated web app (protocols.simulated.webapp) listening on the HTML5
  workspace peer's address.

`demo_environment` yields the settings with the adapters' real addresses.

The simulators are imported only here, inside the functions, so a broker
with a config file never loads them. The simulated NetBird needs the
``demo`` extra (openapi-core, PyYAML): without it `check_available` raises
`DemoUnavailable`, which says what to install.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from broker.config import HostPort, Settings, WorkspaceConfig
from tunnels.netbird.settings import NetBirdSettings

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'connection-broker[demo]'"
_SIMULATORS = (
    "tunnels.simulated.server",
    "tunnels.simulated.seed",
    "protocols.simulated.guacd",
    "protocols.simulated.webapp",
)


class DemoUnavailable(RuntimeError):
    """The demo's simulators cannot be imported: the ``demo`` extra is missing."""


def check_available() -> None:
    """Import the simulators; raise `DemoUnavailable` (naming the missing
    module and the extra to install) when one cannot be imported."""
    for name in _SIMULATORS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise DemoUnavailable(
                f"the demo (broker serve without --config) needs the 'demo' extra, "
                f"{exc.name} is missing: {INSTALL_HINT}"
            ) from exc


@asynccontextmanager
async def demo_environment(settings: Settings) -> AsyncIterator[Settings]:
    """Start the simulated adapters; yield ``settings`` pointed at them.

    Raises `DemoUnavailable` when the ``demo`` extra is not installed."""
    check_available()
    from protocols.simulated.guacd import SimulatedGuacd, SimulatedGuacdOptions
    from tunnels.simulated.seed import demo_seed
    from tunnels.simulated.server import SimulatedNetBird

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
    from protocols.simulated.webapp import SimulatedWebApp

    app = SimulatedWebApp()
    await app.start(host=address, port=0)
    stack.push_async_callback(app.aclose)
    return dataclasses.replace(ws, host=address, port=app.port)
