"""``GET /api/openapi.json``: an OpenAPI 3.1 description of every endpoint.

The tests validate real responses against this document, so it cannot drift
from what the handlers return.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from broker import __version__

JSON = "application/json"

STR = {"type": "string"}
NULLABLE_STR = {"type": ["string", "null"]}
TIMESTAMP = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
    "description": "UTC, milliseconds, Z: 2026-03-05T14:30:00.000Z",
}
UUID = {"type": "string", "format": "uuid"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }


SCHEMAS: dict[str, Any] = {
    "Session": _obj(
        {
            "id": UUID,
            "user_id": STR,
            "user_email": STR,
            "workspace_id": STR,
            "workspace_name": STR,
            "workspace_type": {"enum": ["html5", "rdp", "vnc", "ssh", "linux"]},
            "status": {"enum": ["active", "disconnected", "terminated"]},
            "started_at": TIMESTAMP,
            "ended_at": {"oneOf": [TIMESTAMP, {"type": "null"}]},
            "ip_address": STR,
            "tunnel_status": {"enum": ["encrypted", "pending", "direct", "revoked", "failed"]},
            "mfa_verified": {"type": "boolean"},
            "end_reason": {
                "description": (
                    "Why the session ended; null while it is active. `user_disconnect`, "
                    "`idle_timeout` and `max_duration` come with status `disconnected`, "
                    "the others with `terminated`. `tunnel_lost` and `system` are reserved: "
                    "this version never ends a session with them (a lost network grant "
                    "shows as tunnel_status `failed` instead), but clients should accept "
                    "them."
                ),
                "enum": [
                    None,
                    "user_disconnect",
                    "idle_timeout",
                    "max_duration",
                    "workspace_stop",
                    "admin_terminate",
                    "launch_failed",
                    "connect_failed",
                    "tunnel_lost",
                    "system",
                ],
            },
            "client_ip": NULLABLE_STR,
            "last_connect_error": {
                "description": (
                    "Why the last viewer's try to reach the remote desktop failed before "
                    "its first frame, e.g. `The remote desktop service (guacd) is "
                    "unavailable (status 520)`; null when no try failed since the last "
                    "one that succeeded. Kept after the session ends. For guacd "
                    "workspaces, tries failing for `limits.connect_failed_seconds` "
                    "end the session with `connect_failed`."
                ),
                **NULLABLE_STR,
            },
        }
    ),
    "Workspace": _obj(
        {
            "id": STR,
            "name": STR,
            "type": {"enum": ["html5", "rdp", "vnc", "ssh", "linux"]},
            "status": {"enum": ["available", "in_use"]},
            "description": STR,
            "protocol": STR,
        }
    ),
    "Launch": _obj(
        {
            "session_id": UUID,
            "workspace": _ref("Workspace"),
            "stream_url": STR,
            "tunnel_status": {"enum": ["encrypted", "pending", "direct"]},
            "security": _obj(
                {
                    "mfa_verified": {"type": "boolean"},
                    "tunnel": {"enum": ["netbird", "direct"]},
                    "encrypted": {"type": "boolean"},
                    "recording": {"type": "boolean"},
                }
            ),
            "viewer_token": {
                "type": "string",
                "description": "Opaque; valid while the session is active.",
            },
            "session": _ref("Session"),
        }
    ),
    "AuditEntry": _obj(
        {
            "id": {"type": "integer"},
            "timestamp": TIMESTAMP,
            "action": STR,
            "user_id": NULLABLE_STR,
            "user_email": NULLABLE_STR,
            "client_ip": NULLABLE_STR,
            "session_id": NULLABLE_STR,
            "workspace_id": NULLABLE_STR,
            "details": {"type": "object"},
        }
    ),
    "Message": _obj({"message": STR}),
    "SessionMessage": _obj({"message": STR, "session": _ref("Session")}),
    "Me": _obj(
        {
            "user_id": STR,
            "email": STR,
            "roles": {"type": "array", "items": STR},
            "is_admin": {"type": "boolean"},
            "mfa_verified": {"type": "boolean"},
            "server_time": TIMESTAMP,
        }
    ),
    "Error": _obj({"detail": STR, "code": STR}, ["detail"]),
}

ERROR_TEXT = {
    400: "Malformed request",
    401: "Missing or invalid token",
    403: "Not allowed",
    404: "Not found (or not yours)",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid parameter",
    429: "Too many requests (Retry-After says when to try again)",
    431: "Request headers too large",
    502: "A dependency failed",
    503: "A dependency is unavailable, or the broker is draining",
}


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "string", "pattern": r"^\d+$"},
    }
}


def _errors(*codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in codes:
        out[str(c)] = {"description": ERROR_TEXT[c], "content": {JSON: {"schema": _ref("Error")}}}
        if c in (429, 503):
            out[str(c)]["headers"] = RETRY_AFTER
    return out


def _ok(schema: dict[str, Any], description: str = "OK", status: int = 200) -> dict[str, Any]:
    return {str(status): {"description": description, "content": {JSON: {"schema": schema}}}}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


SESSION_ID = _param("session_id", "path", STR, "Session id (UUID)")
WORKSPACE_ID = _param("workspace_id", "path", STR, "Workspace id")
LIMIT = _param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 1000},
    "How many, newest first (default 100)",
)
BEFORE_SESSION = _param("before", "query", STR, "Page back from this session id")
AUDIT_FILTERS = [
    _param("action", "query", STR, "Only this action"),
    _param("session", "query", STR, "Only this session"),
    _param("since", "query", {"type": "string", "format": "date-time"}, "From (inclusive)"),
    _param("until", "query", {"type": "string", "format": "date-time"}, "Until (exclusive)"),
    _param(
        "before",
        "query",
        {"type": "string", "pattern": r"^\d{1,18}$"},
        "Page back from this entry id",
    ),
    LIMIT,
]
AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(
    summary: str,
    responses: dict[str, Any],
    params: list[Any] | None = None,
    *,
    public: bool = False,
    body: bool = False,
) -> dict[str, Any]:
    # Any call may meet the edge guard (broker.guard): headers too large, and
    # for calls with a credential the rate limits on failed sign-ins.
    guarded = _errors(431) if public else _errors(429, 431)
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **guarded}}
    if params:
        op["parameters"] = params
    op["security"] = [] if public else AUTH
    if body:
        op["responses"].update(_errors(413))
        op["requestBody"] = {
            "required": False,
            "content": {JSON: {"schema": {"type": "object"}}},
        }
    return op


def _paths() -> dict[str, Any]:
    viewer_or_jwt: list[dict[str, list[str]]] = [{"bearer": []}, {"viewerToken": []}]
    disconnect = _op(
        "End one of your sessions (JWT or that session's viewer token)",
        {**_ok(_ref("Message")), **_errors(401, 404, 409, 503)},
        [SESSION_ID],
    )
    disconnect["security"] = viewer_or_jwt
    return {
        "/api/openapi.json": {"get": _op("This document", _ok({"type": "object"}), public=True)},
        "/api/me": {
            "get": _op("The caller as the broker sees them", {**_ok(_ref("Me")), **_errors(401)})
        },
        "/api/sessions": {
            "get": _op(
                "Your sessions, newest first",
                {**_ok(_array("Session")), **_errors(401, 404, 422, 503)},
                [LIMIT, BEFORE_SESSION],
            )
        },
        "/api/sessions/active": {
            "get": _op("Your active sessions", {**_ok(_array("Session")), **_errors(401, 503)})
        },
        "/api/sessions/{session_id}": {
            "get": _op(
                "One of your sessions",
                {**_ok(_ref("Session")), **_errors(401, 404, 503)},
                [SESSION_ID],
            )
        },
        "/api/sessions/{session_id}/disconnect": {"post": disconnect},
        "/api/workspaces": {
            "get": _op(
                "Workspaces you may launch", {**_ok(_array("Workspace")), **_errors(401, 503)}
            )
        },
        "/api/workspaces/{workspace_id}": {
            "get": _op(
                "One workspace",
                {**_ok(_ref("Workspace")), **_errors(401, 404, 503)},
                [WORKSPACE_ID],
            )
        },
        "/api/workspaces/{workspace_id}/launch": {
            "post": _op(
                "Launch: a new session (201) or your running one (200)",
                {
                    **_ok(_ref("Launch"), "Your running session"),
                    **_ok(_ref("Launch"), "New session", 201),
                    **_errors(400, 401, 403, 404, 409, 429, 502, 503),
                },
                [WORKSPACE_ID],
                body=True,
            )
        },
        "/api/workspaces/{workspace_id}/stop": {
            "post": _op(
                "End the workspace's active session (owner or admin)",
                {**_ok(_ref("SessionMessage")), **_errors(401, 403, 404, 409, 503)},
                [WORKSPACE_ID],
            )
        },
        "/api/audit": {
            "get": _op(
                "Your own audit entries, newest first",
                {**_ok(_array("AuditEntry")), **_errors(401, 422, 503)},
                AUDIT_FILTERS,
            )
        },
        "/api/admin/sessions": {
            "get": _op(
                "All sessions (admin)",
                {**_ok(_array("Session")), **_errors(401, 403, 404, 422, 503)},
                [
                    _param(
                        "status",
                        "query",
                        {"enum": ["active", "disconnected", "terminated"]},
                        "Only this status",
                    ),
                    _param("user", "query", STR, "User id or email"),
                    _param("workspace", "query", STR, "Workspace id"),
                    LIMIT,
                    BEFORE_SESSION,
                ],
            )
        },
        "/api/admin/sessions/{session_id}/terminate": {
            "post": _op(
                "End any session (admin)",
                {**_ok(_ref("SessionMessage")), **_errors(401, 403, 404, 409, 503)},
                [SESSION_ID],
            )
        },
        "/api/admin/audit": {
            "get": _op(
                "All audit entries (admin)",
                {**_ok(_array("AuditEntry")), **_errors(401, 403, 422, 503)},
                [_param("user", "query", STR, "User id or email"), *AUDIT_FILTERS],
            )
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Connection broker API",
            "version": __version__,
            "description": "Launch workspaces, list and end sessions, read the audit log.",
        },
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "viewerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The launch response's viewer_token",
                },
            },
        },
    }
