"""The connection broker service."""

__version__ = "0.1.0"
