"""`load_settings`: a TOML file (or the demo defaults), then ``BROKER_*``
overrides, then secrets, then the checks that need several sections.

The order matters: inline secrets are refused before anything else looks at
the file, environment variables override the file, every ``*_file`` path is
resolved against the config file's directory before any is read.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broker.config.auth import AuthSettings
from broker.config.coerce import DERIVED_KEYS, SECRET_KEYS, build, coerce, parse_env
from broker.config.demo import DEMO_CONFIG, DemoSettings
from broker.config.errors import ConfigError
from broker.config.files import make_private_dir
from broker.config.settings import SECTIONS, Settings
from broker.config.tunnel import NetBirdSection, netbird_settings, validate_provider
from broker.config.workspaces import WorkspaceConfig, validate_workspaces


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
    sections = _resolve_files(_build_sections(data), base)
    return _settings(_load_secrets(sections, env, base=base))


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


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in SECRET_KEYS or f.name in DERIVED_KEYS:
                continue
            name = f"BROKER_{section}_{f.name}".upper()
            if name in env:
                value = parse_env(env[name], hints[f.name], name)
                data.setdefault(section, {})[f.name] = value


def _build_sections(data: dict[str, Any]) -> dict[str, Any]:
    """Each section (and ``workspaces``) built and type-checked, defaults filled in."""
    unknown = sorted(set(data) - set(SECTIONS) - {"workspaces"})
    if unknown:
        raise ConfigError(f"unknown setting '{unknown[0]}'")
    sections = {name: build(cls, data.get(name, {}), name) for name, cls in SECTIONS.items()}
    sections["workspaces"] = coerce(
        data.get("workspaces", []), tuple[WorkspaceConfig, ...], "workspaces"
    )
    return sections


# Settings naming a path on the broker's host besides the ``*_file`` ones.
# (A workspace's ``recording_path`` is a path on guacd's host: never resolved.)
_PATH_KEYS = frozenset({"data_dir", "guacamole_js"})


def _resolve_files(sections: dict[str, Any], base: Path) -> dict[str, Any]:
    """Every relative path on the broker's host (``*_file``, ``server.data_dir``,
    ``viewer.guacamole_js``) is relative to the config file's directory, whatever
    directory the broker is started in (without a config: the working directory)."""

    def resolve(obj: Any) -> Any:
        changes = {
            f.name: str(base / value)
            for f in dataclasses.fields(obj)
            if (f.name.endswith("_file") or f.name in _PATH_KEYS)
            and (value := getattr(obj, f.name))
            and not Path(value).is_absolute()
        }
        return dataclasses.replace(obj, **changes) if changes else obj

    resolved = {name: resolve(section) for name, section in sections.items() if name in SECTIONS}
    resolved["workspaces"] = tuple(resolve(ws) for ws in sections["workspaces"])
    return resolved


def _load_secrets(sections: dict[str, Any], env: Mapping[str, str], base: Path) -> dict[str, Any]:
    auth: AuthSettings = sections["auth"]
    demo: DemoSettings = sections["demo"]
    secret = env.get("BROKER_AUTH_HS256_SECRET", "") or _read_secret_file(
        auth.hs256_secret_file, "auth.hs256_secret_file", base
    )
    dev = False
    no_keys = not (auth.jwks_url or auth.public_key_file)
    if not secret and no_keys and demo.enabled:
        secret = dev_secret(Path(sections["server"].data_dir))
        dev = True
    auth = dataclasses.replace(auth, hs256_secret=secret, dev_secret=dev or bool(secret))
    nb: NetBirdSection = sections["netbird"]
    token = env.get("BROKER_NETBIRD_TOKEN", "") or _read_secret_file(
        nb.token_file, "netbird.token_file", base
    )
    return {**sections, "auth": auth, "netbird": dataclasses.replace(nb, token=token)}


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
    make_private_dir(data_dir)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _settings(sections: dict[str, Any]) -> Settings:
    """`Settings` from the built sections, after the checks across sections."""
    settings = Settings(**{**sections, "netbird": None})
    auth = settings.auth
    if not (auth.jwks_url or auth.public_key_file or auth.hs256_secret):
        raise ConfigError(
            "auth: no token key configured: set 'auth.jwks_url', 'auth.public_key_file', "
            "or an HS256 secret (BROKER_AUTH_HS256_SECRET or 'auth.hs256_secret_file')"
        )
    validate_provider(settings.tunnel)
    netbird = netbird_settings(sections["netbird"], settings.tunnel, demo=settings.demo.enabled)
    validate_workspaces(settings.workspaces)
    return dataclasses.replace(settings, netbird=netbird)
