"""A simulated HTML5 workspace: a small real HTTP + WebSocket web app on loopback.

It is what the broker's HTML5 proxy (`broker.webproxy`) serves in the demo and
in the tests. Everything it shows is fixed, so a test (or a real browser) can
assert exact text. Pages carry no inline script and a strict
``Content-Security-Policy``, so they also work under one.

==================  =====================================================
``GET /``           page titled ``Team Wiki``: ``<h1>Team Wiki</h1>``,
                    ``<p id="greeting">Welcome to the simulated team
                    wiki.</p>``, an absolute link ``<a id="about-link"
                    href="/about">About this wiki</a>``, a form ``#name-form``
                    (``POST /submit``, text field ``name``, button ``Send``),
                    and a WebSocket panel run by ``/static/app.js``:
                    ``#ws-status`` reads ``WebSocket: open`` once connected,
                    the script then sends ``hello`` and each reply is
                    appended to ``#ws-log`` (so it shows ``echo: hello``);
                    ``#ws-input`` + ``#ws-send`` send more.
``GET /about``      ``<h1>About</h1>``, ``<p id="about">This wiki is served
                    by the simulated web app.</p>``, a link back to ``/``.
``POST /submit``    form field ``name`` → ``<p id="thanks">Thanks,
                    NAME!</p>`` (HTML-escaped; ``anonymous`` when empty).
``GET /ws``         WebSocket echo: text ``T`` → ``echo: T``; binary is
                    sent back unchanged; text ``close`` → the app closes
                    with code 4001, reason ``bye``.
``* /echo``         any method: JSON ``{"method", "length", "sha256"}`` of
                    the request body, read as a stream.
``GET /headers``    JSON ``{"method", "path", "query", "headers"}``: the
                    request as received (header names lower-cased, repeats
                    joined with ``", "``).
``GET /big``        ``?size=`` bytes (default 5 MiB) of a repeating
                    ``bytes(range(256))`` pattern, streamed in 64 KiB chunks
                    without ``Content-Length``; header ``X-Body-SHA256``.
``GET /events``     ``text/event-stream``: ``data: tick N`` (N = 1, 2, ...)
                    every 0.1 s, for up to 10 minutes.
``GET /redirect``   302 to ``http://<its own listening address>/about``
                    (an absolute URL on its own host, as an app configured
                    with its own base URL would send).
``GET /set-cookie`` sets ``app_pref=dark``; with ``?name=N`` also
                    ``N=from-app`` (to show the proxy drops clashing names);
                    with ``?domain=D`` also ``app_wide=yes; Domain=D``.
==================  =====================================================

In-process::

    app = SimulatedWebApp()
    await app.start("127.0.0.1", 0)      # any loopback address, e.g. 127.64.0.10
    app.port, app.url                    # the port it got, http://host:port
    app.requests                         # ["GET /", "POST /submit", ...], in order
    await app.ws_closes.get()            # the close code of the next /ws to end
    await app.aclose()

From a shell: ``python -m protocols.simulated.webapp --host 127.0.0.1 --port 8081``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

TITLE = "Team Wiki"
GREETING = "Welcome to the simulated team wiki."
ABOUT_TEXT = "This wiki is served by the simulated web app."
ECHO_PREFIX = "echo: "
CLOSE_COMMAND, APP_CLOSE_CODE, APP_CLOSE_REASON = "close", 4001, "bye"
BIG_DEFAULT_SIZE = 5 * 1024 * 1024
CHUNK = 64 * 1024
PATTERN = bytes(range(256)) * (CHUNK // 256)
TICK_SECONDS, MAX_TICKS = 0.1, 6000
CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def big_body(size: int) -> bytes:
    """The exact bytes ``/big?size=`` sends (for tests to compare against)."""
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def _page(title: str, body: str) -> web.Response:
    text = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n"
        '<script src="/static/app.js" defer></script>\n'
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    return web.Response(
        text=text, content_type="text/html", headers={"Content-Security-Policy": CSP}
    )


INDEX_BODY = f"""<h1>{TITLE}</h1>
<p id="greeting">{GREETING}</p>
<p><a id="about-link" href="/about">About this wiki</a></p>
<form id="name-form" method="post" action="/submit">
<label for="name">Your name</label>
<input id="name" name="name" type="text">
<button id="name-submit" type="submit">Send</button>
</form>
<section>
<p id="ws-status">WebSocket: connecting</p>
<input id="ws-input" type="text">
<button id="ws-send" type="button">Send over WebSocket</button>
<pre id="ws-log"></pre>
</section>"""

ABOUT_BODY = f"""<h1>About</h1>
<p id="about">{ABOUT_TEXT}</p>
<p><a id="home-link" href="/">Back to the wiki</a></p>"""

APP_JS = """\
"use strict";
(function () {
  var status = document.getElementById("ws-status");
  if (!status) { return; }
  var log = document.getElementById("ws-log");
  var input = document.getElementById("ws-input");
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var ws = new WebSocket(scheme + location.host + "/ws");
  ws.onopen = function () {
    status.textContent = "WebSocket: open";
    ws.send("hello");
  };
  ws.onmessage = function (event) {
    log.textContent += event.data + "\\n";
  };
  ws.onclose = function (event) {
    status.textContent = "WebSocket: closed (" + event.code + " " + event.reason + ")";
  };
  document.getElementById("ws-send").addEventListener("click", function () {
    ws.send(input.value);
    input.value = "";
  });
})();
"""


class SimulatedWebApp:
    """The simulated web app; `start` it, then `aclose` it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.ws_close_codes: list[int | None] = []
        self.ws_closes: asyncio.Queue[int | None] = asyncio.Queue()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._stopping = asyncio.Event()
        self._host = ""
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (port 0: any free one, see `port`)."""
        app = web.Application(middlewares=[self._count])
        app.router.add_get("/", self._index)
        app.router.add_get("/about", self._about)
        app.router.add_post("/submit", self._submit)
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_get("/headers", self._headers)
        app.router.add_get("/big", self._big)
        app.router.add_get("/events", self._events)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/set-cookie", self._set_cookie)
        app.router.add_get("/static/app.js", self._app_js)
        app.on_shutdown.append(self._on_shutdown)
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._host, self._port = host, int(address[1])

    async def aclose(self) -> None:
        """Stop: open streams end, open WebSockets close with 1001."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_shutdown(self, app: web.Application) -> None:
        self._stopping.set()
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"app shutting down")

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        return await handler(request)

    async def _index(self, request: web.Request) -> web.Response:
        return _page(TITLE, INDEX_BODY)

    async def _about(self, request: web.Request) -> web.Response:
        return _page(f"About · {TITLE}", ABOUT_BODY)

    async def _submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("name", "")).strip() or "anonymous"
        body = f'<h1>{TITLE}</h1>\n<p id="thanks">Thanks, {html.escape(name)}!</p>'
        return _page(f"Thanks · {TITLE}", body + '\n<p><a href="/">Back</a></p>')

    async def _app_js(self, request: web.Request) -> web.Response:
        return web.Response(text=APP_JS, content_type="text/javascript")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._echo_messages(ws)
        finally:
            self._sockets.discard(ws)
        self.ws_close_codes.append(ws.close_code)
        self.ws_closes.put_nowait(ws.close_code)
        return ws

    async def _echo_messages(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == CLOSE_COMMAND:
                    await ws.close(code=APP_CLOSE_CODE, message=APP_CLOSE_REASON.encode())
                    break
                await ws.send_str(ECHO_PREFIX + msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)

    async def _echo(self, request: web.Request) -> web.Response:
        digest, length = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
        return _json({"method": request.method, "length": length, "sha256": digest.hexdigest()})

    async def _headers(self, request: web.Request) -> web.Response:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return _json(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "headers": headers,
            }
        )

    async def _big(self, request: web.Request) -> web.StreamResponse:
        try:
            size = int(request.query.get("size", BIG_DEFAULT_SIZE))
        except ValueError:
            raise web.HTTPBadRequest(text="size must be an integer") from None
        body = big_body(size)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "X-Body-SHA256": hashlib.sha256(body).hexdigest(),
            }
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, size, CHUNK):
            await resp.write(body[start : start + CHUNK])
        await resp.write_eof()
        return resp

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await resp.prepare(request)
        try:
            for n in range(1, MAX_TICKS + 1):
                await resp.write(f"data: tick {n}\n\n".encode())
                try:
                    await asyncio.wait_for(self._stopping.wait(), TICK_SECONDS)
                    break
                except TimeoutError:
                    pass
            await resp.write_eof()
        except ConnectionError:
            pass  # the reader went away: that is how an event stream usually ends
        return resp

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{self.url}/about")

    async def _set_cookie(self, request: web.Request) -> web.Response:
        resp = _json({"ok": True})
        resp.set_cookie("app_pref", "dark", path="/")
        name = request.query.get("name")
        if name:
            resp.set_cookie(name, "from-app", path="/")
        domain = request.query.get("domain")
        if domain:
            resp.set_cookie("app_wide", "yes", path="/", domain=domain)
        return resp


def _json(data: object) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json")


async def _serve(host: str, port: int) -> None:
    app = SimulatedWebApp()
    await app.start(host, port)
    print(f"simulated web app listening on {app.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await app.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the simulated HTML5 web app.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
