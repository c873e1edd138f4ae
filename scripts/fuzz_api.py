"""Schema fuzzing of the broker's REST API with schemathesis.

Starts a real broker (``python -m broker serve``) on a free loopback port with
a throw-away config and database, launches a few sessions so ids exist, loads
the broker's own ``/api/openapi.json`` and sends schemathesis-generated
requests, valid (positive) and invalid (negative) by the document, each with a
credential drawn from: a user's, an admin's, another user's and a
finance-entitled user's JWT, a viewer token, none, garbage, an expired JWT,
an ``alg: none`` JWT and one signed with another secret. Every answer is
checked: no 5xx, and status code, content type, headers and body as the
document says. Rate limits are off here (they are tested on their own), so
invalid credentials do not lock the fuzzer out.

Then shapes no schema generates, sent as raw HTTP (`hostile_shapes`): JSON
bodies nested thousands of levels deep (past what ``json.loads`` can
recurse) to every call taking a body, the HTML5 sign-in included, and request
targets that are not a path (``OPTIONS *``, absolute-form, authority-form) on
the broker's origin and on an HTML5 app's origin with a valid app cookie.
Each must be a JSON 4xx. (Targets aiohttp's parser refuses itself, such as
``GET *``, get its plain 400 before the broker sees them.)

    python -m scripts.fuzz_api --requests 1000      # make fuzz
    python -m scripts.fuzz_api --requests 400       # the short run in make test

Prints one line per operation, then ``fuzz: requests=N 5xx=N
schema_violations=N broker_errors=N`` and exits 1 if any of those but
requests is non-zero (with the first failures shown).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import get_default_format_strategies

from scripts.processes import (
    ProcessFailed,
    broker_errors,
    free_port,
    start_broker,
    stop_process,
    wait_ready,
)

ISSUER, AUDIENCE = "connection-broker-dev", "connection-broker"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
WORKSPACES = """
[[workspaces]]
id = "ws-linux"
name = "Linux"
type = "linux"

[[workspaces]]
id = "ws-rdp"
name = "Windows"
type = "rdp"

[[workspaces]]
id = "ws-wiki"
name = "Wiki"
type = "html5"

