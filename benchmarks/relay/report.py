"""The relay benchmark's tables: a summary per relay, the paced series, and
ratios against guacamole-lite (as shipped and with TCP_NODELAY)."""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import dataclass, field

from benchmarks.relay.phases import FullSpeed, Paced, Storm

BOUND = 90.0  # % of a core: above it a row measured the generator, not the relay
LITE, LITE_NODELAY, BROKER = "guacamole-lite 1.2", "lite + TCP_NODELAY", "broker"


@dataclass
class Results:
    relays: list[str]
    full: dict[tuple[str, int], list[FullSpeed]] = field(default_factory=dict)
    paced: dict[str, list[Paced]] = field(default_factory=dict)
    storm: dict[str, Storm] = field(default_factory=dict)
    idle_rss: dict[str, int] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    command: str = ""
    pinned: bool = False
    seconds: float = 0.0
    folder: str = ""

    def full_median(self, relay: str, conns: int) -> FullSpeed | None:
        runs = self.full.get((relay, conns))
        if not runs:
            return None
        return FullSpeed(
            statistics.median(r.mb_per_s for r in runs),
            statistics.median(r.cpu_ms_per_mb for r in runs),
            statistics.median(r.generator_pct for r in runs),
            statistics.median(r.guacd_pct for r in runs),
            (
                statistics.median(r.others_pct[0] for r in runs),
                statistics.median(r.others_pct[1] for r in runs),
            ),
        )

    def held(self, relay: str) -> Paced | None:
        """The largest paced level the relay held (p99 < 50 ms, every stream open)."""
        held = [p for p in self.paced.get(relay, []) if p.held]
        return held[-1] if held else None

    def rss_per_stream(self, relay: str) -> float:
        runs = self.paced.get(relay, [])
        idle = self.idle_rss.get(relay)
        if not runs or idle is None or not runs[-1].rss_bytes:
            return math.nan
        return (runs[-1].rss_bytes - idle) / runs[-1].streams


def _get(result: object | None, name: str) -> float | None:
    return None if result is None else float(getattr(result, name))


def _others(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.0f} / {pair[1]:.0f}"


def _speed(result: FullSpeed | None) -> str:
    if result is None:
        return "-"
    return f"{result.mb_per_s:.0f}{_mark(result)}"


