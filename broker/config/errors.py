"""The one error the config package raises."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration is unusable; the message names the offending key
    (``workspaces[1].port``) or variable, never a secret's value."""
