"""Fixtures of the real-guacd suite: Apache guacd 1.5.5 and real servers on
loopback ports chosen at run time, and a broker pointed at them.

Session-scoped (started once, stopped at the end of the run): ``guacd``,
``unix_user``, ``vnc_server`` (Xvfb + xterm + x11vnc), ``tigervnc_server``
(Xtigervnc + xterm), ``rdp_tls_server`` and ``rdp_nla_server`` (FreeRDP's
shadow server on a second Xvfb), ``ssh_server`` (a private sshd). Per test:
``real_broker`` starts a broker (``direct`` tunnel provider) whose guacd
endpoint is ``guacd`` and whose workspaces the test gives, built with
`workspace`.

Without guacd, or without a server or root where one is needed, the tests
skip with one line saying what is missing; with ``BROKER_REQUIRE_REAL_GUACD=1``
(CI) that is a failure instead, so CI always runs them.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.broker.apiclient import Api
from tests.integration import servers
from tests.integration.servers import Display, Endpoint, Running, Server, UnixUser

UNIX_USER = "guactest"
UNIX_PASSWORD = "guactest-Pa55"  # a throwaway account, loopback-only servers
VNC_PASSWORD = "vncpass1"  # VNC passwords are 8 characters at most


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when the run must use the real daemon (CI)."""
    if os.environ.get(servers.REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason} ({servers.REQUIRE_VARIABLE}=1)", pytrace=False)
    pytest.skip(reason)


