"""The command line as a user runs it: real ``python -m broker`` processes, each
bounded by a timeout, talking to the broker over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import jwt
import pytest
from alembic.script import ScriptDirectory

from broker.config import load_settings
from broker.core.auth import Authenticator
from broker.core.db import alembic_config, create_engine, current_revision
from tests.processes import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "cli-test-secret-0123456789-abcdefghijklmnop"
TIMEOUT = 60.0


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without any BROKER_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


async def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broker",
        *args,
        cwd=cwd,
        env=env or cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def write_config(directory: Path, text: str) -> Path:
    path = directory / "broker.toml"
    path.write_text(textwrap.dedent(text))
    return path


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    port: int
    stdout: list[str] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def line_starting(self, prefix: str) -> str:
        """The first stdout line starting with ``prefix``; fails if the process
        exits first or prints nothing like it within the deadline."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {prefix!r} line; stdout: {self.stdout}"
            raw = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            if not raw:
                await self.proc.wait()
                raise AssertionError(
                    f"broker exited ({self.proc.returncode}) before printing {prefix!r}: "
                    f"{self.stderr.decode()[-2000:]}"
                )
            line = raw.decode().strip()
            self.stdout.append(line)
            if line.startswith(prefix):
                return line

    async def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), TIMEOUT)


async def _drain(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    assert stream is not None
    while chunk := await stream.read(65536):
        into.extend(chunk)


@pytest.fixture
async def start_serve() -> AsyncIterator[object]:
    started: list[tuple[Server, asyncio.Task[None]]] = []

    async def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Server:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "broker",
            "serve",
            "--port",
            str(port),
            *args,
            cwd=cwd,
            env=env or cli_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        server = Server(proc, port)
        started.append((server, asyncio.create_task(_drain(proc.stderr, server.stderr))))
        return server

    yield start
    for server, drain in started:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()
        await drain


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- broker token ----------------------------------------------------------------


async def test_token_prints_the_requested_claims(tmp_path):
    conf = write_config(
        tmp_path,
        """
        [auth]
        issuer = "https://idp.test"
        audience = "cli-audience"
        """,
    )
    env = cli_env(BROKER_AUTH_HS256_SECRET=SECRET)
    args = ["--sub", "bob", "--email", "b@x", "--admin", "--role", "r", "--no-mfa", "--ttl", "60"]
    result = await run_cli("token", "--config", str(conf), *args, cwd=tmp_path, env=env)
    assert result.code == 0, result.err
    token = result.out.strip()
    assert "\n" not in token

    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="cli-audience", issuer="https://idp.test"
    )
    assert claims["sub"] == "bob"
    assert claims["email"] == "b@x"
    assert sorted(claims["roles"]) == ["admin", "r"]
    assert "mfa" not in claims["amr"]
    assert claims["exp"] - claims["iat"] == 60
    assert abs(claims["exp"] - (time.time() + 60)) < 30

    # And the broker reading that config takes it for what it says.
    auth = Authenticator(load_settings(conf, env={"BROKER_AUTH_HS256_SECRET": SECRET}).auth)
    try:
        who = await auth.authenticate(token)
    finally:
        await auth.aclose()
    assert (who.user_id, who.email, who.is_admin, who.mfa_verified) == ("bob", "b@x", True, False)
    assert who.roles == {"admin", "r"}


