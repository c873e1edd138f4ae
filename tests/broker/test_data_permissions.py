"""The broker's own state is private to its user, whatever the umask: the data
directory 0700; the SQLite database and its WAL and SHM files 0600; the
development secret 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.config import load_settings
from tests.broker.apiclient import Api
from tests.conftest import TEST_SECRET, WORKSPACES_TOML


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A common umask that leaves new files world-readable (0644, 0755)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
async def test_database_and_data_dir_are_private_after_a_launch(
    tmp_path: Path, start_broker: Callable[..., Any], token: Callable[..., str]
) -> None:
    shared = tmp_path / "srv"
    shared.mkdir(mode=0o755)
    data = shared / "state" / "broker"  # neither exists yet
    config = tmp_path / "broker.toml"
    config.write_text(f'[server]\ndata_dir = "{data}"\n' + WORKSPACES_TOML)  # default database
    env = {"BROKER_AUTH_HS256_SECRET": TEST_SECRET, "BROKER_GUACD_HEALTH_CHECK_SECONDS": "0"}
    settings = load_settings(config, env=env)  # no guacd runs: its checks off
    assert settings.database_url.endswith(f"{data}/broker.db")
    api = Api(await start_broker(settings))

    r = await api.launch("ws-linux-desktop", token())
    assert r.status == 201, r.body

    database = data / "broker.db"
    files = [database, data / "broker.db-wal", data / "broker.db-shm"]
    assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    assert oct(mode(data)) == "0o700"
    assert oct(mode(data.parent)) == "0o700"  # created for the broker too
    assert oct(mode(shared)) == "0o755"  # what existed is left alone


@pytest.mark.usefixtures("permissive_umask")
def test_demo_data_dir_and_secret_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={})
    assert settings.auth.dev_secret is True
    assert oct(mode(tmp_path / "data")) == "0o700"
    assert oct(mode(tmp_path / "data" / "dev-hs256.secret")) == "0o600"