def need_programs(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None and not Path(n).exists()]
    if missing:
        unavailable(
            f"missing {', '.join(missing)}: bash scripts/install-system-deps.sh installs them"
        )


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"{what} needs root (a local user for PAM, a private sshd)")


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the servers keep their files and logs for this run."""
    return tmp_path_factory.mktemp("real")


@pytest.fixture(scope="session")
def guacd(real_dir: Path) -> Iterator[Endpoint]:
    """guacd: the daemon at ``GUACD_HOST``/``GUACD_PORT`` when set (e.g. the
    official container), else ``$GUACD`` or /opt/guacd/sbin/guacd started in
    the foreground on a free loopback port (its log: ``guacd.log`` in the
    run's ``real`` folder)."""
    host = os.environ.get("GUACD_HOST")
    if host:
        yield Endpoint(host, int(os.environ.get("GUACD_PORT", "4822")))
        return
    binary = servers.guacd_binary()
    if binary is None:
        unavailable(servers.HOW_TO_GET_GUACD)
    running, endpoint = servers.start_guacd(binary, real_dir)
    try:
        yield endpoint
    finally:
        running.stop()


@pytest.fixture(scope="session")
def guacd_log(real_dir: Path) -> Path:
    """guacd's log when this run started it (absent for ``GUACD_HOST``)."""
    return real_dir / "guacd.log"


@pytest.fixture(scope="session")
def unix_user() -> UnixUser:
    """The local account RDP and SSH log in as through PAM (created when
    missing; its password is set each run)."""
    need_root("RDP and SSH log-in")
    need_programs("useradd", "chpasswd")
    return servers.ensure_unix_user(UNIX_USER, UNIX_PASSWORD)


def _stopped_at_end(request: pytest.FixtureRequest, running: Running) -> None:
    request.addfinalizer(running.stop)


@pytest.fixture(scope="session")
def vnc_display(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Display:
    """An Xvfb display with an xterm covering it (keyboard focus follows the
    pointer)."""
    need_programs("Xvfb", "xterm")
    where = tmp_path_factory.mktemp("vnc-display")
    running, display = servers.start_xvfb(where)
    _stopped_at_end(request, running)
    _stopped_at_end(request, servers.start_xterm(display, where))
    return display


@pytest.fixture(scope="session")
def vnc_server(vnc_display: Display, real_dir: Path) -> Iterator[Server]:
    """x11vnc showing ``vnc_display``, password ``VNC_PASSWORD``."""
    need_programs("x11vnc")
    running, server = servers.start_vnc(vnc_display, real_dir, VNC_PASSWORD)
    try:
        yield server
    finally:
        running.stop()


@pytest.fixture(scope="session")
def tigervnc_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Server:
    """TigerVNC's Xtigervnc (an X server with VNC built in) with an xterm,
    password ``VNC_PASSWORD``: the clipboard scenarios' server."""
    need_programs("Xtigervnc", "xterm", "xclip", "x11vnc")  # x11vnc writes the password file
    where = tmp_path_factory.mktemp("tigervnc")
    running, server = servers.start_tigervnc(where, VNC_PASSWORD)
    _stopped_at_end(request, running)
    assert server.display is not None
    _stopped_at_end(request, servers.start_xterm(server.display, where))
    return server


@pytest.fixture(scope="session")
def rdp_display(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Display:
    """A second Xvfb display, shadowed by the RDP servers."""
    need_programs("Xvfb")
    running, display = servers.start_xvfb(tmp_path_factory.mktemp("rdp-display"))
    _stopped_at_end(request, running)
    return display


@pytest.fixture(scope="session")
def rdp_tls_server(rdp_display: Display, unix_user: UnixUser, real_dir: Path) -> Iterator[Server]:
    """FreeRDP's shadow server, TLS security, the password checked by PAM."""
    need_programs("freerdp-shadow-cli")
    running, server = servers.start_rdp(rdp_display, real_dir, unix_user, nla=False)
    try:
        yield server
    finally:
        running.stop()


@pytest.fixture(scope="session")
def rdp_nla_server(rdp_display: Display, unix_user: UnixUser, real_dir: Path) -> Iterator[Server]:
    """FreeRDP's shadow server, NLA only (NTLM hash from a WinPR SAM file)."""
    need_programs("freerdp-shadow-cli", "winpr-hash")
    running, server = servers.start_rdp(rdp_display, real_dir, unix_user, nla=True)
    try:
        yield server
    finally:
        running.stop()


@pytest.fixture(scope="session")
def ssh_server(unix_user: UnixUser, real_dir: Path) -> Iterator[Server]:
    """A private OpenSSH server on a free loopback port, ``unix_user`` only."""
    need_root("a private sshd")
    need_programs("/usr/sbin/sshd", "ssh-keygen")
    running, server = servers.start_sshd(real_dir, unix_user)
    try:
        yield server
    finally:
        running.stop()


def workspace(
    id: str,
    protocol: str,
    server: Server,
    *,
    password_file: Path | None = None,
    username: str | None = None,
    **keys: Any,
) -> str:
    """One ``[[workspaces]]`` table reaching ``server``. ``keys`` are further
    workspace keys (``security``, ``ignore_cert``, ``recording_path``...); a
    ``guacd`` dict becomes the guacd parameters table."""
    guacd_table = keys.pop("guacd", None)
    lines = [
        "[[workspaces]]",
        f'id = "{id}"',
        f'name = "{id}"',
        f'type = "{protocol}"',
        f'host = "{server.host}"',
        f"port = {server.port}",
    ]
    user = server.username if username is None else username
    if user:
        lines.append(f'username = "{user}"')
    if password_file is not None:
        lines.append(f'password_file = "{password_file}"')
    for key, value in keys.items():
        lines.append(f"{key} = {_toml(value)}")
    if guacd_table:
        lines.append("[workspaces.guacd]")
        lines += [f'"{k}" = {_toml(v)}' for k, v in guacd_table.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def password_file(tmp_path: Path) -> Callable[[str], Path]:
    """A file holding ``password`` (a workspace's ``password_file``)."""
    count = 0

    def write(password: str) -> Path:
        nonlocal count
        count += 1
        path = tmp_path / f"password-{count}"
        path.write_text(password + "\n")
        path.chmod(0o600)
        return path

    return write


@pytest.fixture
def real_broker(
    start_broker: Callable[..., Any], make_settings: Callable[..., Any], guacd: Endpoint
) -> Callable[..., Awaitable[Api]]:
    """``await real_broker(workspaces_toml, **env)``: a broker on a loopback
    socket with the ``direct`` tunnel provider, ``guacd`` as its only
    endpoint and the given workspaces (see `workspace`)."""

    async def start(workspaces: str, **env: str) -> Api:
        extra = textwrap.dedent("""
            [tunnel]
            provider = "direct"
            """)
        settings = make_settings(
            extra,
            workspaces=workspaces,
            env={"BROKER_GUACD_ENDPOINTS": f"{guacd.host}:{guacd.port}", **env},
        )
        return Api(await start_broker(settings))

    return start
