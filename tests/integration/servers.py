"""The real processes of the integration suite: guacd and the servers it
connects to, each on a loopback port chosen at run time.

Each ``start_*`` returns a `Running` that the caller must `Running.stop`
(the fixtures in conftest.py do). Waits are bounded and fail with the tail of
the process's log.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.processes import free_port, log_tail

DEFAULT_GUACD = "/opt/guacd/sbin/guacd"
REQUIRE_VARIABLE = "BROKER_REQUIRE_REAL_GUACD"
HOW_TO_GET_GUACD = (
    "no guacd binary: run ../shared/guacd/real/install.sh as root (installs guacd 1.5.5"
    " to /opt/guacd), or set GUACD=/path/to/guacd, or GUACD_HOST/GUACD_PORT for a running"
    " daemon"
)
START_LIMIT = 30.0  # generous: CI machines may be busy (only a failure waits this long)


class ServerFailed(RuntimeError):
    """A server exited early or did not listen in time."""


@dataclass
class Running:
    """Processes started together (e.g. Xvfb and x11vnc), stopped in reverse."""

    name: str
    log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def failed(self, what: str) -> ServerFailed:
        return ServerFailed(f"{self.name}: {what}\n{log_tail(self.log)}")

    def spawn(self, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.processes.append(proc)

    def wait_port(self, port: int, limit: float = START_LIMIT) -> None:
        """Until something accepts on 127.0.0.1:``port``; fails when a
        process of this group exits first."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise self.failed(f"{proc.args[0]} exited with {proc.returncode}")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise self.failed(f"nothing listens on 127.0.0.1:{port} after {limit:.0f} s")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class UnixUser:
    """A local account that RDP and SSH log in as (through PAM)."""

    name: str
    password: str
    home: Path


@dataclass(frozen=True)
class Display:
    """An X display (Xvfb) that servers show or shadow."""

    name: str  # ":N"
    width: int
    height: int


@dataclass(frozen=True)
class Server:
    """A remote-desktop or SSH server on loopback and how to log in to it."""

    host: str
    port: int
    username: str = ""
    password: str = ""
    display: Display | None = None


def guacd_binary() -> str | None:
    """``$GUACD``, else /opt/guacd/sbin/guacd, when it exists."""
    path = os.environ.get("GUACD") or DEFAULT_GUACD
    return path if os.access(path, os.X_OK) else None


def start_guacd(binary: str, workdir: Path) -> tuple[Running, Endpoint]:
    port = free_port()
    running = Running("guacd", workdir / "guacd.log")
    running.spawn([binary, "-b", "127.0.0.1", "-l", str(port), "-f", "-L", "info"])
    try:
        running.wait_port(port)
    except ServerFailed:
        running.stop()
        raise
    return running, Endpoint("127.0.0.1", port)


def ensure_unix_user(name: str, password: str) -> UnixUser:
    """Create the account when missing and (re)set its password: safe to run
    again on a reused machine. Needs root."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}".encode(), check=True)
    return UnixUser(name, password, Path(pwd.getpwnam(name).pw_dir))


def start_xvfb(workdir: Path, width: int = 1024, height: int = 768) -> tuple[Running, Display]:
    """Xvfb on a free display number (no TCP). Other X servers may run on the
    machine, some in other mount namespaces (only their abstract socket is
    visible), so a number is taken only when neither socket answers, and
    another one is tried when Xvfb reports the display as in use."""
    for attempt in range(8):
        number = random.randrange(100, 1000)
        if _x_display_in_use(number):
            continue
        running = Running("Xvfb", workdir / f"xvfb-{attempt}.log")
        running.spawn(
            ["Xvfb", f":{number}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"]
        )
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            if "already running" in running.log.read_text(errors="replace"):
                break
            if running.processes[0].poll() is not None:
                break
            if Path(f"/tmp/.X11-unix/X{number}").exists() and _x_display_in_use(number):
                return running, Display(f":{number}", width, height)
            time.sleep(0.05)
        running.stop()
    raise ServerFailed("Xvfb: no free display number in 8 tries")


def _x_display_in_use(number: int) -> bool:
    """Something accepts on the display's abstract or file socket."""
    for address in (f"\0/tmp/.X11-unix/X{number}", f"/tmp/.X11-unix/X{number}"):
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(address)
                return True
            except OSError:
                pass
    return False


def start_xterm(display: Display, workdir: Path) -> Running:
    """An xterm (running bash) covering ``display``: something to draw and to
    type into. Keyboard focus follows the pointer (no window manager)."""
    running = Running("xterm", workdir / "xterm.log")
    running.spawn(
        ["xterm", "-geometry", "160x50+0+0", "-e", "bash", "--noprofile", "--norc"],
        env={"DISPLAY": display.name},
    )
    return running


