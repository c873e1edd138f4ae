"""Small helpers of the real-guacd scenarios: a viewer on a freshly launched
workspace, and bounded waits for effects outside the broker."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

from tests.broker.apiclient import Api
from tests.broker.viewer_support import launch
from tests.integration.client import Viewer, open_viewer

EFFECT_LIMIT = 15.0


async def launch_viewer(api: Api, token: str, workspace_id: str) -> tuple[Viewer, str]:
    """Launch ``workspace_id`` and open its viewer tunnel: the viewer and the session id."""
    launched = await launch(api, token, workspace_id)
    viewer = await open_viewer(api, launched["session_id"], launched["viewer_token"])
    return viewer, launched["session_id"]


async def eventually(check: Callable[[], bool], what: str, limit: float = EFFECT_LIMIT) -> None:
    """Poll ``check`` (an effect on the remote side: a file, a selection)
    until it holds; fails after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit} s: {what}")
        await asyncio.sleep(0.1)


def x_selection(display: str, selection: str) -> str:
    """The text of an X selection (``primary``/``clipboard``) on ``display``."""
    result = subprocess.run(
        ["xclip", "-o", "-selection", selection],
        env={"DISPLAY": display},
        capture_output=True,
        timeout=5,
        check=False,
    )
    return result.stdout.decode(errors="replace")
