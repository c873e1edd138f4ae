"""The REST API (DESIGN.md section 1): thin handlers over `SessionService`,
`SessionQueries` and `Credentials`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from aiohttp import web

from broker.config import WorkspaceConfig
from broker.core.audit import Actor, AuditQuery
from broker.core.audit import query as audit_query
from broker.core.auth import Principal
from broker.core.errors import Forbidden, NotFound, Unavailable, Unprocessable
from broker.core.models import looks_like_session_id
from broker.core.queries import SESSION_NOT_FOUND
from broker.core.workspaces import records
from broker.web.http import (
    bearer_token,
    broker_of,
    client_ip,
    json_response,
    optional_json_object,
    principal,
)
from broker.web.openapi import openapi_document
from broker.web.serialize import audit_json, iso, session_json, workspace_json

MAX_LIMIT = 1000


def actor_for(request: web.Request, who: Principal) -> Actor:
    return Actor(
        who.user_id,
        who.email,
        client_ip(request, broker_of(request).settings.server.trusted_proxies),
    )


def _limit(request: web.Request, default: int = 100) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Unprocessable("'limit' must be an integer between 1 and 1000") from None
    if not 1 <= value <= MAX_LIMIT:
        raise Unprocessable("'limit' must be an integer between 1 and 1000")
    return value


def _visible_workspace(request: web.Request, who: Principal) -> WorkspaceConfig:
    ws = broker_of(request).settings.workspace(request.match_info["workspace_id"])
    if ws is None or not who.may_use(ws):
        raise NotFound("Workspace not found")
    return ws


def _session_id(request: web.Request) -> str:
    session_id = request.match_info["session_id"]
    if not looks_like_session_id(session_id):
        raise NotFound(SESSION_NOT_FOUND)
    return session_id


# -- sessions ---------------------------------------------------------------


async def list_sessions(request: web.Request) -> web.Response:
    who = await principal(request)
    rows = await broker_of(request).queries.list_for_user(
        who.user_id, limit=_limit(request), before=request.query.get("before")
    )
    return json_response([session_json(s) for s in rows])


async def active_sessions(request: web.Request) -> web.Response:
    who = await principal(request)
    rows = await broker_of(request).queries.query(
        user_id=who.user_id, status="active", limit=MAX_LIMIT
    )
    return json_response([session_json(s) for s in rows])


async def get_session(request: web.Request) -> web.Response:
    who = await principal(request)
    session = await broker_of(request).queries.get_for_user(who.user_id, _session_id(request))
    return json_response(session_json(session))


async def disconnect_session(request: web.Request) -> web.Response:
    """Accepts the owner's JWT or the session's own viewer token."""
    broker = broker_of(request)
    session_id = _session_id(request)
    user = await broker.credentials.session_user(session_id, bearer_token(request))
    ip = client_ip(request, broker.settings.server.trusted_proxies)
    await broker.sessions.disconnect(user.user_id, session_id, Actor(user.user_id, user.email, ip))
    return json_response({"message": "Session disconnected"})


# -- workspaces -------------------------------------------------------------


async def list_workspaces(request: web.Request) -> web.Response:
    who = await principal(request)
    broker = broker_of(request)
    in_use = await broker.queries.active_workspace_ids()
    return json_response(
        [workspace_json(w, w.id in in_use) for w in broker.settings.workspaces if who.may_use(w)]
    )


async def get_workspace(request: web.Request) -> web.Response:
    who = await principal(request)
    ws = _visible_workspace(request, who)
    in_use = ws.id in await broker_of(request).queries.active_workspace_ids()
    return json_response(workspace_json(ws, in_use))


async def launch_workspace(request: web.Request) -> web.Response:
    who = await principal(request)
    ws = _visible_workspace(request, who)
    await optional_json_object(request)
    broker = broker_of(request)
    if broker.draining:
        raise Unavailable("The broker is shutting down; launch again in a moment")
    launched = await broker.sessions.launch(who, ws, actor_for(request, who).client_ip)
    s = launched.session
    encrypted = broker.tunnels.encrypts and s.tunnel_status == "encrypted"
    body = {
        "session_id": s.id,
        "workspace": workspace_json(ws, True),
        "stream_url": f"/viewer/{s.id}",
        "tunnel_status": s.tunnel_status,
        "security": {
            "mfa_verified": s.mfa_verified,
            "tunnel": broker.tunnels.name,
            "encrypted": encrypted,
            "recording": records(ws),
        },
        "viewer_token": launched.viewer_token,
        "session": session_json(s),
    }
    return json_response(body, 201 if launched.created else 200)


async def stop_workspace(request: web.Request) -> web.Response:
    who = await principal(request)
    ws = _visible_workspace(request, who)
    session = await broker_of(request).sessions.stop_workspace(who, ws, actor_for(request, who))
    return json_response({"message": "Workspace stopped", "session": session_json(session)})


# -- audit and admin --------------------------------------------------------


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        # In UTC it must still be a datetime (0001-01-01T00:00+14:00 is not).
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Unprocessable(f"'{name}' must be an ISO 8601 timestamp") from None


def _before_id(request: web.Request) -> int | None:
    raw = request.query.get("before")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise Unprocessable("'before' must be an audit entry id")
    return int(raw)


def _audit_query(request: web.Request, *, user: str | None) -> AuditQuery:
    return AuditQuery(
        user=user,
        action=request.query.get("action"),
        session_id=request.query.get("session"),
        since=_time(request, "since"),
        until=_time(request, "until"),
        before_id=_before_id(request),
        limit=_limit(request),
    )


async def my_audit(request: web.Request) -> web.Response:
    who = await principal(request)
    q = _audit_query(request, user=None)
    async with broker_of(request).db() as db:
        rows = await audit_query(db, dataclasses.replace(q, user_id=who.user_id))
    return json_response([audit_json(e) for e in rows])


async def _admin(request: web.Request) -> Principal:
    who = await principal(request)
    if not who.is_admin:
        raise Forbidden("Administrator role required")
    return who


async def admin_sessions(request: web.Request) -> web.Response:
    await _admin(request)
    status = request.query.get("status")
    if status is not None and status not in ("active", "disconnected", "terminated"):
        raise Unprocessable("'status' must be active, disconnected or terminated")
    rows = await broker_of(request).queries.query(
        status=status,
        user=request.query.get("user"),
        workspace_id=request.query.get("workspace"),
        limit=_limit(request),
        before=request.query.get("before"),
    )
    return json_response([session_json(s) for s in rows])


async def admin_terminate(request: web.Request) -> web.Response:
    who = await _admin(request)
    session = await broker_of(request).sessions.admin_terminate(
        _session_id(request), actor_for(request, who)
    )
    return json_response({"message": "Session terminated", "session": session_json(session)})


async def admin_audit(request: web.Request) -> web.Response:
    await _admin(request)
    q = _audit_query(request, user=request.query.get("user"))
    async with broker_of(request).db() as db:
        rows = await audit_query(db, q)
    return json_response([audit_json(e) for e in rows])


async def me(request: web.Request) -> web.Response:
    who = await principal(request)
    return json_response(
        {
            "user_id": who.user_id,
            "email": who.email,
            "roles": sorted(who.roles),
            "is_admin": who.is_admin,
            "mfa_verified": who.mfa_verified,
            "server_time": iso(datetime.now(UTC)),
        }
    )


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/openapi.json", openapi_json),
        web.get("/api/me", me),
        web.get("/api/sessions", list_sessions),
        web.get("/api/sessions/active", active_sessions),
        web.get("/api/sessions/{session_id}", get_session),
        web.post("/api/sessions/{session_id}/disconnect", disconnect_session),
        web.get("/api/workspaces", list_workspaces),
        web.get("/api/workspaces/{workspace_id}", get_workspace),
        web.post("/api/workspaces/{workspace_id}/launch", launch_workspace),
        web.post("/api/workspaces/{workspace_id}/stop", stop_workspace),
        web.get("/api/audit", my_audit),
        web.get("/api/admin/sessions", admin_sessions),
        web.post("/api/admin/sessions/{session_id}/terminate", admin_terminate),
        web.get("/api/admin/audit", admin_audit),
    ]