[[workspaces]]
id = "ws-finance"
name = "Finance"
type = "vnc"
allowed_roles = ["finance"]
"""


@dataclass
class Broker:
    """A broker subprocess on loopback; its log goes to ``log_path``."""

    secret: str
    base: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, workdir: Path, database_url: str = "") -> Broker:
        port = free_port()
        config = workdir / "broker.toml"
        config.write_text(
            textwrap.dedent(f"""
                [server]
                host = "127.0.0.1"
                port = {port}
                data_dir = "{workdir / "data"}"

                [database]
                url = "{database_url}"
                auto_migrate = true

                [ratelimit]
                enabled = false

                [guacd]
                # No guacd runs here: without checks launches are not refused.
                health_check_seconds = 0
                """)
            + WORKSPACES
        )
        secret = secrets.token_urlsafe(48)
        log_path = workdir / "broker.log"
        process = start_broker(config, secret=secret, log=log_path)
        broker = cls(secret, f"http://127.0.0.1:{port}", process, log_path)
        try:
            asyncio.run(wait_ready(broker.base + "/healthz", process, log=log_path))
        except ProcessFailed as exc:
            stop_process(process)
            raise SystemExit(f"the broker did not start: {exc}") from exc
        return broker

    def stop(self) -> None:
        stop_process(self.process)

    def token(self, sub: str, roles: list[str] | None = None, **changes: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "email": f"{sub}@example.com",
            "roles": roles or [],
            "amr": ["pwd", "mfa"],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            **changes,
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def errors_logged(self) -> list[str]:
        return broker_errors(self.log_path)


NEVER_ISSUED = "00000000-0000-4000-8000-000000000000"
OFFSETS = [timedelta(hours=h, minutes=m) for h in (-23, -14, -1, 0, 1, 14, 23) for m in (0, 59)]


def edge_case_timestamps() -> None:
    """``format: date-time`` values also from the edges: the first and last
    years, offsets up to ±23:59 (whose UTC may fall outside the calendar)."""
    default = get_default_format_strategies()["date-time"]
    edges = st.datetimes(
        min_value=datetime.min,
        max_value=datetime.max,
        timezones=st.sampled_from([timezone(o) for o in OFFSETS]),
    ).map(lambda d: d.isoformat())
    years = st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
    schemathesis.openapi.format("date-time", st.one_of(default, edges, years))


def setup(
    broker: Broker,
) -> tuple[dict[str, str | None], dict[str, list[str]], tuple[str, str]]:
    """Sessions to aim at, and the credentials requests are sent with (None:
    no Authorization header). Returns (credentials, known path values, the
    HTML5 session's id and viewer token)."""
    alice, admin = broker.token("alice"), broker.token("root", ["admin"])

    def launch(token: str, workspace: str) -> dict[str, Any]:
        r = requests.post(
            f"{broker.base}/api/workspaces/{workspace}/launch",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    mine, theirs = launch(alice, "ws-linux"), launch(admin, "ws-wiki")
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    creds: dict[str, str | None] = {
        "alice": alice,
        "admin": admin,
        "bob": broker.token("bob"),
        "finance": broker.token("fin", ["finance"]),
        "viewer-token": mine["viewer_token"],
        "none": None,
        "garbage": "not a token at all",
        "expired": broker.token("alice", exp=int(time.time()) - 3600),
        "alg-none": f"{header}.{alice.split('.')[1]}.",
        "other-secret": jwt.encode({"sub": "alice"}, "x" * 48, algorithm="HS256"),
    }
    known = {
        "workspace_id": ["ws-linux", "ws-rdp", "ws-wiki", "ws-finance"],
        "session_id": [mine["session_id"], theirs["session_id"], NEVER_ISSUED],
    }
    return creds, known, (theirs["session_id"], theirs["viewer_token"])


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    violations: int = 0
    not_sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


# Valid credentials come up more often, so requests get past authentication.
DRAWN = ["alice", "alice", "admin", "admin", "bob", "finance", "viewer-token"]
DRAWN += ["none", "garbage", "expired", "alg-none", "other-secret"]


@dataclass(frozen=True)
class Plan:
    """A batch of cases: one operation, one generation mode, maybe fixed path values."""

    operation: Any
    mode: GenerationMode
    path: dict[str, str] | None = None

    def label(self) -> str:
        fixed = ",".join(self.path.values()) if self.path else "generated"
        return f"{self.operation.method.upper():5} {self.operation.path:45} {self.mode:8} {fixed}"


def operations_of(schema: Any) -> list[Any]:
    """Every operation the document describes; raises the error schemathesis
    found in it when one cannot be tested (a broken document is a failure)."""
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


def plans_for(operations: list[Any], known: dict[str, list[str]]) -> list[Plan]:
    """Generated values for every operation in both modes, and each known id
    (real workspaces and sessions) in the path, so requests reach the handlers."""
    out = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            out.append(Plan(operation, mode))
        names = [p.name for p in operation.path_parameters]
        for name in names:
            for value in known.get(name, []):
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    out.append(Plan(operation, mode, {name: value}))
    return out


def fuzz(
    plan: Plan,
    examples: int,
    creds: dict[str, str | None],
    base: str,
    tally: Tally,
    rng_seed: int,
    limit: int,
) -> None:
    http = requests.Session()
    strategy = plan.operation.as_strategy(generation_mode=plan.mode, path_parameters=plan.path)

    @seed(rng_seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, who=st.sampled_from(DRAWN))
    def run(case: Any, who: str) -> None:
        if tally.requests >= limit:
            return
        credential = creds[who]
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        case.headers = headers
        try:
            response = case.call(base_url=base, session=http, timeout=15)
        except (ValueError, UnicodeError, requests.exceptions.InvalidHeader):
            tally.not_sent += 1  # the HTTP client library refused to send it
            return
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        if response.status_code >= 500:
            tally.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # a failure group per case
            if response.status_code < 500:
                tally.violations += 1
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            message = f"{case.method} {case.formatted_path} as {who} -> " + " | ".join(
                [str(response.status_code), *lines[1:5]]
            )
            if message not in tally.failures and len(tally.failures) < 20:
                tally.failures.append(message)

    try:
        run()
    finally:
        http.close()


def _raw(
    base: str, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, str, bytes, list[str]]:
    """One request sent as is: (status, content type, body, Set-Cookie values)."""
    host, _, port = base.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        answer = conn.getresponse()
        cookies = answer.headers.get_all("Set-Cookie") or []
        return answer.status, answer.getheader("Content-Type", ""), answer.read(), cookies
    finally:
        conn.close()


def hostile_shapes(base: str, creds: dict[str, str | None], app: tuple[str, str]) -> Tally:
    """Deeply nested JSON bodies and request targets that are not a path, on
    the broker's origin and on an HTML5 app's origin with a valid app cookie:
    every answer a JSON 4xx (see the module's docstring)."""
    tally = Tally()
    own = base.removeprefix("http://")
    session_id, viewer_token = app
    app_host = f"{session_id}.localhost:{own.partition(':')[2]}"
    sign_in = {
        "Host": app_host,
        "Origin": f"http://{app_host}",
        "Sec-Fetch-Site": "same-origin",
        "Content-Type": "application/json",
    }
    token = json.dumps({"token": viewer_token}).encode()
    status, _, _, cookies = _raw(base, "POST", "/__broker/session", sign_in, token)
    if status != 200 or not cookies:
        tally.failures.append(f"html5 sign-in for the hostile shapes failed: {status}")
        return tally
    cookie = cookies[0].split(";")[0]
    alice = f"Bearer {creds['alice']}"
    sent: list[tuple[str, str, dict[str, str], bytes]] = []
    for depth in (100, 1000, 30000):
        for nested in ("[" * depth, '{"a":' * depth, '[{"a":' * (depth // 2)):
            body = nested.encode()[:60000]
            for path in (
                "/api/workspaces/ws-rdp/launch",
                f"/api/sessions/{NEVER_ISSUED}/disconnect",
            ):
                json_headers = {"Host": own, "Authorization": alice}
                sent.append(
                    ("POST", path, {**json_headers, "Content-Type": "application/json"}, body)
                )
            sent.append(("POST", "/__broker/session", sign_in, body[:4000]))
    for method, target in (
        ("OPTIONS", "*"),
        ("GET", f"http://{own}/api/workspaces"),
        ("POST", f"http://{app_host}/"),
        ("CONNECT", "127.0.0.1:22"),
    ):
        sent.append((method, target, {"Host": own, "Authorization": alice}, b""))
        sent.append((method, target, {"Host": app_host, "Cookie": cookie}, b""))
    for method, target, headers, body in sent:
        status, content_type, answer, _ = _raw(base, method, target, headers, body)
        tally.requests += 1
        tally.statuses[status] += 1
        shown = f"{method} {target[:40]} (Host {headers['Host']}, {len(body)} bytes)"
        if status >= 500:
            tally.server_errors += 1
            tally.failures.append(f"{shown} -> {status} {answer[:80]!r}")
        elif not (400 <= status < 500 and content_type.startswith("application/json")):
            tally.violations += 1
            tally.failures.append(f"{shown} -> {status} {content_type} {answer[:80]!r}")
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="how many requests to send")
    parser.add_argument("--seed", type=int, default=20260305, help="hypothesis seed")
    parser.add_argument(
        "--database-url", default="", help="an empty database to use (default: SQLite, temporary)"
    )
    args = parser.parse_args(argv)
    edge_case_timestamps()
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="broker-fuzz-") as tmp:
        broker = Broker.start(Path(tmp), args.database_url)
        try:
            creds, known, app = setup(broker)
            schema = schemathesis.openapi.from_url(broker.base + "/api/openapi.json")
            operations = operations_of(schema)
            plans = plans_for(operations, known)
            started = time.monotonic()
            round_ = 0
            while tally.requests < args.requests and round_ < 20:
                left = args.requests - tally.requests
                per_plan = max(2, left // len(plans))
                for i, plan in enumerate(plans):
                    before = tally.requests
                    fuzz(
                        plan,
                        per_plan,
                        creds,
                        broker.base,
                        tally,
                        args.seed + 1000 * round_ + i,
                        args.requests,
                    )
                    if round_ == 0:
                        print(f"  {plan.label()} {tally.requests - before:5}")
                round_ += 1
            hostile = hostile_shapes(broker.base, creds, app)
            elapsed = time.monotonic() - started
            errors = broker.errors_logged()
        finally:
            broker.stop()
    statuses = " ".join(f"{s}:{n}" for s, n in sorted(tally.statuses.items()))
    print(f"statuses: {statuses}")
    shapes = " ".join(f"{s}:{n}" for s, n in sorted(hostile.statuses.items()))
    print(f"hostile shapes (deep JSON, request targets that are not a path): {shapes}")
    tally.requests += hostile.requests
    tally.server_errors += hostile.server_errors
    tally.violations += hostile.violations
    tally.failures += hostile.failures
    print(f"not sent (refused by the HTTP client library): {tally.not_sent}")
    for failure in tally.failures:
        print(f"FAILURE {failure}")
    for line in errors[:20]:
        print(f"BROKER LOG {line}")
    print(
        f"fuzz: requests={tally.requests} 5xx={tally.server_errors} "
        f"schema_violations={tally.violations} broker_errors={len(errors)} "
        f"seconds={elapsed:.1f}"
    )
    ok = tally.server_errors == tally.violations == len(errors) == 0
    return 0 if ok and tally.requests >= args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
