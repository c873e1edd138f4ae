"""Command line: ``broker serve | migrate | token | netbird | audit``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.config import Settings, load_settings
from broker.core.auth import mint_dev_token
from broker.core.db import DbSession
from broker.core.errors import ConfigError
from broker.web.logs import AccessLogger, setup_logging
from broker.workers import WorkerLink

log = logging.getLogger("broker")

DEMO_USER = ("demo-user", "demo@example.com")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="broker", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the broker")
    _config_arg(serve)
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.add_argument(
        "--insecure-dev",
        action="store_true",
        help="allow a development HS256 secret on a non-loopback address, and "
        "requests naming localhost as their Host",
    )
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes serving the one port (default: server.workers, 1); "
        "PostgreSQL only, see the README",
    )
    # Given by the supervisor of --workers to each worker (broker.workers).
    serve.add_argument("--worker-ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-metrics-dir", help=argparse.SUPPRESS)

    mig = sub.add_parser("migrate", help="apply database migrations and exit")
    _config_arg(mig)

    tok = sub.add_parser("token", help="print a signed development token (HS256 secret only)")
    _config_arg(tok)
    tok.add_argument("--sub", default=DEMO_USER[0])
    tok.add_argument("--email", default=DEMO_USER[1])
    tok.add_argument("--admin", action="store_true", help="add the first admin role")
    tok.add_argument("--role", action="append", default=[], help="add a role (repeatable)")
    tok.add_argument("--no-mfa", action="store_true", help="omit MFA from the amr claim")
    tok.add_argument("--ttl", type=int, default=8 * 3600, help="lifetime in seconds")
    nb = sub.add_parser("netbird", help="NetBird helpers")
    nb_sub = nb.add_subparsers(dest="netbird_command", required=True)
    check = nb_sub.add_parser("check", help="print what readiness sees at NetBird")
    _config_arg(check)
    enrol = nb_sub.add_parser(
        "enrol-key", help="create a one-off setup key enrolling a workspace host; printed once"
    )
    _config_arg(enrol)
    enrol.add_argument("--workspace", required=True, help="workspace id")
    enrol.add_argument(
        "--ephemeral",
        action="store_true",
        help="the peer is removed about 10 minutes after it goes offline",
    )
    enrol.add_argument("--expires-in", type=int, default=86400, help="key lifetime in seconds")
    _audit_parser(sub)
    return p


def _audit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    aud = sub.add_parser("audit", help="archive the audit log, check pruning checkpoints")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    exp = aud_sub.add_parser(
        "export",
        help="write audit entries as JSON Lines (one entry a line, in id order)",
        description="Write the audit entries written from --since (inclusive) until "
        "--until (exclusive) as JSON Lines; its SHA-256 is what a pruning checkpoint "
        "of the same entries holds. Dates are YYYY-MM-DD (midnight UTC) or ISO 8601 "
        "times (UTC unless they name a zone).",
    )
    _config_arg(exp)
    exp.add_argument("--since", type=_when, help="first date or time (inclusive)")
    exp.add_argument("--until", type=_when, help="end date or time (exclusive)")
    exp.add_argument(
        "--output", type=Path, help="write to this file (created 0600) instead of stdout"
    )
    ver = aud_sub.add_parser(
        "verify",
        help="check an export against the pruning checkpoints in the database",
        description="For each audit_checkpoint entry whose entries are in EXPORT (or "
        "each --checkpoint), check that the export holds all of them and that they "
        "hash to the checkpoint's SHA-256. Exit 0 when every one checked matches.",
    )
    _config_arg(ver)
    ver.add_argument("export", type=Path, help="a file written by 'broker audit export'")
    ver.add_argument(
        "--checkpoint", type=int, action="append", default=[], help="only this entry id"
    )


def _when(text: str) -> datetime:
    from broker.core.archive import parse_when

    try:
        return parse_when(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither YYYY-MM-DD nor an ISO 8601 time"
        ) from None


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML config file (default: embedded demo settings)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args, argv)
        if args.command == "migrate":
            return migrate_command(args)
        if args.command == "token":
            print(token_command(args))
            return 0
        if args.command == "netbird":
            return asyncio.run(netbird_command(args))
        if args.command == "audit":
            return asyncio.run(audit_command(args))
    except ConfigError as exc:
        print(f"broker: configuration error: {exc}", file=sys.stderr)
        return 2
    return 2


def token_command(args: argparse.Namespace) -> str:
    settings = load_settings(args.config)
    if not settings.auth.hs256_secret:
        raise ConfigError(
            "'broker token' needs an HS256 secret; this broker verifies "
            "tokens from its identity provider"
        )
    if args.admin and not settings.auth.admin_roles:
        raise ConfigError("'broker token --admin' needs a role in 'auth.admin_roles'")
    roles = list(args.role) + ([settings.auth.admin_roles[0]] if args.admin else [])
    return mint_dev_token(
        settings.auth.hs256_secret,
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        sub=args.sub,
        email=args.email,
        roles=roles,
        mfa=not args.no_mfa,
        ttl=args.ttl,
        roles_claim=settings.auth.roles_claim,
        email_claim=settings.auth.email_claim,
    )


async def netbird_command(args: argparse.Namespace) -> int:
    from broker.app import default_provider
    from tunnels.base import TunnelError
    from tunnels.netbird.provider import NetBirdProvider

    settings = load_settings(args.config)
    if settings.tunnel.provider != "netbird" or settings.demo.enabled:
        raise ConfigError("'broker netbird' needs tunnel.provider = \"netbird\" and a config file")
    provider = default_provider(settings)
    assert isinstance(provider, NetBirdProvider)
    try:
        if args.netbird_command == "check":
            health = await provider.check()
            print(await provider.describe())
            return 0 if health.ok else 1
        ws = settings.workspace(args.workspace)
        if ws is None:
            raise ConfigError(f"no workspace {args.workspace!r} in the config")
        group = ws.netbird_group or f"workspace-{ws.id}"
        await provider.ensure_group(group)
        key = await provider.create_setup_key(
            f"broker:{ws.id}", [group], ephemeral=args.ephemeral, expires_in=args.expires_in
        )
        print(f"setup key for workspace {ws.id} (group {group}); shown once, use it with")
        print(f"  netbird up --setup-key <key>\n{key}")
        return 0
    except TunnelError as exc:
        print(f"broker: NetBird: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await provider.aclose()


async def audit_command(args: argparse.Namespace) -> int:
    from broker.core.db import create_engine, session_factory

    settings = load_settings(args.config)
    engine = create_engine(
        settings.database_url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        statement_timeout=settings.database.statement_timeout_seconds,
    )
    try:
        db = session_factory(engine)
        if args.audit_command == "export":
            return await _export(db, args)
        return await _verify(db, args)
    finally:
        await engine.dispose()


async def _export(db: async_sessionmaker[DbSession], args: argparse.Namespace) -> int:
    from broker.config.files import create_private_file
    from broker.core.archive import Window, export

    window = Window(args.since, args.until)
    if args.output is None:
        digest = await export(db, sys.stdout, window)
        sys.stdout.flush()
    else:
        create_private_file(args.output)
        with args.output.open("w", encoding="ascii", newline="\n") as out:
            digest = await export(db, out, window)
    span = f" (ids {digest.first_id} to {digest.last_id})" if digest.count else ""
    print(
        f"exported {digest.count} audit entries{span}, sha256 {digest.hexdigest()}",
        file=sys.stderr,
    )
    return 0


async def _verify(db: async_sessionmaker[DbSession], args: argparse.Namespace) -> int:
    from broker.core.archive import checkpoints, verify

    checked = 0
    failed = 0
    try:
        for checkpoint in await checkpoints(db, args.checkpoint):
            with args.export.open(encoding="ascii") as lines:
                result = verify(lines, checkpoint)
            if result.found == 0 and not args.checkpoint:
                continue  # a checkpoint of entries this export does not hold
            checked += 1
            c = checkpoint
            what = f"checkpoint {c.id} (ids {c.first_id} to {c.last_id}, {c.count} entries)"
            if result.ok:
                print(f"{what}: ok")
            else:
                failed += 1
                why = (
                    f"{result.found} of its entries in the export"
                    if result.found != c.count
                    else "the entries differ from those removed"
                )
                print(f"{what}: MISMATCH, {why}")
    except (OSError, ValueError) as exc:
        print(f"broker: cannot verify {args.export}: {exc}", file=sys.stderr)
        return 1
    if not checked:
        print(f"no checkpoint covers the entries in {args.export}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def migrate_command(args: argparse.Namespace) -> int:
    from broker.core.db import create_engine, migrate

    settings = load_settings(args.config)

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    print("database is at the newest schema")
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def serve(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """``broker serve``: one process, or with ``--workers N`` (``server.workers``)
    a supervisor of N worker processes (`broker.workers`), each of them this
    same command with the worker arguments added."""
    setup_logging(args.log_level)
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.insecure_dev:
        overrides["allow_loopback_hosts"] = True  # a development run: localhost is fine
    if args.workers is not None:
        overrides["workers"] = args.workers
    settings = (
        load_settings(args.config, server=overrides) if overrides else load_settings(args.config)
    )
    host = settings.server.host
    if settings.auth.dev_secret and not is_loopback(host) and not args.insecure_dev:
        raise ConfigError(
            f"refusing to listen on {host} with a development HS256 secret; "
            "use a JWKS URL or public key, listen on loopback, or pass --insecure-dev"
        )
    workers = settings.server.workers
    if workers > 1 and args.worker_ready_fd is None:
        from broker.workers import check_workers, supervise

        check_workers(settings, workers)
        return supervise(argv, workers, lambda: _announce(settings, workers))
    if settings.demo.enabled:
        from broker.demo import DemoUnavailable, check_available

        try:
            check_available()
        except DemoUnavailable as exc:
            print(f"broker: {exc}", file=sys.stderr)
            return 1
    from broker.app import create_app
    from broker.web.metrics import Metrics

    link = None
    if args.worker_ready_fd is not None:
        link = WorkerLink(args.worker_ready_fd)
    app = create_app(settings, metrics=Metrics(multiprocess_dir=args.worker_metrics_dir))
    with asyncio.Runner(loop_factory=event_loop_factory(settings.server.event_loop)) as runner:
        runner.run(run_until_signalled(app, settings, worker=link))
    return 0


def event_loop_factory(wanted: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop ``broker serve`` runs on (``server.event_loop``): uvloop's where
    it is wanted and importable (less CPU per relayed message), else asyncio's
    own (None: `asyncio.Runner`'s default)."""
    if wanted != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop cannot be imported: running on asyncio's own event loop")
        return None
    return uvloop.new_event_loop


