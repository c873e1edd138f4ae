"""Settings: read once at start, from a TOML file, then ``BROKER_*`` environment overrides.

Every setting and its default is documented in ``config.example.toml``. The
rules a caller can rely on:

- An unknown key, a value of the wrong type or a missing required value
  raises `ConfigError` naming the key (``workspaces[1].port``), so startup
  stops with a clear message.
- ``BROKER_<SECTION>_<KEY>`` overrides a scalar of a section
  (``BROKER_SERVER_PORT=9000``, ``BROKER_DATABASE_URL=...``); lists are
  comma-separated.
- Secrets are never read from the TOML itself: they come from the
  environment (``BROKER_AUTH_HS256_SECRET``, ``BROKER_NETBIRD_TOKEN``, or the
  variable a workspace names) or from a file whose path the TOML gives.
- Without a config file the broker runs on embedded demo defaults.

This is the only module that reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.core.errors import ConfigError
from broker.web.ratelimit import RateLimitSettings

WORKSPACE_TYPES = ("html5", "rdp", "vnc", "ssh", "linux")
GUACD_PROTOCOLS = ("rdp", "vnc", "ssh")
DEFAULT_PORTS = {"rdp": 3389, "vnc": 5900, "ssh": 22, "html5": 80}
SECRET_KEYS = {"hs256_secret", "token", "password", "secret", "private_key", "passphrase"}
# Worked out by the broker, never written by an operator.
DERIVED_KEYS = {"dev_secret"}


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    data_dir: str = "data"
    max_body_bytes: int = 65536
    drain_grace_seconds: float = 30.0


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""
    auto_migrate: bool = False
    busy_timeout_ms: int = 5000
    pool_size: int = 10
    statement_timeout_seconds: float = 10.0
    echo: bool = False


@dataclass(frozen=True)
class AuthSettings:
    issuer: str = "connection-broker-dev"
    audience: str = "connection-broker"
    jwks_url: str = ""
    public_key_file: str = ""
    hs256_secret_file: str = ""
    algorithms: tuple[str, ...] = ()
    leeway_seconds: int = 30
    roles_claim: str = "roles"
    email_claim: str = "email"
    admin_roles: tuple[str, ...] = ("admin",)
    require_mfa: bool = False
    jwks_cache_seconds: int = 300
    http_timeout_seconds: float = 5.0
    max_token_bytes: int = 8192
    # Filled from BROKER_AUTH_HS256_SECRET or hs256_secret_file, never from TOML.
    hs256_secret: str = field(default="", repr=False)
    dev_secret: bool = False


@dataclass(frozen=True)
class TunnelSettings:
    provider: str = "direct"
    reconcile_interval_seconds: float = 60.0
    revoke_retry_seconds: float = 5.0
    launch_timeout_seconds: float = 120.0


@dataclass(frozen=True)
class NetBirdConfig:
    base_url: str = ""
    token_file: str = ""
    gateway_group: str = "gateways"
    timeout_seconds: float = 10.0
    max_retries: int = 4
    max_retry_seconds: float = 20.0
    prefer_dns: bool = False
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class GuacdSettings:
    endpoints: tuple[str, ...] = ("127.0.0.1:4822",)
    tls: bool = False
    tls_ca_file: str = ""
    connect_timeout_seconds: float = 5.0
    reply_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class ViewerSettings:
    guacamole_js: str = ""
    held_input_limit: int = 256


@dataclass(frozen=True)
class LimitSettings:
    """Session limits (0 disables one); workspaces may override each."""

    max_session_seconds: int = 8 * 3600
    idle_no_viewer_seconds: int = 15 * 60
    idle_no_input_seconds: int = 60 * 60
    max_sessions_per_user: int = 5
    reaper_interval_seconds: float = 15.0
    activity_write_seconds: float = 30.0


@dataclass(frozen=True)
class DemoSettings:
    enabled: bool = False


@dataclass(frozen=True)
class AppsSettings:
    """HTML5 workspaces (`broker.webproxy`): each session's web app is served
    from an origin of its own, made from ``origin_template``."""

    origin_template: str = "http://{session}.localhost:{port}"
    cookie_name: str = "broker_app"
    cookie_samesite: str = "Lax"
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 300.0
    max_request_bytes: int = 104857600
    ws_max_message_bytes: int = 4194304
    sweep_seconds: float = 5.0

    def __post_init__(self) -> None:
        parse_origin_template(self.origin_template)
        name = self.cookie_name
        if not name or not name.isascii() or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError("'apps.cookie_name' must be letters, digits, '-' or '_'")
        if self.cookie_samesite not in ("Lax", "Strict"):
            raise ConfigError('\'apps.cookie_samesite\' must be "Lax" or "Strict"')


def parse_origin_template(template: str) -> tuple[str, str, str]:
    """``scheme://{session}.<domain>[:<port>|:{port}]`` → (scheme, ".<domain>", port
    or "{port}" or ""); `ConfigError` for anything else. ``{session}`` must be
    the whole first label, so every session gets an origin of its own."""
    scheme, sep, rest = template.partition("://")
    host, _, port = rest.removesuffix("/").partition(":")
    suffix = host.removeprefix("{session}")
    ok = (
        scheme in ("http", "https")
        and sep == "://"
        and host.startswith("{session}.")
        and len(suffix) > 1
        and all(c.isalnum() or c in ".-" for c in suffix)
        and ".." not in suffix
        and (port in ("", "{port}") or (port.isdigit() and 0 < int(port) < 65536))
    )
    if not ok:
        raise ConfigError(
            "'apps.origin_template' must look like \"https://{session}.apps.example.com\" "
            f'or "http://{{session}}.localhost:{{port}}", got {template!r}'
        )
    return scheme, suffix.lower(), port


@dataclass(frozen=True)
class WorkspaceConfig:
    id: str
    name: str
    type: str
    protocol: str = ""
    description: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    peer: str = ""
    netbird_group: str = ""
    probe: bool = False
    allowed_roles: tuple[str, ...] = ()
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    domain: str = ""
    security: str = ""
    ignore_cert: bool = False
    allow_copy: bool = True
    allow_paste: bool = True
    read_only: bool = False
    recording_path: str = ""
    recording_include_keys: bool = False
    max_session_seconds: int = 0
    idle_no_viewer_seconds: int = 0
    idle_no_input_seconds: int = 0
    guacd: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.protocol:
            default = "vnc" if self.type == "linux" else self.type
            object.__setattr__(self, "protocol", default)
        if not self.port:
            object.__setattr__(self, "port", DEFAULT_PORTS.get(self.protocol, 0))


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    netbird: NetBirdConfig = field(default_factory=NetBirdConfig)
    guacd: GuacdSettings = field(default_factory=GuacdSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    viewer: ViewerSettings = field(default_factory=ViewerSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)
    apps: AppsSettings = field(default_factory=AppsSettings)
    workspaces: tuple[WorkspaceConfig, ...] = ()

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.data_path / 'broker.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def workspace(self, workspace_id: str) -> WorkspaceConfig | None:
        return next((w for w in self.workspaces if w.id == workspace_id), None)


DEMO_CONFIG: dict[str, Any] = {
    "demo": {"enabled": True},
    "tunnel": {"provider": "netbird"},
    "workspaces": [
        {
            "id": "ws-linux-desktop",
            "name": "Linux Desktop",
            "type": "linux",
            "protocol": "vnc",
            "description": "A simulated Linux desktop over VNC.",
            "peer": "ws-linux-desktop",
        },
        {
            "id": "ws-windows-server",
            "name": "Windows Server",
            "type": "rdp",
            "description": "A simulated Windows desktop over RDP; it asks for your login.",
            "peer": "ws-windows-desktop",
        },
        {
            "id": "ws-team-wiki",
            "name": "Team Wiki",
            "type": "html5",
            "description": "A simulated internal web app.",
            "peer": "ws-web-app",
        },
    ],
}


def load_settings(
    path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read the TOML file (or the demo defaults when ``path`` is None), apply the
    environment and ``overrides`` (``section={"key": value}``), load secrets.

    Raises `ConfigError` naming the offending key.
    """
    env = os.environ if env is None else env
    data = _read_toml(path) if path is not None else _deepcopy(DEMO_CONFIG)
    _refuse_inline_secrets(data)
    _apply_env(data, env)
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    base = path.parent if path else Path.cwd()
    settings = _resolve_files(_build(Settings, data, ""), base)
    settings = _load_secrets(settings, env, base=base)
    _validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _refuse_inline_secrets(data: Mapping[str, Any], prefix: str = "") -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key in SECRET_KEYS:
            raise ConfigError(
                f"'{name}' is a secret and may not be written in the config file: "
                "give it through the environment or a *_file path"
            )
        if isinstance(value, dict):
            _refuse_inline_secrets(value, f"{name}.")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _refuse_inline_secrets(item, f"{name}[{i}].")


