"""``[apps]``: HTML5 workspaces, each session's web app on an origin of its own."""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.errors import ConfigError


@dataclass(frozen=True)
class AppsSettings:
    """HTML5 workspaces (`broker.web.apps`): each session's web app is served
    from an origin of its own, made from ``origin_template``."""

    origin_template: str = "http://{session}.localhost:{port}"
    cookie_name: str = "broker_app"
    cookie_samesite: str = "Lax"
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 300.0
    max_request_bytes: int = 104857600
    ws_max_message_bytes: int = 4194304

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
