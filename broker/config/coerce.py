"""Typed building of the config: TOML tables and ``BROKER_*`` strings into frozen dataclasses.

`build` makes a section's dataclass from its table, refusing unknown keys,
values of the wrong type and missing required values with a `ConfigError`
naming the key (``workspaces[1].port``). Fields typed with a type in
`broker.config.values.PARSERS` are written as strings and parsed here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from broker.config.errors import ConfigError
from broker.config.values import PARSERS

# Never written in the TOML: they come from the environment or a *_file.
SECRET_KEYS = {"hs256_secret", "token", "password", "secret", "private_key", "passphrase"}
# Worked out by the broker, never written by an operator.
DERIVED_KEYS = {"dev_secret"}


def parse_env(raw: str, tp: Any, name: str) -> Any:
    """The value of variable ``name`` for a field of type ``tp``; lists are
    comma-separated. What comes out is then checked by `build` like TOML."""
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


def build(cls: type[Any], data: Any, path: str) -> Any:
    """An instance of the dataclass ``cls`` from the table ``data`` found at ``path``."""
    if not isinstance(data, dict):
        raise ConfigError(f"'{path or 'config'}' must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in DERIVED_KEYS}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting '{join(path, unknown[0])}'")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = join(path, name)
        if name in data:
            values[name] = coerce(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required setting '{key}'")
    return cls(**values)


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (an int is fine where a float is expected)."""
    parse = PARSERS.get(tp)
    if parse is not None:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string, got {type(value).__name__}")
        return parse(value, key)
    if dataclasses.is_dataclass(tp):
        return build(typing.cast(type[Any], tp), value, key)
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be a list")
        return tuple(coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        return _string_table(value, key)
    if origin is types.UnionType:
        raise ConfigError(f"'{key}' has an unsupported type")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool) and (type(value) is tp or (tp is int and type(value) is int)):
        return value
    raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {type(value).__name__}")


def _string_table(value: Any, key: str) -> dict[str, str]:
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


def _type_name(tp: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )
