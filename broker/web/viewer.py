"""The viewer: the portal and viewer pages, their static files, and the
guacamole-common-js WebSocket tunnel (DESIGN.md section 2).

Tunnel authorisation happens before anything touches guacd: the credential
(the session's viewer token, or the owner's JWT, in the ``token`` query
parameter) is checked against the database at every connect, the session
must be active, and the workspace's current roles and MFA rule must allow the
user (`broker.core.credentials`). guacd is asked to connect only to the
session's connect target (`Session.connect_target`); without one (no grant
recorded yet) the viewer is refused with UPSTREAM_TIMEOUT 514, "still being
prepared", and the page asks ``/viewer/<id>/info`` whether to retry. Failures
still complete the WebSocket handshake and then close with the Guacamole
status (769 unauthorised, 771 forbidden, 516 another user's session, 523
ended), because that is what the viewer can show; a plain HTTP request gets
JSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from broker.core.errors import BrokerError, ConfigError, Forbidden, NotFound, Unauthorized
from broker.core.models import ConnectTarget, Session, SessionStatus
from broker.core.runtime import Broker
from broker.core.streams import DRAINING, ending_for
from broker.core.workspaces import guacd_request, records, uses_guacd
from broker.web.guard import note_refusal
from broker.web.http import bearer_token, broker_of, json_response, metrics_of
from broker.web.metrics import Metrics
from broker.web.origins import app_entry_url
from broker.web.relay import Relay, TunnelSocket, close_websocket
from protocols.client_policy import allowed_opcodes
from protocols.display import DisplaySettings
from protocols.errors import GuacdError
from protocols.status import Ending
from protocols.status import GuacamoleStatus as S
from tunnels.base import TunnelStatus
from tunnels.probe import ProbeSettings, probe_tcp

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SOURCE_TREE_JS = (
    Path(__file__).resolve().parents[2]
    / "node_modules/guacamole-common-js/dist/esm/guacamole-common.js"
)


# -- pages and static files ------------------------------------------------------


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    return page


async def guacamole_js(request: web.Request) -> web.StreamResponse:
    configured = broker_of(request).settings.viewer.guacamole_js
    path = Path(configured) if configured else SOURCE_TREE_JS
    if not path.is_file():
        raise NotFound("guacamole-common-js is not installed (run `make install`)")
    return web.FileResponse(path, headers={"Content-Type": "text/javascript"})


# -- the viewer's own calls ------------------------------------------------------


async def viewer_info(request: web.Request) -> web.Response:
    broker = broker_of(request)
    session = await broker.credentials.viewer_session(
        request.match_info["session_id"], bearer_token(request)
    )
    if session.status != SessionStatus.ACTIVE:
        raise NotFound("Session has ended")
    ws = broker.settings.workspace(session.workspace_id)
    app_url = None
    if ws is not None and not uses_guacd(ws):
        app_url = app_entry_url(broker.settings, session.id, request.host)
    return json_response(
        {
            "session_id": session.id,
            "workspace_id": session.workspace_id,
            "workspace_name": session.workspace_name,
            "workspace_type": session.workspace_type,
            "app_url": app_url,
            # Whether the network path is there (a recorded grant): while it is
            # not and the tunnel is "pending" the page waits and retries.
            "tunnel_status": session.tunnel_status,
            "path_ready": session.connect_target is not None,
            "recording": ws is not None and records(ws),
            "clipboard": {
                "copy": ws.allow_copy if ws else False,
                "paste": ws.allow_paste if ws else False,
            },
        }
    )


async def websocket_tunnel(request: web.Request) -> web.StreamResponse:
    broker = broker_of(request)
    ws = TunnelSocket(protocols=("guacamole",), compress=False, max_msg_size=1 << 20, autoping=True)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(reason="WebSocket upgrade expected")
    session_id = request.match_info["session_id"]
    checked = await _checked(broker, session_id, request.query.get("token", ""))
    refusal = checked if isinstance(checked, Ending) else None
    note_refusal(request, refusal)  # a refused credential counts for the rate limits
    await ws.prepare(request)
    if isinstance(checked, Ending):
        await close_websocket(ws, checked)
        return ws
    display = DisplaySettings.from_query(request.query.items())
    await _stream(broker, metrics_of(request), ws, checked, display)
    return ws


async def _checked(broker: Broker, session_id: str, token: str) -> Session | Ending:
    """The active session the viewer may watch, as the database has it now (the
    credential's row and the session's, read together), or the refusal to
    close the tunnel with."""
    if broker.draining:
        return DRAINING
    try:
        session = await broker.credentials.viewer_session(session_id, token)
    except Unauthorized:
        return Ending(S.CLIENT_UNAUTHORIZED, "This viewer link is not valid")
    except NotFound:  # a valid credential, of another user or session: no failed sign-in
        return Ending(S.RESOURCE_NOT_FOUND, "This session does not exist")
    except Forbidden as exc:  # the workspace's roles or MFA rule refuse the user now
        return Ending(S.CLIENT_FORBIDDEN, exc.detail)
    except BrokerError:
        return Ending(S.SERVER_ERROR, "The broker could not check the viewer credential")
    if session.status != SessionStatus.ACTIVE:
        return ending_for(session.end_reason or "")
    ws = broker.settings.workspace(session.workspace_id)
    if ws is None or not uses_guacd(ws):
        return Ending(S.CLIENT_BAD_REQUEST, "This session has no remote desktop")
    return session


async def _stream(
    broker: Broker,
    metrics: Metrics,
    ws: web.WebSocketResponse,
    session: Session,
    display: DisplaySettings,
) -> None:
    workspace = broker.settings.workspace(session.workspace_id)
    assert workspace is not None and broker.guacd is not None
    target = session.connect_target
    if target is None:  # no grant recorded yet, or it failed or was revoked
        ending = no_path(session)
        if session.tunnel_status in (TunnelStatus.FAILED, TunnelStatus.REVOKED):
            await _failed_try(broker, session.id, ending)
        await close_websocket(ws, ending)
        return
    try:
        request = guacd_request(workspace, session, target, display)
        connection = await broker.guacd.connect(request, tag=session.id)
    except GuacdError as exc:
        ending = Ending(exc.status, _guacd_failure(exc.status))
        await _failed_try(broker, session.id, ending)
        await close_websocket(ws, ending)
        return
    except ConfigError as exc:
        log.error("workspace %s misconfigured: %s", workspace.id, exc)
        await close_websocket(ws, Ending(S.SERVER_ERROR, "The workspace is misconfigured"))
        return
    relay = Relay(
        ws,
        connection,
        held_limit=broker.settings.viewer.held_input_limit,
        on_input=lambda: broker.sessions.note_activity(session.id),
        input_interval=broker.settings.limits.activity_write_seconds,
        allowed=allowed_opcodes(request.parameters),
        on_first_sync=lambda: broker.sessions.note_connected(session.id),
        before_close=lambda ending: _after_try(broker, session.id, relay, ending),
        diagnosis=TargetDiagnosis(target),
    )
    # A session that ended while guacd was connecting: the registry remembers
    # ends it was told of lately and ends the relay at once (a lost notice from
    # another replica: the reaper's sweep, as for any stream).
    broker.streams.add(session.id, relay)
    broker.sessions.note_viewer(session.id)  # attach and detach: written in batches
    try:
        ending = await relay.run()
    finally:
        broker.streams.remove(session.id, relay)
        broker.sessions.note_viewer(session.id)
        metrics.relayed(relay.stats)
    log.info("viewer of session %s closed: status %d", session.id, ending.status)


# How a try that never reached a first ``sync`` may end without the desktop
# having failed: the user left, the session ended, the broker drains, or the
# browser broke the protocol.
NOT_A_CONNECT_FAILURE = frozenset(
    {
        S.SUCCESS,
        S.SESSION_CLOSED,
        S.SESSION_TIMEOUT,
        S.SERVER_BUSY,
        S.CLIENT_BAD_REQUEST,
        S.CLIENT_BAD_TYPE,
        S.CLIENT_OVERRUN,
    }
)


async def _after_try(broker: Broker, session_id: str, relay: Relay, ending: Ending) -> None:
    """Before the viewer is told: a try that ended before the first ``sync``
    for the desktop's (or guacd's) reasons is a failed one."""
    if not relay.synced and ending.status not in NOT_A_CONNECT_FAILURE:
        await _failed_try(broker, session_id, ending)


async def _failed_try(broker: Broker, session_id: str, ending: Ending) -> None:
    """Record a viewer's failed try on the session (the last connect error and
    the connect_failed clock); best effort, the viewer is told either way."""
    what = ending.message or "The remote desktop ended the connection before it came up"
    error = f"{what} (status {int(ending.status)})"
    try:
        await asyncio.wait_for(broker.sessions.connect_failed(session_id, error), 5)
    except Exception as exc:
        log.warning("could not record the connect failure of %s: %s", session_id, exc)


def no_path(session: Session) -> Ending:
    """The refusal of a viewer arriving while the session has no connect
    target. UPSTREAM_TIMEOUT: a passing condition on the way to the desktop,
    one guacamole-client itself retries, unlike 520 ("guacd unavailable") and
    519 ("the desktop refused"). The page asks ``/info`` whether to retry."""
    if session.tunnel_status in (TunnelStatus.FAILED, TunnelStatus.REVOKED):
        return Ending(S.UPSTREAM_TIMEOUT, "The network path to this workspace failed")
    return Ending(S.UPSTREAM_TIMEOUT, "The network path to this workspace is still being prepared")


# One quick TCP connect from here to the workspace, when guacd failed before
# its first ``sync``: the broker's host has the same network path as guacd's.
DIAGNOSIS_PROBE = ProbeSettings(attempts=1, interval=0, connect_timeout=2.0)


class TargetDiagnosis:
    """A `broker.web.relay.Diagnosis` that tries the workspace's address from
    here: guacd 1.5.5 answers the same when the server is unreachable and when
    it refused the login (a bare ``disconnect`` for VNC, "Server refused
    connection" for RDP). A server that accepts a TCP connection now was
    reached: it refused the login (wrong username or password, or an RDP
    security mode it does not offer)."""

    def __init__(self, target: ConnectTarget) -> None:
        self._target = target
        self._address = _address(target)

    async def _unreachable(self) -> str | None:
        """Why the address cannot be reached now, or None when it can."""
        probe = await probe_tcp(self._target.host, self._target.port, DIAGNOSIS_PROBE)
        return None if probe.ok else probe.last_error or "no connection"

    async def not_reached(self, said: str) -> Ending:
        why = await self._unreachable()
        if why is None:
            message = f"The remote desktop at {self._address} answered but refused the login"
            return Ending(S.CLIENT_UNAUTHORIZED, f"{message}: {said}" if said else message)
        return Ending(
            S.UPSTREAM_NOT_FOUND,
            f"The remote desktop at {self._address} could not be reached ({why})",
        )

    async def gone(self) -> Ending | None:
        why = await self._unreachable()
        if why is None:
            return None
        return Ending(
            S.UPSTREAM_NOT_FOUND, f"The remote desktop at {self._address} cannot be reached ({why})"
        )


def _address(target: ConnectTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def _guacd_failure(status: S) -> str:
    if status in (S.UPSTREAM_NOT_FOUND, S.UPSTREAM_UNAVAILABLE):
        return "The remote desktop service (guacd) is unavailable"
    if status == S.UPSTREAM_TIMEOUT:
        return "The remote desktop service (guacd) did not answer in time"
    return "The remote desktop service (guacd) refused the connection"


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/", _page("portal.html")),
        web.get("/viewer/{session_id}", _page("viewer.html")),
        web.get("/viewer/{session_id}/info", viewer_info),
        web.get("/viewer/{session_id}/websocket-tunnel", websocket_tunnel),
        web.get("/static/vendor/guacamole-common.js", guacamole_js),
        web.static("/static", STATIC, append_version=False),
    ]
