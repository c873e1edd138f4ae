"""The HTTP upstream's header rules, from in-memory values."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict
from yarl import URL

from protocols.http_upstream import (
    Forwarding,
    host_only_cookie,
    request_headers,
    response_headers,
    rewrite_location,
    sendable,
    strip_cookies,
)

APP = URL("http://127.64.0.10:8081")
PUBLIC = "https://s1.apps.example.com"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://127.64.0.10:8081/about", f"{PUBLIC}/about"),
        ("HTTP://127.64.0.10:8081/a?b=1#c", f"{PUBLIC}/a?b=1#c"),
        ("http://127.64.0.10:8081", PUBLIC),
        ("http://127.64.0.10:8081?x=1", f"{PUBLIC}/?x=1"),
        ("/relative", "/relative"),
        ("other/relative", "other/relative"),
        ("http://127.64.0.10:9999/about", "http://127.64.0.10:9999/about"),
        ("https://127.64.0.10:8081/about", "https://127.64.0.10:8081/about"),
        ("https://idp.example.com/login", "https://idp.example.com/login"),
    ],
)
def test_location_on_the_apps_own_address_is_rewritten(location, expected):
    assert rewrite_location(location, APP, PUBLIC) == expected


def test_default_port_matches_with_or_without_it():
    app = URL("http://wiki.internal")
    assert rewrite_location("http://wiki.internal/x", app, PUBLIC) == f"{PUBLIC}/x"
    assert rewrite_location("http://wiki.internal:80/x", app, PUBLIC) == f"{PUBLIC}/x"


def test_cookies_are_cut_by_name_only():
    values = ["a=1; broker_app=secret", "b=2;broker_app=other ; c=x=y"]
    assert strip_cookies(values, {"broker_app"}) == "a=1; b=2; c=x=y"
    assert strip_cookies(["broker_app=1"], {"broker_app"}) == ""


def test_request_headers_drop_hops_and_replace_forwarding():
    incoming = CIMultiDict(
        [
            ("Host", "internal"),
            ("Connection", "Upgrade, X-Hop"),
            ("X-Hop", "1"),
            ("Upgrade", "h2c"),
            ("Transfer-Encoding", "chunked"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("Authorization", "Bearer x"),
            ("Sec-WebSocket-Key", "k"),
            ("Accept", "text/html"),
        ]
    )
    fwd = Forwarding("10.1.2.3", "https", "s1.apps.example.com")
    out = request_headers(
        incoming, host="s1.apps.example.com", forwarding=fwd, drop_authorization=True
    )
    assert dict(out) == {
        "Sec-WebSocket-Key": "k",
        "Accept": "text/html",
        "Host": "s1.apps.example.com",
        "X-Forwarded-For": "10.1.2.3",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "s1.apps.example.com",
    }
    ws = request_headers(incoming, host="h", forwarding=fwd, websocket=True)
    assert "Sec-WebSocket-Key" not in ws and ws["Authorization"] == "Bearer x"


def test_response_headers_keep_repeats_and_drop_reserved_cookies():
    incoming = CIMultiDict(
        [
            ("Set-Cookie", "a=1; Path=/; Domain=.example.com; HttpOnly"),
            ("Set-Cookie", "broker_app=evil; Path=/"),
            ("Set-Cookie", "__Host-broker_app=evil; Path=/; Secure"),
            ("Keep-Alive", "timeout=5"),
            ("Content-Length", "10"),
            ("Location", "http://127.64.0.10:8081/next"),
        ]
    )
    out = response_headers(
        incoming,
        upstream=APP,
        public_origin=PUBLIC,
        reserved_cookies={"broker_app", "__Host-broker_app"},
    )
    assert out.getall("Set-Cookie") == ["a=1; Path=/; HttpOnly"]
    assert out["Location"] == f"{PUBLIC}/next" and out["Content-Length"] == "10"
    assert "Keep-Alive" not in out


def test_host_only_cookie_and_close_codes():
    assert host_only_cookie("a=b; domain=x; Path=/") == "a=b; Path=/"
    assert host_only_cookie("a=b") == "a=b"
    assert [sendable(c) for c in (1000, 1005, 1006, 4000, 999, 5000)] == [
        1000,
        1000,
        1011,
        4000,
        1011,
        1011,
    ]
