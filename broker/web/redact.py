"""Secrets out of log records, whoever logs them.

The broker's own log calls never pass a credential (the tests search the logs
of a full flow for every secret used). This filter is for text the broker
does not write itself: aiohttp logs the first 100 bytes of a request line or
header it could not parse, and a request line carries the viewer tunnel's
``?token=``; a JWT or ``Bearer`` value quoted in some library's exception
would follow the same way. `RedactingFilter` rewrites a record's message,
exception and stack text before any handler sees it:

- JWTs (``eyJ...``, also cut off), ``Bearer <anything>``,
- values of query or form parameters named like credentials (``token=``,
  ``access_token=``, ``password=``, ``secret=``, ...),
- ``Cookie:``/``Set-Cookie:`` header values, NetBird PATs (``nbp_...``).

aiohttp's report of a malformed request (a client's mistake, not the
broker's) also loses its traceback and drops to INFO.

It also keeps a client from writing log lines of its own: a request path,
header or token claim that reaches a message may hold CR, LF, NUL or ESC
(``GET /healthz%0A2026-... INFO ...`` would forge a second record). Every
non-printable character of the message becomes ``\\xNN`` (``\\uNNNN`` past
U+00FF), and an exception's text keeps its own line breaks but each of its
lines is indented, so no line of it can pass for a record of its own.

`install` puts the filter on aiohttp's loggers (the tests see what
production logs); ``broker serve`` also puts it on its log handler, which
covers every logger.
"""

from __future__ import annotations

import logging
import re

from aiohttp.http_exceptions import HttpProcessingError

REDACTED = "<redacted>"
_DONE = "broker_redacted"
AIOHTTP_LOGGERS = (
    "aiohttp.access",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}"), REDACTED),
    (re.compile(r"(?i)\b(bearer)(\s+|%20|\+)[^\s'\",;&]+"), rf"\1\2{REDACTED}"),
    (
        re.compile(
            r"(?i)((?:^|[?&;\s'\"(])[\w.-]*(?:token|password|passwd|secret|"
            r"credential|api_key|apikey|session_key)[\w.-]*=)[^&\s'\",;)]+"
        ),
        rf"\1{REDACTED}",
    ),
    (
        re.compile(
            r"(?i)([\"'][\w.-]*(?:token|password|passwd|secret|credential)[\w.-]*[\"']"
            r"\s*:\s*[\"'])[^\"']+"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)((?:set-)?cookie['\"]?\s*[:=,]\s*['\"]?)[^\r\n'\"]+"), rf"\1{REDACTED}"),
    (re.compile(r"nbp_[A-Za-z0-9]{8,}"), REDACTED),
)


def escape(text: str) -> str:
    """``text`` with every non-printable character (CR, LF, NUL, ESC, bidi
    controls...) written as ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_block(text: str) -> str:
    """A multi-line text (a traceback) escaped line by line, every line
    indented: its line breaks stay, none of its lines can pass for a record."""
    return "\n".join("  " + escape(line) for line in text.rstrip("\n").split("\n"))


def redact(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``<redacted>``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites records in place (redacted, escaped); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _DONE, False):  # a logger's filter and the handler's
            return True
        setattr(record, _DONE, True)
        message = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and record.name.startswith("aiohttp."):
            message = f"{message}: malformed request refused ({type(exc).__name__})"
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info, record.exc_text = None, None
        elif record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, escape_block(redact(text))
        elif record.exc_text:
            record.exc_text = escape_block(redact(record.exc_text))
        if record.stack_info:
            record.stack_info = escape_block(redact(record.stack_info))
        record.msg, record.args = escape(redact(message)), None
        return True


def install() -> None:
    """Put one `RedactingFilter` on each of aiohttp's loggers (idempotent)."""
    for name in AIOHTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
