"""``[demo]``, and the embedded configuration the broker runs on without a config file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoSettings:
    enabled: bool = False


DEMO_CONFIG: dict[str, Any] = {
    "demo": {"enabled": True},
    "tunnel": {"provider": "netbird"},
    "workspaces": [
        {
            "id": "ws-linux-desktop",
            "name": "Linux Desktop",
            "type": "linux",
            "protocol": "vnc",
            "description": "A simulated Linux desktop over VNC.",
            "peer": "ws-linux-desktop",
        },
        {
            "id": "ws-windows-server",
            "name": "Windows Server",
            "type": "rdp",
            "description": "A simulated Windows desktop over RDP; it asks for your login.",
            "peer": "ws-windows-desktop",
        },
        {
            "id": "ws-team-wiki",
            "name": "Team Wiki",
            "type": "html5",
            "description": "A simulated internal web app.",
            "peer": "ws-web-app",
        },
    ],
}