def start_vnc(display: Display, workdir: Path, password: str) -> tuple[Running, Server]:
    """x11vnc on ``display``, password-protected, loopback only."""
    port = free_port()
    passwd = workdir / "vnc.passwd"
    subprocess.run(
        ["x11vnc", "-storepasswd", password, str(passwd)], check=True, capture_output=True
    )
    running = Running("x11vnc", workdir / "x11vnc.log")
    running.spawn(
        ["x11vnc", "-display", display.name, "-rfbport", str(port), "-localhost", "-noipv6"]
        + ["-rfbauth", str(passwd), "-forever", "-shared", "-quiet"]
    )
    try:
        running.wait_port(port)
    except ServerFailed:
        running.stop()
        raise
    return running, Server("127.0.0.1", port, password=password, display=display)


def start_tigervnc(workdir: Path, password: str) -> tuple[Running, Server]:
    """TigerVNC's ``Xtigervnc``: an X server with a built-in VNC server on a
    free display number, password-protected (VncAuth), loopback only. Unlike
    x11vnc on Xvfb it owns the X selections itself: text a viewer sends is
    served as PRIMARY and CLIPBOARD, and a selection set on the display goes to
    the viewers at once."""
    port = free_port()
    passwd = workdir / "tigervnc.passwd"
    # The same obfuscated-DES file format as TigerVNC's vncpasswd writes.
    subprocess.run(
        ["x11vnc", "-storepasswd", password, str(passwd)], check=True, capture_output=True
    )
    for attempt in range(8):
        number = random.randrange(100, 1000)
        if _x_display_in_use(number):
            continue
        running = Running("Xtigervnc", workdir / f"tigervnc-{attempt}.log")
        running.spawn(
            ["Xtigervnc", f":{number}", "-geometry", "1024x768", "-depth", "24"]
            + ["-rfbport", str(port), "-localhost", "-nolisten", "tcp", "-AlwaysShared"]
            + ["-SecurityTypes", "VncAuth", "-PasswordFile", str(passwd)]
        )
        try:
            running.wait_port(port)
        except ServerFailed:
            running.stop()
            continue
        display = Display(f":{number}", 1024, 768)
        return running, Server("127.0.0.1", port, password=password, display=display)
    raise ServerFailed("Xtigervnc: no free display number in 8 tries")


def start_rdp(
    display: Display, workdir: Path, user: UnixUser, *, nla: bool
) -> tuple[Running, Server]:
    """FreeRDP's shadow server on ``display``: TLS with the password checked
    by PAM, or NLA only with the user's NTLM hash in a WinPR SAM file."""
    port = free_port()
    home = workdir / ("rdp-nla-home" if nla else "rdp-tls-home")
    home.mkdir(exist_ok=True)
    argv = ["freerdp-shadow-cli", "/bind-address:127.0.0.1", f"/port:{port}", "+auth"]
    if nla:
        sam = workdir / "SAM"
        with sam.open("wb") as out:
            subprocess.run(
                ["winpr-hash", "-u", user.name, "-p", user.password, "-f", "sam"],
                check=True,
                stdout=out,
            )
        argv += ["/sec:nla", f"/sam-file:{sam}"]
    else:
        argv += ["-sec-nla"]
    running = Running("freerdp-shadow-cli", workdir / f"rdp-{'nla' if nla else 'tls'}.log")
    running.spawn(argv, env={"DISPLAY": display.name, "HOME": str(home)})
    try:
        running.wait_port(port)
    except ServerFailed:
        running.stop()
        raise
    return running, Server("127.0.0.1", port, user.name, user.password, display)


def start_sshd(workdir: Path, user: UnixUser) -> tuple[Running, Server]:
    """A private sshd on a free loopback port that lets only ``user`` in, by
    password through PAM. Needs root."""
    port = free_port()
    ssh = workdir / "sshd"
    ssh.mkdir(exist_ok=True)
    for kind in ("rsa", "ed25519"):
        key = ssh / f"host_{kind}"
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)],
                check=True,
            )
    config = ssh / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\n"
        f"HostKey {ssh / 'host_rsa'}\nHostKey {ssh / 'host_ed25519'}\n"
        f"PidFile {ssh / 'sshd.pid'}\n"
        "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\nUsePAM yes\n"
        f"PermitRootLogin no\nAllowUsers {user.name}\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    running = Running("sshd", workdir / "sshd.log")
    running.spawn([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(config)])
    try:
        running.wait_port(port)
    except ServerFailed:
        running.stop()
        raise
    return running, Server("127.0.0.1", port, user.name, user.password)