def _section_fields() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name != "workspaces"}


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for section, cls in _section_fields().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in SECRET_KEYS or f.name in DERIVED_KEYS:
                continue
            name = f"BROKER_{section}_{f.name}".upper()
            if name in env:
                raw = env[name]
                value = _parse_env(raw, hints[f.name], name)
                data.setdefault(section, {})[f.name] = value


def _parse_env(raw: str, tp: Any, name: str) -> Any:
    if tp is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if tp is int or tp is float:
        try:
            return tp(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if typing.get_origin(tp) is tuple:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _build(cls: type[Any], data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"'{path or 'config'}' must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in DERIVED_KEYS}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting '{_join(path, unknown[0])}'")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name in data:
            values[name] = _coerce(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required setting '{key}'")
    return cls(**values)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _coerce(value: Any, tp: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(typing.cast(type[Any], tp), value, key)
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be a list")
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a table")
        out: dict[str, str] = {}
        for name, item in value.items():
            if isinstance(item, bool):
                out[name] = "true" if item else "false"
            elif isinstance(item, str | int):
                out[name] = str(item)
            else:
                raise ConfigError(f"'{key}.{name}' must be a string, number or boolean")
        return out
    if origin is types.UnionType:
        raise ConfigError(f"'{key}' has an unsupported type")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool) and (type(value) is tp or (tp is int and type(value) is int)):
        return value
    raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {type(value).__name__}")


def _type_name(tp: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def _resolve_files(settings: Settings, base: Path) -> Settings:
    """Every ``*_file`` path is relative to the config file's directory (as the
    secret files always were), whatever directory the broker is started in."""

    def resolve(obj: Any) -> Any:
        changes = {
            f.name: str(base / value)
            for f in dataclasses.fields(obj)
            if f.name.endswith("_file")
            and (value := getattr(obj, f.name))
            and not Path(value).is_absolute()
        }
        return dataclasses.replace(obj, **changes) if changes else obj

    sections = {
        f.name: resolve(getattr(settings, f.name))
        for f in dataclasses.fields(settings)
        if f.name != "workspaces"
    }
    workspaces = tuple(resolve(ws) for ws in settings.workspaces)
    return dataclasses.replace(settings, **sections, workspaces=workspaces)


def _load_secrets(settings: Settings, env: Mapping[str, str], base: Path) -> Settings:
    auth = settings.auth
    secret = env.get("BROKER_AUTH_HS256_SECRET", "") or _read_secret_file(
        auth.hs256_secret_file, "auth.hs256_secret_file", base
    )
    dev = False
    no_keys = not (auth.jwks_url or auth.public_key_file)
    if not secret and no_keys and settings.demo.enabled:
        secret = dev_secret(settings.data_path)
        dev = True
    auth = dataclasses.replace(auth, hs256_secret=secret, dev_secret=dev or bool(secret))
    nb = settings.netbird
    token = env.get("BROKER_NETBIRD_TOKEN", "") or _read_secret_file(
        nb.token_file, "netbird.token_file", base
    )
    nb = dataclasses.replace(nb, token=token)
    return dataclasses.replace(settings, auth=auth, netbird=nb)


def _read_secret_file(path: str, key: str, base: Path) -> str:
    if not path:
        return ""
    full = Path(path) if Path(path).is_absolute() else base / path
    try:
        return full.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"'{key}': cannot read {full}: {exc.strerror}") from None


def dev_secret(data_dir: Path) -> str:
    """The development HS256 secret in ``data_dir``, created on first use (mode 0600)."""
    path = data_dir / "dev-hs256.secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _valid_id(value: str) -> bool:
    # ASCII only: str.isalnum() also accepts look-alikes such as a fullwidth "ｏ".
    bare = value.replace("-", "").replace("_", "")
    return 0 < len(value) <= 64 and bare.isascii() and bare.isalnum()


def _validate(settings: Settings) -> None:
    auth = settings.auth
    if not (auth.jwks_url or auth.public_key_file or auth.hs256_secret):
        raise ConfigError(
            "auth: no token key configured: set 'auth.jwks_url', 'auth.public_key_file', "
            "or an HS256 secret (BROKER_AUTH_HS256_SECRET or 'auth.hs256_secret_file')"
        )
    if settings.tunnel.provider not in ("direct", "netbird"):
        raise ConfigError('\'tunnel.provider\' must be "direct" or "netbird"')
    if settings.tunnel.provider == "netbird" and not settings.demo.enabled:
        if not settings.netbird.base_url:
            raise ConfigError("missing required setting 'netbird.base_url'")
        if not settings.netbird.token:
            raise ConfigError(
                "missing NetBird token: set BROKER_NETBIRD_TOKEN or 'netbird.token_file'"
            )
    seen: set[str] = set()
    for i, ws in enumerate(settings.workspaces):
        key = f"workspaces[{i}]"
        if ws.id in seen:
            raise ConfigError(f"'{key}.id': duplicate workspace id {ws.id!r}")
        seen.add(ws.id)
        if not _valid_id(ws.id):
            raise ConfigError(f"'{key}.id' must be 1-64 ASCII letters, digits, '-' or '_'")
        if ws.type not in WORKSPACE_TYPES:
            raise ConfigError(f"'{key}.type' must be one of {', '.join(WORKSPACE_TYPES)}")
        if ws.type != "html5" and ws.protocol not in GUACD_PROTOCOLS:
            raise ConfigError(f"'{key}.protocol' must be one of {', '.join(GUACD_PROTOCOLS)}")
        if not 0 < ws.port < 65536:
            raise ConfigError(f"'{key}.port' must be between 1 and 65535")


def workspace_password(ws: WorkspaceConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The workspace's remote-desktop password, read now (so a rotated secret
    needs no restart) from the variable ``password_env`` names or from
    ``password_file``; None when neither is configured. Raises `ConfigError`
    (naming the setting, never the value) when the source is missing."""
    env = os.environ if env is None else env
    if ws.password_env:
        if ws.password_env not in env:
            raise ConfigError(f"workspace {ws.id}: variable {ws.password_env} is not set")
        return env[ws.password_env]
    if ws.password_file:
        try:
            return Path(ws.password_file).read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(
                f"workspace {ws.id}: cannot read password_file: {exc.strerror}"
            ) from None
    return None


def effective_limit(workspace_value: int, default: int) -> int:
    """A workspace's limit: its own when set (> 0), none when negative, else
    the global default (where 0 means none)."""
    if workspace_value < 0:
        return 0
    return workspace_value or default
