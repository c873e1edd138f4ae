"""From a workspace's configuration to what the upstreams need: the guacd
connection request (protocol, parameters, display) for desktop workspaces.

``workspace_type`` decides the upstream: ``rdp``, ``vnc``, ``ssh`` go to guacd
with that protocol, ``linux`` to guacd with the workspace's ``protocol``
(VNC by default), ``html5`` to the HTTP proxy.
"""

from __future__ import annotations

from broker.config import WorkspaceConfig, workspace_password
from broker.core.errors import ConfigError
from broker.core.models import ConnectTarget, Session
from protocols.display import DisplaySettings
from protocols.guacd import ConnectionRequest
from protocols.guacd_args import RemoteProtocol
from protocols.parameters import Credentials, Parameters, Recording, build_parameters


def uses_guacd(ws: WorkspaceConfig) -> bool:
    return ws.type != "html5"


def records(ws: WorkspaceConfig) -> bool:
    """Whether guacd records this workspace's sessions."""
    return uses_guacd(ws) and bool(ws.recording_path)


def guacd_parameters(
    ws: WorkspaceConfig,
    hostname: str,
    port: int,
    *,
    password: str | None,
    session_id: str = "session",
) -> Parameters:
    """guacd parameters for ``ws`` reached at ``hostname:port`` (the tunnel
    grant's address). A recording, when configured, is named after the
    session (guacd adds a suffix for each further viewer connection).
    Raises ``ValueError`` for settings that cannot apply."""
    protocol = RemoteProtocol(ws.protocol)
    credentials = None
    if ws.username or password is not None or ws.domain:
        credentials = Credentials(
            username=ws.username or None, password=password, domain=ws.domain or None
        )
    rdp = protocol is RemoteProtocol.RDP
    return build_parameters(
        protocol,
        ws.guacd,
        hostname=hostname,
        port=port,
        credentials=credentials,
        security=(ws.security or None) if rdp else None,
        ignore_cert=ws.ignore_cert if rdp else None,
        allow_copy=ws.allow_copy,
        allow_paste=ws.allow_paste,
        read_only=ws.read_only,
        recording=(
            Recording(ws.recording_path, session_id, include_keys=ws.recording_include_keys)
            if ws.recording_path
            else None
        ),
    )


def guacd_request(
    ws: WorkspaceConfig, session: Session, target: ConnectTarget, display: DisplaySettings
) -> ConnectionRequest:
    """The connection request for one viewer of ``session``, whose connect
    target is ``target`` (`Session.connect_target`: there is none before the
    grant is recorded, so nothing else can be asked of guacd). Reads the
    workspace's password now. Raises `ConfigError` if it cannot."""
    params = guacd_parameters(
        ws, target.host, target.port, password=workspace_password(ws), session_id=session.id
    )
    return ConnectionRequest(
        RemoteProtocol(ws.protocol),
        params,
        display,
        user_name=session.user_email or session.user_id,
    )


def check_workspaces(workspaces: tuple[WorkspaceConfig, ...]) -> None:
    """Build every desktop workspace's parameters once at startup, so a bad
    setting stops the broker with a message instead of failing a user later."""
    for i, ws in enumerate(workspaces):
        if not uses_guacd(ws):
            continue
        try:
            guacd_parameters(ws, "127.0.0.1", ws.port, password=None)
        except ValueError as exc:
            raise ConfigError(f"workspaces[{i}] ({ws.id}): {exc}") from None
