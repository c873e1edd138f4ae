"""The relay side by side: the broker, guacamole-lite 1.2 (as shipped and with
TCP_NODELAY) and no relay at all (raw TCP to guacd), in one run.

Usage (from the repository root; ``make bench`` runs it)::

    .venv/bin/python -m benchmarks.relay [--quick] [--reps 3]
        [--levels 50,100,200,400,800] [--storm 200] [--window 6]

What runs, all on loopback:

- a simulated guacd replaying a real guacd VNC capture (tests/data), one
  process at full speed and one at the capture's pace, echoing each client
  ``mouse`` (``python -m protocols.simulated.guacd --mode replay --echo-mouse``);
- each relay as its own processes (one per guacd), started once;
- this process: the load generator (`benchmarks.relay.client`).

On two CPUs or more, each relay runs on CPU 0 and the generator and the guacd
on CPU 1 (``sched_setaffinity`` on every thread, as ``taskset -a -p`` does).

Measured, in this order, the relays' order alternating between repetitions:
1. full speed, 1 and 10 streams at once: throughput and the relay's CPU ms
   per MB (median of ``--reps``);
2. capture pace, every stream moving the mouse every 50 ms: input latency
   (send to the guacd's echo back), frame lag (behind the capture's pace),
   relay CPU, at each of ``--levels`` streams until a relay's p99 passes
   50 ms; RSS idle and per stream;
3. connect storm: ``--storm`` viewers opening at once (broker: of sessions just
   launched through its API, each by its own user on its own workspace) while
   ``--storm-background`` paced streams run: time until all have a first
   frame, and the p99 input latency of the running streams meanwhile.

A row whose generator used more than 90 % of a core is marked generator-bound
(``!``): there the figure is the generator's limit, not the relay's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from benchmarks.relay import report
from benchmarks.relay.client import Clients
from benchmarks.relay.phases import full_speed, paced, storm
from benchmarks.relay.procstat import can_pin, rss_bytes
from benchmarks.relay.relays import LOAD_CPU, BrokerRelay, Guacd, Lite, Raw, Relay, workdir
from scripts.processes import ROOT

CAPTURE = ROOT / "tests" / "data" / "vnc-x11vnc-20s.guac"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.relay", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    p.add_argument("--reps", type=int, default=None, help="full-speed repetitions (median)")
    p.add_argument("--levels", default=None, help="paced stream counts, comma-separated")
    p.add_argument("--storm", type=int, default=None, help="viewers opening at once")
    p.add_argument("--storm-background", type=int, default=None)
    p.add_argument("--window", type=float, default=None, help="seconds measured per level")
    p.add_argument("--relays", default="broker,lite,lite-nodelay,raw")
    p.add_argument("--keep", action="store_true", help="keep the processes' logs and data")
    args = p.parse_args(argv)
    quick = args.quick
    args.reps = args.reps or (1 if quick else 3)
    args.levels = [
        int(n) for n in (args.levels or ("20" if quick else "50,100,200,400,800")).split(",")
    ]
    args.storm = args.storm if args.storm is not None else (20 if quick else 200)
    if args.storm_background is None:
        args.storm_background = 5 if quick else 50
    args.window = args.window or (2.0 if quick else 6.0)
    args.warm = 0.5 if quick else 1.0
    args.rounds1, args.rounds10 = (8, 1) if quick else (20, 4)
    return args


def _relays(args: argparse.Namespace, guacd: Guacd, folder: Path, pinned: bool) -> list[Relay]:
    needed = max([*args.levels, args.storm_background, 10]) + args.storm
    made: dict[str, Relay] = {
        "broker": BrokerRelay(guacd, folder, pinned, workspaces=needed),
        "lite": Lite(guacd, folder, pinned, nodelay=False),
        "lite-nodelay": Lite(guacd, folder, pinned, nodelay=True),
        "raw": Raw(guacd, folder, pinned),
    }
    return [made[name] for name in args.relays.split(",")]


def _order(relays: list[Relay], rep: int) -> list[Relay]:
    return relays if rep % 2 == 0 else relays[::-1]


async def _run(args: argparse.Namespace, relays: list[Relay], guacd: Guacd) -> report.Results:
    size = len(CAPTURE.read_bytes())
    results = report.Results(relays=[r.name for r in relays])
    await guacd.start()
    await asyncio.gather(*(r.start() for r in relays))
    for relay in relays:
        relay.use(True)
        if relay.pid is not None:
            results.idle_rss[relay.name] = rss_bytes(relay.pid)
    http = Clients()
    try:
        for rep in range(args.reps):
            for relay in _order(relays, rep):
                for conns, rounds in ((1, args.rounds1), (10, args.rounds10)):
                    got = await full_speed(relay, guacd, http, conns, rounds, size)
                    results.full.setdefault((relay.name, conns), []).append(got)
                    _progress(f"full speed @{conns} {relay.name}: {got.mb_per_s:.0f} MB/s")
        live = list(relays)
        for k, level in enumerate(args.levels):
            for relay in _order(live, k):
                got_paced = await paced(
                    relay, guacd, http, level, warm=args.warm, window=args.window
                )
                results.paced.setdefault(relay.name, []).append(got_paced)
                _progress(
                    f"paced {level} {relay.name}: p99 {got_paced.latency_p99_ms:.1f} ms,"
                    f" {got_paced.opened}/{level} opened {got_paced.failures}"
                )
            live = [r for r in live if results.paced[r.name][-1].held]
            if not live:
                break
        for relay in _order(relays, len(args.levels)):
            got_storm = await storm(
                relay, guacd, http, args.storm, args.storm_background, warm=args.warm
            )
            results.storm[relay.name] = got_storm
            _progress(
                f"storm {relay.name}: {got_storm.all_first_frames_s:.2f} s {got_storm.failures}"
            )
    finally:
        await http.close()
    return results


def _progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def _use_uvloop() -> None:
    """The generator runs on uvloop when it is installed (it is not required)."""
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    pinned = can_pin()
    if pinned:
        os.sched_setaffinity(0, {LOAD_CPU})
    folder = workdir()
    guacd = Guacd(folder, pinned)
    relays = _relays(args, guacd, folder, pinned)
    started = time.perf_counter()
    try:
        _use_uvloop()
        results = asyncio.run(asyncio.wait_for(_run(args, relays, guacd), 3600))
        results.commands = {r.name: r.command_line() for r in relays}
        results.commands["guacd (paced)"] = shlex.join(guacd.command(guacd.paced_port, True))
    except BaseException:
        print(f"relay benchmark failed; logs kept in {folder}", file=sys.stderr)
        raise
    finally:
        for relay in relays:
            relay.stop()
        guacd.stop()
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    results.command = shlex.join(
        [sys.executable, "-m", "benchmarks.relay", *(argv or sys.argv[1:])]
    )
    results.pinned = pinned
    results.seconds = time.perf_counter() - started
    results.folder = str(folder) if args.keep else "removed (--keep keeps them)"
    report.show(results, args)


if __name__ == "__main__":
    main()
