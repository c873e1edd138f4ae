"""Every HTML response carries the strict headers: a Content-Security-Policy
that forbids framing, X-Frame-Options, nosniff and no referrer. Walked over
every GET route of the app, every file under /static, the HTML5 proxy's own
``/__broker`` pages and its HTML error pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from broker.web.viewer import STATIC
from tests.security.conftest import Env

pytestmark = pytest.mark.db

SOME_ID = "00000000-0000-4000-8000-000000000001"
HTML = {"Accept": "text/html,application/xhtml+xml"}


def check_html_headers(where: str, headers: aiohttp.typedefs.LooseHeaders) -> None:
    h = {k.lower(): v for k, v in dict(headers).items()}
    csp = h.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (where, csp)
    assert "default-src" in csp and "'unsafe-inline'" not in csp, (where, csp)
    assert h.get("x-frame-options") == "DENY", where
    assert h.get("x-content-type-options") == "nosniff", where
    assert h.get("referrer-policy") == "no-referrer", where
    assert h.get("cross-origin-opener-policy") == "same-origin", where


def get_paths(env: Env) -> list[str]:
    """A concrete path for every GET route (and every static file)."""
    paths = []
    for resource in env.client.app.router.resources():
        if not any(route.method == "GET" for route in resource):
            continue
        if resource.canonical == "/static":
            paths += [f"/static/{p.name}" for p in sorted(Path(STATIC).iterdir())]
            continue
        paths.append(resource.canonical.replace("{session_id}", SOME_ID))
    return paths


async def test_every_html_response_of_the_broker(env: Env) -> None:
    html = []
    for path in get_paths(env):
        async with env.client.get(path, headers=HTML) as r:
            assert r.status < 500, path
            if r.content_type == "text/html":
                check_html_headers(path, r.headers)
                html.append(path)
            else:
                assert r.headers["X-Content-Type-Options"] == "nosniff", path
    # The pages a person opens are among them (so this cannot pass vacuously).
    assert {"/", f"/viewer/{SOME_ID}", "/static/portal.html", "/static/viewer.html"} <= set(html)


async def test_html5_proxy_pages(env: Env, token: Callable[..., str]) -> None:
    launched = await env.launch(token("alice"), "ws-wiki-a")
    origin = env.origin(launched["session_id"])
    browser = env.new_browser()
    pages = {
        origin + "/__broker/enter": 200,
        origin + "/": 401,  # not signed in: an HTML explanation
        origin + "/__broker/nothing-here": 404,
        f"http://not-a-session.localhost:{env.port}/": 404,
    }
    for url, status in pages.items():
        async with browser.get(url, headers=HTML) as r:
            assert (r.status, r.content_type) == (status, "text/html"), url
            check_html_headers(url, r.headers)
    async with browser.get(origin + "/__broker/enter.js") as r:
        assert r.content_type == "text/javascript"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