def settle_garbage_collector() -> None:
    """Once started (modules, settings, engines, the app: objects that live as
    long as the process): move them out of the collector's sight, so its full
    collections walk only what requests create, not the whole program, and
    stop pausing every request in flight for milliseconds at a time."""
    gc.collect()
    gc.freeze()


async def run_until_signalled(
    app: web.Application, settings: Settings, *, worker: WorkerLink | None = None
) -> None:
    """Serve until SIGTERM/SIGINT, then drain (RELIABILITY.md):

    1. ``/readyz`` fails at once and new launches and viewer connects get 503 /
       SERVER_BUSY, while the listener stays open for everything else;
    2. live streams (guacd viewers, HTML5 proxy requests and WebSockets) get
       ``server.drain_grace_seconds`` to end by themselves; a second signal
       cuts the wait short;
    3. the rest are closed with SERVER_BUSY (viewers reconnect to another
       replica; their sessions stay active; proxied WebSockets get 1001),
       then the server stops.

    A ``worker`` of ``broker serve --workers`` shares the port with the other
    workers (``SO_REUSEPORT``), tells the supervisor when it listens instead
    of printing where, and drains also when the supervisor is gone.
    """
    from broker.core.streams import DRAINING
    from broker.web.connections import EdgeRunner
    from broker.web.http import BROKER

    # Slow clients (incomplete request headers) are bounded: broker.web.connections.
    runner = EdgeRunner(app, settings.server, access_log_class=AccessLogger, handle_signals=False)
    await runner.setup()
    settle_garbage_collector()
    try:
        server = settings.server
        site = web.TCPSite(runner, server.host, server.port, reuse_port=worker is not None)
        await site.start()
        loop = asyncio.get_running_loop()
        signals: asyncio.Queue[int] = asyncio.Queue()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        if worker is None:
            _announce(settings)  # only now: a client acting on the printed URL is served
        else:
            worker.watch(loop, lambda: signals.put_nowait(signal.SIGTERM))
            worker.ready()
        received = await signals.get()
        broker = app[BROKER]
        broker.draining = True
        streams = broker.streams.count()
        grace = settings.server.drain_grace_seconds
        log.info("signal %d: draining, %d open stream(s), up to %g s", received, streams, grace)
        second = asyncio.ensure_future(signals.get())
        empty = asyncio.ensure_future(broker.streams.wait_empty())
        await asyncio.wait({second, empty}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        for task in (second, empty):
            task.cancel()
        if broker.streams.end_all(DRAINING):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(broker.streams.wait_empty(), 5)
    finally:
        await runner.cleanup()


def _announce(settings: Settings, workers: int = 1) -> None:
    base = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"
    lines = [f"broker listening on {base}" + (f" ({workers} workers)" if workers > 1 else "")]
    # Only the demo prints a live token: with a config, anyone reading the
    # service's output (journal, container logs) could use one.
    if settings.demo.enabled and settings.auth.dev_secret:
        token = mint_dev_token(
            settings.auth.hs256_secret,
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            sub=DEMO_USER[0],
            email=DEMO_USER[1],
            roles_claim=settings.auth.roles_claim,
            email_claim=settings.auth.email_claim,
        )
        lines += [
            "demo token (8 h, user demo-user):",
            f"  {token}",
            f"portal: {base}/#token={token}",
            f"try:    curl -s -H 'Authorization: Bearer {token}' {base}/api/workspaces",
        ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