def _f(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def _mark(result: FullSpeed | Paced | Storm) -> str:
    """``!``: the generator was saturated; ``~``: the load's CPU was (the
    generator and guacd share it, with whatever else the machine runs there)."""
    generator_pct, guacd_pct, others_pct = (
        result.generator_pct,
        result.guacd_pct,
        result.others_pct[1],
    )
    if generator_pct > BOUND:
        return " !"
    return " ~" if generator_pct + guacd_pct + others_pct > BOUND else ""


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join
    out = [line(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append(line("-" * w for w in widths))
    out += [line(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def summary_rows(res: Results) -> list[list[str]]:
    rows = []
    for relay in res.relays:
        one, ten = res.full_median(relay, 1), res.full_median(relay, 10)
        held = res.held(relay)
        first = res.paced.get(relay, [None])[0]
        st = res.storm.get(relay)
        idle = res.idle_rss.get(relay)
        rows.append(
            [
                relay,
                f"{_speed(one)} / {_speed(ten)}",
                f"{_f(_get(one, 'cpu_ms_per_mb'))} / {_f(_get(ten, 'cpu_ms_per_mb'))}",
                f"{_f(_get(first, 'latency_p50_ms'))} / {_f(_get(first, 'latency_p99_ms'))}"
                f" @{first.streams if first else '-'}",
                f"{held.streams if held else 0}",
                f"{_f(_get(held, 'per_stream_pct'), 2)} @{held.streams if held else '-'}",
                f"{_f(_get(st, 'all_first_frames_s'), 2)} s ({st.opened if st else 0}/"
                f"{st.viewers if st else 0})",
                f"{_f(_get(st, 'p99_during_ms'))}",
                f"{idle / 1e6:.0f} MB" if idle else "-",
                f"{_f(res.rss_per_stream(relay) / 1e3, 0)} KB",
            ]
        )
    return rows


SUMMARY = [
    "relay",
    "MB/s @1 / @10",
    "CPU ms/MB @1 / @10",
    "input p50 / p99 ms",
    "paced held",
    "CPU % per paced stream",
    "storm: all first frames",
    "storm p99 ms",
    "idle RSS",
    "RSS / stream",
]


def paced_rows(res: Results) -> list[list[str]]:
    rows = []
    for relay in res.relays:
        for p in res.paced.get(relay, []):
            rows.append(
                [
                    relay,
                    str(p.streams),
                    f"{p.opened}" + (f" ({p.dropped} dropped)" if p.dropped else ""),
                    f"{_f(p.latency_p50_ms)} / {_f(p.latency_p99_ms)}",
                    f"{_f(p.lag_p50_ms)} / {_f(p.lag_p99_ms)}",
                    _f(p.relay_pct, 0),
                    _f(p.per_stream_pct, 2),
                    _f(p.guacd_pct, 0),
                    f"{_f(p.generator_pct, 0)}{_mark(p)}",
                    f"{p.rss_bytes / 1e6:.0f} MB",
                    _others(p.others_pct),
                    "yes" if p.held else "NO",
                ]
            )
    return rows


PACED = [
    "relay",
    "streams",
    "open",
    "input p50 / p99 ms",
    "frame lag p50 / p99 ms",
    "relay CPU %",
    "% per stream",
    "guacd %",
    "generator %",
    "relay RSS",
    "others % CPU0 / CPU1",
    "p99 < 50",
]


def _ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None or not theirs or math.isnan(mine) or math.isnan(theirs):
        return "-"
    return f"{mine / theirs:.2f}x"


def ratio_rows(res: Results) -> list[list[str]]:
    rows = []
    for base in (LITE, LITE_NODELAY):
        if base not in res.relays:
            continue
        for relay in res.relays:
            if relay == base or relay.startswith("raw"):
                continue
            ten, ten_b = res.full_median(relay, 10), res.full_median(base, 10)
            held, held_b = res.held(relay), res.held(base)
            st, st_b = res.storm.get(relay), res.storm.get(base)
            rows.append(
                [
                    f"{relay} / {base}",
                    _ratio(_get(ten, "mb_per_s"), _get(ten_b, "mb_per_s")),
                    _ratio(_get(ten, "cpu_ms_per_mb"), _get(ten_b, "cpu_ms_per_mb")),
                    _ratio(held.streams if held else None, held_b.streams if held_b else None),
                    _ratio(_get(held, "per_stream_pct"), _get(held_b, "per_stream_pct")),
                    _ratio(_get(st, "all_first_frames_s"), _get(st_b, "all_first_frames_s")),
                    _ratio(
                        float(res.idle_rss.get(relay, math.nan)),
                        float(res.idle_rss.get(base, math.nan)),
                    ),
                ]
            )
    return rows


RATIOS = [
    "ratio",
    "MB/s @10",
    "CPU ms/MB @10",
    "paced streams held",
    "CPU per paced stream",
    "storm time",
    "idle RSS",
]


def show(res: Results, args: argparse.Namespace) -> None:
    print("== relay benchmark: VNC capture tests/data/vnc-x11vnc-20s.guac ==")
    print(f"command: {res.command}")
    pin = (
        "relay on CPU 0; load generator and guacd on CPU 1"
        if res.pinned
        else "NOT pinned (fewer than 2 CPUs)"
    )
    print(
        f"{pin}; full speed median of {args.reps}; paced levels {args.levels},"
        f" {args.window:g} s each, mouse every 50 ms per stream;"
        f" storm {args.storm} viewers over {args.storm_background} paced streams;"
        f" took {res.seconds:.0f} s"
    )
    print()
    print(_table(SUMMARY, summary_rows(res)))
    print()
    print("Capture pace, per level (a relay's series stops once its p99 passes 50 ms):")
    print(_table(PACED, paced_rows(res)))
    print()
    print("Full speed, per relay (median): generator and guacd CPU, % of a core:")
    full_rows = []
    for relay in res.relays:
        for conns in (1, 10):
            m = res.full_median(relay, conns)
            if m is not None:
                full_rows.append(
                    [
                        relay,
                        str(conns),
                        _f(m.mb_per_s, 0),
                        _f(m.cpu_ms_per_mb),
                        f"{_f(m.generator_pct, 0)}{_mark(m)}",
                        _f(m.guacd_pct, 0),
                        _others(m.others_pct),
                    ]
                )
    print(
        _table(
            [
                "relay",
                "streams",
                "MB/s",
                "CPU ms/MB",
                "generator %",
                "guacd %",
                "others % CPU0 / CPU1",
            ],
            full_rows,
        )
    )
    print()
    print("Connect storm:")
    storm_rows = [
        [
            relay,
            f"{st.opened}/{st.viewers}",
            str(st.background),
            f"{st.launch_s:.2f} ({st.launch_retries} x 503)" if st.launch_s else "-",
            _f(st.all_first_frames_s, 2),
            _f(st.p99_during_ms),
            _f(st.guacd_pct, 0),
            f"{_f(st.generator_pct, 0)}{_mark(st)}",
            _others(st.others_pct),
        ]
        for relay, st in res.storm.items()
    ]
    print(
        _table(
            [
                "relay",
                "viewers",
                "paced running",
                "API launches s (retried)",
                "all first frames s",
                "p99 of running ms",
                "guacd %",
                "generator %",
                "others % CPU0 / CPU1",
            ],
            storm_rows,
        )
    )
    print()
    for relay in res.relays:
        why = [p.failures for p in res.paced.get(relay, []) if p.failures]
        st = res.storm.get(relay)
        if st is not None and st.failures:
            why.append(f"storm: {st.failures}")
        if why:
            print(f"streams that failed, {relay}: {'; '.join(why)}")
    print()
    print("Ratios (broker or lite+NODELAY over the base; MB/s and streams: higher is better):")
    print(_table(RATIOS, ratio_rows(res)))
    print()
    print(
        "! = the load generator used > 90 % of a core there: generator-bound;"
        " ~ = the load's CPU 1 (generator + guacd + other processes) was > 90 % busy:"
        " load-bound, the figure is not the relay's."
    )
    print(
        "others % = CPU time of processes outside this benchmark on the relay's CPU 0 and"
        " the load's CPU 1 (a shared machine): rows where they are high are noisy."
    )
    print(f"Logs (each relay's and guacd's output): {res.folder}")
    print("Processes:")
    for name, command in res.commands.items():
        print(f"  {name}: {command}")
