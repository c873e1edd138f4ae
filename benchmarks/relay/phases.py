"""The measurements, one relay at a time: full speed, capture pace, connect
storm. Each returns plain numbers; `benchmarks.relay.report` prints them.

CPU figures are differences of /proc/<pid>/stat over the measured window:
the relay's process only, the replaying guacd's, and this process's (the load
generator's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from benchmarks.relay.client import Clients, Samples, Stream
from benchmarks.relay.procstat import core_busy, cpu_seconds, rss_bytes
from benchmarks.relay.relays import LOAD_CPU, RELAY_CPU, BrokerRelay, Guacd, Relay

MOUSE_INTERVAL = 0.05  # each paced stream moves the mouse this often
TICK = 0.01  # the mouse sender wakes this often, for a fifth of the streams each time
OPEN_LIMIT = 60.0  # every stream of a phase has its first frame by then, or the phase fails


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Meter:
    """CPU seconds of the relay, the guacd and this generator over a window,
    and how busy each of the two CPUs was with other processes meanwhile (a
    shared machine's noise: what else ran beside the relay on CPU 0, and beside
    the load on CPU 1)."""

    def __init__(self, relay_pid: int | None, guacd_pid: int) -> None:
        self.pids = (relay_pid, guacd_pid, os.getpid())
        self.start = self._read()
        self.busy = core_busy()
        self.wall = time.perf_counter()
        self.others = (0.0, 0.0)  # % of CPU 0, of CPU 1: set by `stop`

    def _read(self) -> tuple[float, float, float]:
        r, g, me = (cpu_seconds(p) if p is not None else 0.0 for p in self.pids)
        return r, g, me

    def stop(self) -> tuple[float, float, float, float]:
        """(wall s, relay CPU s, guacd CPU s, generator CPU s) since the start."""
        end = self._read()
        busy = core_busy()
        wall = time.perf_counter() - self.wall
        relay, guacd, me = (b - a for a, b in zip(self.start, end, strict=True))
        spent = [busy.get(cpu, 0.0) - self.busy.get(cpu, 0.0) for cpu in (RELAY_CPU, LOAD_CPU)]
        self.others = (
            max(0.0, spent[0] - relay) / wall * 100,
            max(0.0, spent[1] - guacd - me) / wall * 100,
        )
        return (wall, *(b - a for a, b in zip(self.start, end, strict=True)))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class FullSpeed:
    mb_per_s: float
    cpu_ms_per_mb: float
    generator_pct: float
    guacd_pct: float
    others_pct: tuple[float, float] = (0.0, 0.0)  # other processes' use of CPU 0, CPU 1


@dataclass(frozen=True, slots=True)
class Paced:
    streams: int
    opened: int
    latency_p50_ms: float
    latency_p99_ms: float
    lag_p50_ms: float
    lag_p99_ms: float
    relay_pct: float
    per_stream_pct: float
    generator_pct: float
    guacd_pct: float
    rss_bytes: int
    samples: int
    others_pct: tuple[float, float] = (0.0, 0.0)
    failures: str = ""  # the commonest reason streams failed, if any did
    dropped: int = 0  # streams ended by the other side after their first frame

    @property
    def held(self) -> bool:
        return self.opened == self.streams and not self.dropped and self.latency_p99_ms < 50


@dataclass(frozen=True, slots=True)
class Storm:
    viewers: int
    background: int
    launch_s: float  # the broker's API launches of the viewers' sessions (0: no API)
    launch_retries: int  # of those, answered 503 and tried again
    all_first_frames_s: float
    opened: int
    p99_during_ms: float
    generator_pct: float
    guacd_pct: float
    others_pct: tuple[float, float] = (0.0, 0.0)
    failures: str = ""


async def _close_all(streams: list[Stream], tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    async with asyncio.timeout(30):
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)


async def _read_all(stream: Stream, size: int) -> None:
    await stream.open()
    await stream.pump(lambda s: s.received >= size)


async def full_speed(
    relay: Relay, guacd: Guacd, http: Clients, conns: int, rounds: int, size: int
) -> FullSpeed:
    """``rounds`` times ``conns`` streams at once, each reading the whole
    capture as fast as the relay delivers it (opening included)."""
    relay.use(False)
    await relay.prepare(http, conns)
    meter = Meter(relay.pid, guacd.pid(False))
    total = 0
    async with asyncio.timeout(300):
        for _ in range(rounds):
            streams = relay.streams(http, conns)
            try:
                await asyncio.gather(*(_read_all(s, size) for s in streams))
            finally:
                await _close_all(streams, [])
            short = [s.received for s in streams if s.received < size]
            if short:
                raise RuntimeError(f"{relay.name}: {len(short)} streams ended early")
            total += sum(s.received for s in streams)
    wall, relay_cpu, guacd_cpu, me = meter.stop()
    mb = total / 1e6
    return FullSpeed(
        mb / wall, relay_cpu * 1000 / mb, me / wall * 100, guacd_cpu / wall * 100, meter.others
    )


class _Load:
    """Paced streams moving the mouse every 50 ms, with a shared `Samples`."""

    def __init__(self, streams: list[Stream], samples: Samples, spread: float) -> None:
        self.streams, self.samples, self.spread = streams, samples, spread
        self.tasks: list[asyncio.Task[None]] = []
        self.failed = 0
        self.dropped = 0  # streams that had a first frame, then ended before `stop`
        self.reasons: Counter[str] = Counter()  # why streams failed
        self._ticker: asyncio.Task[None] | None = None

    async def _run(self, stream: Stream, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await stream.open()
            await stream.pump()
            if not stream.first_frame.done():
                raise RuntimeError(f"ended before a first frame ({stream.ending()})")
            if not stream.closed:  # the relay (or guacd) ended it while measured
                self.dropped += 1
                self.reasons[f"dropped ({stream.ending()})"[:100]] += 1
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            self.failed += 1
            self.reasons[f"{type(exc).__name__}: {exc}"[:100]] += 1
            if not stream.first_frame.done():
                stream.first_frame.set_exception(exc)

    def start(self) -> None:
        step = self.spread / max(1, len(self.streams))
        for i, stream in enumerate(self.streams):
            stream.samples = self.samples
            self.tasks.append(asyncio.create_task(self._run(stream, i * step)))
        self._ticker = asyncio.create_task(self._tick())

    async def first_frames(self) -> list[float]:
        """When each stream had its first frame (perf_counter), waiting at most
        `OPEN_LIMIT` seconds; streams that failed or had none by then are left
        out (and counted in `failed`)."""
        waiting = [s.first_frame for s in self.streams]
        _, late = await asyncio.wait(waiting, timeout=OPEN_LIMIT + self.spread)
        if late:
            self.failed += len(late)
            self.reasons[f"no first frame within {OPEN_LIMIT + self.spread:g} s"] += len(late)
        return [f.result() for f in waiting if f.done() and f.exception() is None]

    async def _tick(self) -> None:
        slices = round(MOUSE_INTERVAL / TICK)
        loop = asyncio.get_running_loop()
        due, k = loop.time(), 0
        while True:
            for stream in self.streams[k % slices :: slices]:
                await stream.mouse()
            k += 1
            due += TICK
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await _close_all(self.streams, self.tasks)


async def paced(
    relay: Relay,
    guacd: Guacd,
    http: Clients,
    count: int,
    *,
    warm: float,
    window: float,
) -> Paced:
    """``count`` streams at the capture's pace, opened over a second or two,
    then measured for ``window`` seconds."""
    relay.use(True)
    await relay.prepare(http, count)
    samples = Samples()
    load = _Load(relay.streams(http, count), samples, spread=min(3.0, count * 0.004))
    try:
        load.start()
        opened = len(await load.first_frames())
        await asyncio.sleep(warm)
        meter = Meter(relay.pid, guacd.pid(True))
        samples.recording = True
        await asyncio.sleep(window)
        samples.recording = False
        wall, relay_cpu, guacd_cpu, me = meter.stop()
        rss = rss_bytes(relay.pid) if relay.pid is not None else 0
    finally:
        await load.stop()
    relay_pct = relay_cpu / wall * 100
    return Paced(
        streams=count,
        opened=opened,
        latency_p50_ms=percentile(samples.latency, 50) * 1000,
        latency_p99_ms=percentile(samples.latency, 99) * 1000,
        lag_p50_ms=percentile(samples.lag, 50) * 1000,
        lag_p99_ms=percentile(samples.lag, 99) * 1000,
        relay_pct=relay_pct,
        per_stream_pct=relay_pct / count,
        generator_pct=me / wall * 100,
        guacd_pct=guacd_cpu / wall * 100,
        rss_bytes=rss,
        samples=len(samples.latency),
        others_pct=meter.others,
        failures=_why(load),
        dropped=load.dropped,
    )


async def storm(
    relay: Relay,
    guacd: Guacd,
    http: Clients,
    viewers: int,
    background: int,
    *,
    warm: float,
) -> Storm:
    """``background`` paced streams run; then ``viewers`` new viewers (of new
    sessions launched through the broker's API; with their own tokens for
    lite) open at once. Time until all have a first frame, and the p99 input
    latency of the background streams meanwhile."""
    relay.use(True)
    await relay.prepare(http, background)
    samples = Samples()
    load = _Load(relay.streams(http, background), samples, spread=min(1.0, background * 0.004))
    launch_s = 0.0
    fresh: Callable[[], Awaitable[list[Stream]]]
    if isinstance(relay, BrokerRelay):
        broker = relay

        async def fresh() -> list[Stream]:
            return broker.viewers(http, await broker.launch(http, viewers))
    else:

        async def fresh() -> list[Stream]:
            return relay.streams(http, viewers)

    crowd: _Load | None = None
    try:
        load.start()
        await load.first_frames()
        started = time.perf_counter()
        if isinstance(relay, BrokerRelay):
            relay.retried = 0
        streams = await fresh()
        launch_s = time.perf_counter() - started if isinstance(relay, BrokerRelay) else 0.0
        await asyncio.sleep(warm)
        crowd = _Load(streams, Samples(), spread=0.0)
        meter = Meter(relay.pid, guacd.pid(True))
        samples.recording = True
        t0 = time.perf_counter()
        crowd.start()
        firsts = await crowd.first_frames()
        done = max(firsts) if firsts else time.perf_counter()
        await asyncio.sleep(0.5)
        samples.recording = False
        wall, _, guacd_cpu, me = meter.stop()
    finally:
        await load.stop()
        if crowd is not None:
            await crowd.stop()
    during = [lat for sent, lat in samples.latency_at if t0 <= sent <= done]
    return Storm(
        viewers=viewers,
        background=background,
        launch_s=launch_s,
        launch_retries=relay.retried if isinstance(relay, BrokerRelay) else 0,
        all_first_frames_s=done - t0,
        opened=len(firsts),
        p99_during_ms=percentile(during, 99) * 1000,
        generator_pct=me / wall * 100,
        guacd_pct=guacd_cpu / wall * 100,
        others_pct=meter.others,
        failures=_why(crowd) if crowd is not None else "",
    )


def _why(load: _Load) -> str:
    if not load.reasons:
        return ""
    reason, count = load.reasons.most_common(1)[0]
    return f"{load.failed} failed, {load.dropped} dropped, {count}x {reason}"
