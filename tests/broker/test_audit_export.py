"""``broker audit export`` and ``broker audit verify``: the export round-trips
(each line parses back to the row in the database), honours its time window
and streams in id order; an export taken before pruning verifies against the
checkpoint the pruning left, and a changed one does not."""

from __future__ import annotations

import io
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from broker.config import RetentionSettings
from broker.core.archive import Window, entry_dict, export, parse_when
from broker.core.models import AuditEvent
from broker.core.retention import Pruner
from tests.broker.machine import Machine, StartMachine
from tests.broker.retention_support import NOW, add_audit, clock, days_ago
from tests.broker.test_cli import SECRET, cli_env, run_cli, write_config
from tunnels.direct import DirectProvider

pytestmark = pytest.mark.db


@pytest.fixture
async def m(start_machine: StartMachine) -> Machine:
    return await start_machine(DirectProvider())


async def rows(m: Machine) -> dict[int, AuditEvent]:
    async with m.db() as db:
        return {e.id: e for e in (await db.scalars(select(AuditEvent))).all()}


async def test_export_round_trips_every_entry_in_its_window(m: Machine) -> None:
    ids = await add_audit(m.db, [30, 20, 20, 19.5, 10, 5, 1])
    since, until = days_ago(20), days_ago(5)  # inclusive, exclusive
    out = io.StringIO()

    written = await export(m.db, out, Window(since, until), batch=2)

    lines = out.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert [p["id"] for p in parsed] == ids[1:5]  # id order; 20 days in, 5 days out
    in_db = await rows(m)
    for entry in parsed:
        row = in_db[entry["id"]]
        assert entry == entry_dict(row)
        assert parse_when(entry["at"]) == row.at  # microseconds kept
    assert parsed[0]["user_email"] == "ålice@example.com"
    assert all(line.isascii() for line in lines)
    assert list(json.loads(lines[0])) == sorted(parsed[0])  # stable key order
    assert written.count == 4 and (written.first_id, written.last_id) == (ids[1], ids[4])


async def test_an_empty_window_exports_nothing(m: Machine) -> None:
    await add_audit(m.db, [3])
    out = io.StringIO()
    written = await export(m.db, out, Window(days_ago(2), days_ago(1)))
    assert out.getvalue() == "" and written.count == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-05", datetime(2026, 3, 5, tzinfo=UTC)),
        ("2026-03-05T14:30:00Z", datetime(2026, 3, 5, 14, 30, tzinfo=UTC)),
        ("2026-03-05T14:30:00.250+02:00", datetime(2026, 3, 5, 12, 30, 0, 250000, tzinfo=UTC)),
        ("2026-03-05T14:30", datetime(2026, 3, 5, 14, 30, tzinfo=UTC)),
    ],
)
def test_dates_and_iso_times_are_accepted(text: str, expected: datetime) -> None:
    assert parse_when(text) == expected


# -- the command line ------------------------------------------------------------------


def config(tmp_path: Path, database_url: str) -> Path:
    directory = tmp_path / "cli"
    directory.mkdir()
    return write_config(directory, f'[database]\nurl = "{database_url}"\n')


async def test_cli_exports_to_a_private_file_and_verifies_it_after_pruning(
    m: Machine, tmp_path: Path, database_url: str
) -> None:
    old = await add_audit(m.db, [500, 450, 420])
    await add_audit(m.db, [10])
    conf, env = config(tmp_path, database_url), cli_env(BROKER_AUTH_HS256_SECRET=SECRET)
    archive = tmp_path / "audit-2025.jsonl"
    cutoff = (NOW - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")

    result = await run_cli(
        "audit", "export", "--config", str(conf), "--since", "2020-01-01",
        "--until", cutoff, "--output", str(archive), cwd=tmp_path, env=env,
    )  # fmt: skip

    assert result.code == 0, result.err
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert [json.loads(line)["id"] for line in archive.read_text().splitlines()] == old
    assert "exported 3 audit entries" in result.err

    pruned = await Pruner(m.engine, m.db, RetentionSettings(), clock=clock, pause=0).run_once()
    assert pruned is not None and pruned.removed["audit_events"] == 3

    verified = await run_cli(
        "audit", "verify", "--config", str(conf), str(archive), cwd=tmp_path, env=env
    )
    assert verified.code == 0, verified.out + verified.err
    assert f"ids {old[0]} to {old[-1]}, 3 entries): ok" in verified.out

    archive.write_text(archive.read_text().replace("launch_workspace", "stop_workspace", 1))
    tampered = await run_cli(
        "audit", "verify", "--config", str(conf), str(archive), cwd=tmp_path, env=env
    )
    assert tampered.code == 1
    assert "MISMATCH, the entries differ from those removed" in tampered.out


async def test_cli_exports_to_stdout_and_refuses_a_bad_date(
    m: Machine, tmp_path: Path, database_url: str
) -> None:
    ids = await add_audit(m.db, [3, 2])
    conf, env = config(tmp_path, database_url), cli_env(BROKER_AUTH_HS256_SECRET=SECRET)

    result = await run_cli("audit", "export", "--config", str(conf), cwd=tmp_path, env=env)

    assert result.code == 0, result.err
    assert [json.loads(line)["id"] for line in result.out.splitlines()] == ids

    bad = await run_cli("audit", "export", "--since", "last tuesday", cwd=tmp_path, env=env)
    assert bad.code == 2
    assert "'last tuesday' is neither YYYY-MM-DD nor an ISO 8601 time" in bad.err
