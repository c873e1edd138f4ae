"""Settings: read once at start, from a TOML file, then ``BROKER_*`` environment overrides.

Every setting and its default is documented in ``config.example.toml``. The
rules a caller can rely on:

- An unknown key, a value of the wrong type or a missing required value
  raises `ConfigError` naming the key (``workspaces[1].port``), so startup
  stops with a clear message. So does a value the loader parses: a guacd
  endpoint that is not ``host:port``, a trusted proxy that is not a network.
- ``BROKER_<SECTION>_<KEY>`` overrides a scalar of a section
  (``BROKER_SERVER_PORT=9000``, ``BROKER_DATABASE_URL=...``); lists are
  comma-separated.
- Secrets are never read from the TOML itself: they come from the
  environment (``BROKER_AUTH_HS256_SECRET``, ``BROKER_NETBIRD_TOKEN``, or the
  variable a workspace names) or from a file whose path the TOML gives.
- Without a config file the broker runs on embedded demo defaults.

This is the only package that reads the environment. Layout: `loader`
(`load_settings`), `coerce` (typed building), `values` (parsed values),
`settings` (`Settings` and the list of sections), one module per section.
It imports neither the web layer nor the core: they import it.
"""

from __future__ import annotations

from broker.config.apps import AppsSettings, parse_origin_template
from broker.config.auth import AuthSettings
from broker.config.coerce import DERIVED_KEYS, SECRET_KEYS
from broker.config.database import DatabaseSettings
from broker.config.demo import DEMO_CONFIG, DemoSettings
from broker.config.errors import ConfigError
from broker.config.guacd import GuacdSettings, ViewerSettings
from broker.config.limits import LimitSettings, effective_limit
from broker.config.loader import dev_secret, load_settings
from broker.config.ratelimit import RateLimitSettings
from broker.config.retention import RetentionSettings
from broker.config.server import ServerSettings
from broker.config.settings import SECTIONS, Settings
from broker.config.tunnel import NetBirdSection, TunnelSettings
from broker.config.values import HostPort, IPNetwork
from broker.config.workspaces import (
    DEFAULT_PORTS,
    GUACD_PROTOCOLS,
    WORKSPACE_TYPES,
    WorkspaceConfig,
    workspace_password,
)
from tunnels.netbird.settings import NetBirdSettings

__all__ = [
    "DEFAULT_PORTS",
    "DEMO_CONFIG",
    "DERIVED_KEYS",
    "GUACD_PROTOCOLS",
    "SECRET_KEYS",
    "SECTIONS",
    "WORKSPACE_TYPES",
    "AppsSettings",
    "AuthSettings",
    "ConfigError",
    "DatabaseSettings",
    "DemoSettings",
    "GuacdSettings",
    "HostPort",
    "IPNetwork",
    "LimitSettings",
    "NetBirdSection",
    "NetBirdSettings",
    "RateLimitSettings",
    "RetentionSettings",
    "ServerSettings",
    "Settings",
    "TunnelSettings",
    "ViewerSettings",
    "WorkspaceConfig",
    "dev_secret",
    "effective_limit",
    "load_settings",
    "parse_origin_template",
    "workspace_password",
]
