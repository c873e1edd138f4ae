"""``broker serve --workers N``: N broker processes on one port.

The process started by ``broker serve`` becomes a small supervisor; it serves
nothing itself. It starts each worker (``broker serve`` again, with the same
arguments, told by hidden arguments that it is a worker) one after the
other, each once the one before is listening, so migrations and seeding never
race. Every worker binds the port with ``SO_REUSEPORT``: the kernel spreads
new connections over them, and each worker holds its own streams. What
workers must agree on goes through PostgreSQL, as between replicas:

- a session ended on one worker closes its streams on another through the
  event bus (`broker.core.pgevents`: each worker LISTENs on its own);
- rate limits count in one table (`broker.core.ratebuckets`);
- background jobs acting on the database take turns (`broker.core.turns`);
- ``/metrics``: each worker writes to files in a directory made for this run
  (prometheus-client's multiprocess mode, `broker.web.metrics`), removed when
  the supervisor exits.

So ``--workers`` needs PostgreSQL, and is refused on SQLite.

Signals: SIGTERM or SIGINT to the supervisor is passed on to every worker,
each drains (RELIABILITY.md), and the supervisor exits once all have, 0 when
every one drained cleanly. A second signal is passed on too (cutting the
drain short). Workers run in their own session, so a terminal's Ctrl-C
reaches them once, through the supervisor; and each watches a pipe from the
supervisor, so if the supervisor is killed outright they drain and exit.

A worker that exits on its own after it was listening (a crash, the OOM
killer) is started again in its place; its open streams are lost (their
viewers reconnect, to any worker). A worker that exits before it listens
(wrong settings, the database down at start) stops the whole service with a
non-zero status: starting it again would fail the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.config import ConfigError, Settings

log = logging.getLogger("broker.workers")

READY = b"r"


def check_workers(settings: Settings, workers: int) -> None:
    """Raise `ConfigError` when these settings cannot run ``workers`` processes."""
    if workers <= 1:
        return
    if settings.is_sqlite:
        raise ConfigError(
            f"--workers {workers} needs PostgreSQL, and database.url is SQLite: the "
            "workers share sessions, rate limits and metrics through the database, and "
            "one SQLite file takes one process's writes. Run one worker (the default), "
            "or move to PostgreSQL"
        )
    if settings.demo.enabled:
        raise ConfigError(
            f"--workers {workers} needs a config file: the demo runs its simulators in one process"
        )
    if settings.server.port == 0:
        raise ConfigError(
            f"--workers {workers} needs a fixed port (with port 0 each worker would get its own)"
        )


class WorkerLink:
    """A worker's side: tells the supervisor it listens (`ready`), and hears
    from ``lifeline`` (its stdin, a pipe the supervisor holds) when the
    supervisor is gone (`watch`)."""

    def __init__(self, ready_fd: int, lifeline: int = 0) -> None:
        self._ready_fd: int | None = ready_fd
        self._lifeline = lifeline

    def ready(self) -> None:
        if self._ready_fd is not None:
            with contextlib.suppress(OSError):  # the supervisor is gone: `watch` says so
                os.write(self._ready_fd, READY)
            os.close(self._ready_fd)
            self._ready_fd = None

    def watch(self, loop: asyncio.AbstractEventLoop, lost: Callable[[], None]) -> None:
        """Call ``lost`` once when the supervisor's end of the pipe closes."""

        def readable() -> None:
            try:
                data = os.read(self._lifeline, 64)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(self._lifeline)
                log.warning("the supervisor is gone: draining")
                lost()

        loop.add_reader(self._lifeline, readable)


@dataclass
class _Worker:
    slot: int
    process: asyncio.subprocess.Process
    exited: asyncio.Future[int]
    handled: bool = False


