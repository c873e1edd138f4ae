"""A production install has no ``demo`` extra (openapi-core, PyYAML, which only
the simulated NetBird needs): ``broker serve --config`` runs without it, and
``broker serve`` without a config (the demo) says in one line what to install.

The missing extra is made real in a ``broker`` process: a ``sitecustomize``
on its PYTHONPATH makes both packages unimportable, as if never installed."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import auth
from tests.processes import free_port, start_broker_process, wait_ready

REPO = Path(__file__).resolve().parents[2]

BLOCKER = textwrap.dedent('''
    """Makes the demo extra's packages unimportable in this process."""
    import sys
    from importlib.abc import MetaPathFinder


    class _NotInstalled(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in {"openapi_core", "yaml"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, _NotInstalled())
    ''')


@pytest.fixture
def without_demo_extra(tmp_path: Path) -> str:
    """A PYTHONPATH under which openapi_core and yaml cannot be imported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return os.pathsep.join([str(site), str(REPO)])


async def test_demo_without_the_extra_exits_with_one_line_naming_it(
    tmp_path: Path, without_demo_extra: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env["PYTHONPATH"] = without_demo_extra
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "broker", "serve", "--port", str(free_port())),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert out == b""
    (line,) = err.decode().splitlines()
    assert "'demo' extra" in line and "pip install 'connection-broker[demo]'" in line
    assert "Traceback" not in line


async def test_serve_with_a_config_runs_without_the_extra(
    tmp_path: Path,
    without_demo_extra: str,
    write_config: Callable[..., Path],
    token: Callable[..., str],
) -> None:
    port = free_port()
    proc = start_broker_process(
        write_config(), port, tmp_path, env={"PYTHONPATH": without_demo_extra}
    )
    try:
        await wait_ready(port, proc)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/api/workspaces", headers=auth(token())) as r,
        ):
            assert r.status == 200
            assert "ws-linux-desktop" in {w["id"] for w in await r.json()}
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    assert "Traceback" not in (tmp_path / "broker.log").read_text()
