"""The JSON shapes of the API (DESIGN.md section 1), field order included."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker.config import WorkspaceConfig
from broker.core.models import AuditEvent, Session


def iso(value: datetime | None) -> str | None:
    """``2026-03-05T14:30:00.000Z``: UTC, milliseconds, ``Z``."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def session_json(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "user_id": s.user_id,
        "user_email": s.user_email,
        "workspace_id": s.workspace_id,
        "workspace_name": s.workspace_name,
        "workspace_type": s.workspace_type,
        "status": s.status,
        "started_at": iso(s.started_at),
        "ended_at": iso(s.ended_at),
        "ip_address": s.ip_address,
        "tunnel_status": s.tunnel_status,
        "mfa_verified": s.mfa_verified,
        "end_reason": s.end_reason,
        "client_ip": s.client_ip,
        "last_connect_error": s.last_connect_error,
    }


def workspace_json(w: WorkspaceConfig, in_use: bool) -> dict[str, Any]:
    return {
        "id": w.id,
        "name": w.name,
        "type": w.type,
        "status": "in_use" if in_use else "available",
        "description": w.description,
        "protocol": w.protocol,
    }


def audit_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "timestamp": iso(e.at),
        "action": e.action,
        "user_id": e.user_id,
        "user_email": e.user_email,
        "client_ip": e.client_ip,
        "session_id": e.session_id,
        "workspace_id": e.workspace_id,
        "details": e.details or {},
    }