class Supervisor:
    """Runs ``count`` workers of ``command`` (the ``broker serve`` command line
    without the worker arguments) until a signal; `run` returns the exit status."""

    def __init__(self, command: Sequence[str], count: int, announce: Callable[[], None]) -> None:
        self._command = list(command)
        self._count = count
        self._announce = announce
        self._workers: dict[int, _Worker] = {}
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._stopping = False
        self._failed = False
        self._metrics_dir = ""

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signals.put_nowait, sig)
        self._metrics_dir = tempfile.mkdtemp(prefix="broker-metrics-")  # 0700, empty
        try:
            for slot in range(self._count):
                if not await self._start(slot):
                    break
            if not self._stopping:
                self._announce()
            await self._watch()
        finally:
            for worker in self._workers.values():
                if worker.process.returncode is None:
                    worker.process.kill()
                    await worker.process.wait()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        return 1 if self._failed else 0

    async def _start(self, slot: int) -> bool:
        """Start the worker of ``slot`` and wait until it listens: False if it
        exited first (the service stops) or a signal came meanwhile."""
        read_end, write_end = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                "--worker-ready-fd",
                str(write_end),
                "--worker-metrics-dir",
                self._metrics_dir,
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(write_end,),
                start_new_session=True,
                env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir},
            )
        finally:
            os.close(write_end)
        worker = _Worker(slot, process, asyncio.ensure_future(process.wait()))
        self._workers[slot] = worker
        ready = asyncio.ensure_future(_read_ready(read_end))
        signalled = asyncio.ensure_future(self._signals.get())
        await asyncio.wait({ready, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if signalled.done():
            self._stop(signalled.result())
            return False
        signalled.cancel()
        if ready.result():
            log.info("worker %d listening (pid %d)", slot, process.pid)
            return True
        worker.handled = True
        code = await worker.exited
        _mark_dead(process.pid, self._metrics_dir)
        log.error("worker %d (pid %d) exited with %d before listening", slot, process.pid, code)
        self._failed = True
        self._stop(signal.SIGTERM)
        return False

    async def _watch(self) -> None:
        """Until every worker has exited: pass signals on, start again a worker
        that exits while the service is not stopping."""
        signalled = asyncio.ensure_future(self._signals.get())
        try:
            while exits := {w.exited: w for w in self._workers.values() if not w.handled}:
                await asyncio.wait({signalled, *exits}, return_when=asyncio.FIRST_COMPLETED)
                if signalled.done():
                    self._stop(signalled.result())
                    signalled = asyncio.ensure_future(self._signals.get())
                for done, worker in exits.items():
                    if done.done():
                        await self._exited(worker)
        finally:
            signalled.cancel()

    async def _exited(self, worker: _Worker) -> None:
        worker.handled = True
        code = await worker.exited
        pid = worker.process.pid
        _mark_dead(pid, self._metrics_dir)
        if self._stopping:
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                log.error(
                    "worker %d (pid %d) exited with %d while stopping", worker.slot, pid, code
                )
                self._failed = True
            return
        log.error("worker %d (pid %d) exited with %d; starting it again", worker.slot, pid, code)
        await self._start(worker.slot)

    def _stop(self, sig: int) -> None:
        if not self._stopping:
            log.info("signal %d: stopping %d worker(s)", sig, len(self._workers))
        self._stopping = True
        for worker in self._workers.values():
            if worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)


async def _read_ready(fd: int) -> bool:
    """Whether the worker wrote that it listens (False: it exited first)."""
    try:
        return await asyncio.to_thread(os.read, fd, 1) == READY
    finally:
        os.close(fd)


def _mark_dead(pid: int, directory: str) -> None:
    """Drop an exited worker's live gauges (its counters stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of a worker: this interpreter, ``-m broker`` and ``argv``."""
    return [sys.executable, "-m", "broker", *argv]


def supervise(argv: Sequence[str], count: int, announce: Callable[[], None]) -> int:
    """Run ``count`` workers of ``broker <argv>``; the service's exit status."""
    return asyncio.run(Supervisor(worker_command(argv), count, announce).run())