async def test_token_follows_the_configured_claims(tmp_path):
    conf = write_config(
        tmp_path,
        """
        [auth]
        roles_claim = "realm_access.roles"
        email_claim = "upn"
        admin_roles = ["broker-admins"]
        """,
    )
    env = cli_env(BROKER_AUTH_HS256_SECRET=SECRET)
    result = await run_cli(
        "token", "--config", str(conf), "--sub", "carol", "--email", "c@x", "--admin",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.code == 0, result.err
    auth = Authenticator(load_settings(conf, env={"BROKER_AUTH_HS256_SECRET": SECRET}).auth)
    try:
        who = await auth.authenticate(result.out.strip())
    finally:
        await auth.aclose()
    assert who.is_admin
    assert who.email == "c@x"
    assert who.mfa_verified


async def test_token_admin_without_admin_roles_is_a_clear_error(tmp_path):
    conf = write_config(tmp_path, "[auth]\nadmin_roles = []\n")
    env = cli_env(BROKER_AUTH_HS256_SECRET=SECRET)
    result = await run_cli("token", "--config", str(conf), "--admin", cwd=tmp_path, env=env)
    assert result.code == 2
    assert "auth.admin_roles" in result.err
    assert "Traceback" not in result.err


async def test_token_needs_an_hs256_secret(tmp_path):
    conf = write_config(tmp_path, '[auth]\njwks_url = "https://idp.test/jwks.json"\n')
    result = await run_cli("token", "--config", str(conf), cwd=tmp_path)
    assert result.code == 2
    assert "HS256" in result.err
    assert result.out == ""


# -- configuration errors -----------------------------------------------------------


async def test_serve_with_an_unknown_key_exits_2_naming_it(tmp_path):
    conf = write_config(tmp_path, "[server]\nprot = 9000\n")
    env = cli_env(BROKER_AUTH_HS256_SECRET=SECRET)
    result = await run_cli("serve", "--config", str(conf), cwd=tmp_path, env=env)
    assert result.code == 2
    assert "server.prot" in result.err
    assert "Traceback" not in result.err


async def test_serve_with_an_inline_secret_exits_2_without_echoing_it(tmp_path):
    conf = write_config(tmp_path, '[netbird]\ntoken = "nbp_do-not-print-me"\n')
    result = await run_cli("serve", "--config", str(conf), cwd=tmp_path)
    assert result.code == 2
    assert "netbird.token" in result.err
    assert "do-not-print-me" not in result.err + result.out


# -- dev secret and listening address --------------------------------------------------


async def test_dev_secret_refuses_a_public_address(tmp_path):
    port = str(free_port())
    result = await run_cli("serve", "--host", "0.0.0.0", "--port", port, cwd=tmp_path)
    assert result.code == 2
    assert "--insecure-dev" in result.err
    assert "Traceback" not in result.err


async def test_insecure_dev_allows_a_public_address(tmp_path, start_serve, http):
    server = await start_serve("--host", "0.0.0.0", "--insecure-dev", cwd=tmp_path)
    await server.line_starting("broker listening on")
    async with http.get(f"{server.base}/healthz") as r:
        assert r.status == 200
    assert await server.stop() == 0


async def test_serve_with_a_config_prints_no_token(tmp_path, start_serve, http):
    """Only the demo prints a live token: with --config and an HS256 secret the
    broker says where it listens, and nothing anyone could use to sign in. Its
    data directory is the config's, not the working directory's."""
    (tmp_path / "conf").mkdir()
    conf = write_config(tmp_path / "conf", '[server]\ndata_dir = "state"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cli_env(BROKER_AUTH_HS256_SECRET=SECRET)
    server = await start_serve("--config", str(conf), cwd=elsewhere, env=env)
    await server.line_starting("broker listening on")
    async with http.get(f"{server.base}/healthz") as r:
        assert r.status == 200
    assert await server.stop() == 0
    assert server.proc.stdout is not None
    printed = "\n".join(server.stdout) + (await server.proc.stdout.read()).decode()
    assert "token" not in printed and "eyJ" not in printed
    assert (tmp_path / "conf" / "state" / "broker.db").exists()
    assert not (elsewhere / "state").exists()


# What `broker serve` must never hold in production: the demo's simulators,
# the PostgreSQL driver on SQLite, Alembic once the schema is current, and
# anything of the test suite's. Each is megabytes of every replica's memory.
NOT_IN_PRODUCTION = (
    "protocols.simulated",
    "tunnels.simulated",
    "broker.demo",
    "openapi_core",
    "yaml",
    "asyncpg",
    "alembic",
    "hypothesis",
    "schemathesis",
    "pytest",
)

# Loaded by the broker process itself (it is on PYTHONPATH): writes the names of
# the modules loaded when the process exits.
LOADED_MODULES_HOOK = """\
import atexit, os, sys

def _write():
    with open(os.environ["LOADED_MODULES_FILE"], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))

atexit.register(_write)
"""


async def test_serve_with_a_config_holds_only_what_it_serves_with(tmp_path, start_serve, http):
    """A production broker (a config, SQLite migrated by `broker migrate`)
    serves requests and stops on SIGTERM without ever loading the demo, test
    libraries, the PostgreSQL driver or, its schema being current, Alembic."""
    conf = write_config(
        tmp_path,
        """
        [server]
        data_dir = "state"
        [auth]
        issuer = "prod-issuer"
        audience = "prod-audience"
        [[workspaces]]
        id = "ws-a"
        name = "A"
        type = "vnc"
        [[workspaces]]
        id = "ws-b"
        name = "B"
        type = "ssh"
        """,
    )
    migrated = await run_cli(
        "migrate", "--config", str(conf), cwd=tmp_path, env=cli_env(BROKER_AUTH_HS256_SECRET=SECRET)
    )
    assert migrated.code == 0, migrated.err
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(LOADED_MODULES_HOOK)
    loaded_file = tmp_path / "modules.txt"
    env = cli_env(
        BROKER_AUTH_HS256_SECRET=SECRET,
        BROKER_GUACD_HEALTH_CHECK_SECONDS="0",
        PYTHONPATH=os.pathsep.join([str(hook), str(REPO)]),
        LOADED_MODULES_FILE=str(loaded_file),
    )
    server = await start_serve("--config", str(conf), cwd=tmp_path, env=env)
    await server.line_starting("broker listening on")
    token = jwt.encode(
        {
            "sub": "pat",
            "email": "pat@example.com",
            "iss": "prod-issuer",
            "aud": "prod-audience",
            "exp": int(time.time()) + 600,
            "amr": ["mfa"],
        },
        SECRET,
        algorithm="HS256",
    )
    async with http.get(f"{server.base}/api/workspaces", headers=bearer(token)) as r:
        assert r.status == 200, await r.text()
        assert {w["id"] for w in await r.json()} == {"ws-a", "ws-b"}
    assert await server.stop() == 0
    loaded = loaded_file.read_text().split()
    assert "broker.web.relay" in loaded  # the hook saw the broker's own modules
    held = [m for m in loaded if any(m == n or m.startswith(f"{n}.") for n in NOT_IN_PRODUCTION)]
    assert held == []


# -- demo mode ---------------------------------------------------------------------------


async def test_demo_token_works_against_demo_serve(tmp_path, start_serve, http):
    result = await run_cli("token", "--sub", "dana", "--email", "dana@example.com", cwd=tmp_path)
    assert result.code == 0, result.err
    secret_file = tmp_path / "data" / "dev-hs256.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()

    server = await start_serve(cwd=tmp_path)
    portal = await server.line_starting("portal:")
    printed = portal.split("#token=", 1)[1]
    for token, user in [(result.out.strip(), "dana"), (printed, "demo-user")]:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience="connection-broker")
        assert claims["sub"] == user
        async with http.get(f"{server.base}/api/me", headers=bearer(token)) as r:
            assert r.status == 200
            assert (await r.json())["user_id"] == user
    assert secret_file.read_text().strip() == secret
    assert await server.stop() == 0


async def test_make_run_smoke(tmp_path, start_serve, http):
    """What a newcomer does after `make run`: copy the printed token, launch the
    Linux desktop, stop it, stop the broker."""
    server = await start_serve(cwd=tmp_path)
    portal = await server.line_starting("portal:")
    assert portal.startswith(f"portal: http://127.0.0.1:{server.port}/#token=")
    headers = bearer(portal.split("#token=", 1)[1])

    async with http.get(f"{server.base}/readyz") as r:
        assert r.status == 200, await r.text()
    async with http.post(
        f"{server.base}/api/workspaces/ws-linux-desktop/launch", headers=headers
    ) as r:
        assert r.status == 201, await r.text()
        session_id = (await r.json())["session_id"]
    async with http.get(f"{server.base}/api/sessions/active", headers=headers) as r:
        assert [s["id"] for s in await r.json()] == [session_id]
    async with http.post(
        f"{server.base}/api/workspaces/ws-linux-desktop/stop", headers=headers
    ) as r:
        assert r.status == 200, await r.text()
    async with http.get(f"{server.base}/api/sessions", headers=headers) as r:
        [session] = await r.json()
    assert session["id"] == session_id
    assert session["status"] == "terminated"
    assert session["ended_at"] is not None

    assert await server.stop() == 0
    assert "Traceback" not in server.stderr.decode()
    assert (tmp_path / "data" / "broker.db").exists()


# -- broker migrate ---------------------------------------------------------------------


@pytest.mark.db
async def test_migrate_creates_the_schema(tmp_path, database_url):
    conf = write_config(tmp_path, f'[database]\nurl = "{database_url}"\n')
    env = cli_env(BROKER_AUTH_HS256_SECRET=SECRET)
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) is None
        for _ in range(2):  # the second run finds nothing to do
            result = await run_cli("migrate", "--config", str(conf), cwd=tmp_path, env=env)
            assert result.code == 0, result.err
            assert "newest schema" in result.out
            assert await current_revision(engine) == head
    finally:
        await engine.dispose()
