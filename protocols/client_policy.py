"""What a viewer may send to guacd: the instructions a Guacamole client sends.

guacamole-common-js 1.5 (``Guacamole.Client``) sends, as a client, only
``key``, ``mouse``, ``touch``, ``size``, ``sync``, ``nop``, ``disconnect``,
``ack`` (its answer to a blob on a stream guacd opened), the stream openers
``argv``, ``clipboard``, ``audio``, ``file``, ``pipe``, ``put`` (object
index first, stream index second), ``get``, and ``blob``/``end`` on streams it
opened. Handshake instructions (``select``, ``connect``, ...) and everything
else are not a client's to send once the connection is up: the relay closes
the tunnel on them.

Which optional ones pass follows the parameters guacd was given for the
connection, so the policy and guacd's own can never disagree:
``clipboard`` unless ``disable-paste`` is ``true``; ``audio`` (microphone)
only with ``enable-audio-input`` ``true`` (RDP); ``file``, ``put``, ``get``
and ``pipe`` only with ``enable-drive`` or ``enable-sftp`` ``true``. guacd
reads a boolean parameter as true only when it is exactly ``"true"``.
"""

from __future__ import annotations

from collections.abc import Mapping

BASE_OPCODES = frozenset(
    {"key", "mouse", "touch", "size", "sync", "nop", "disconnect", "ack", "argv", "blob", "end"}
)
CLIPBOARD_OPCODES = frozenset({"clipboard"})
AUDIO_INPUT_OPCODES = frozenset({"audio"})
FILE_TRANSFER_OPCODES = frozenset({"file", "put", "get", "pipe"})

# The instructions that open a stream of the client's, and which argument is
# the new stream's index.
STREAM_OPENERS: Mapping[str, int] = {
    "argv": 0,
    "clipboard": 0,
    "audio": 0,
    "file": 0,
    "pipe": 0,
    "put": 1,
}
# The instructions that carry a stream index and need tracking.
STREAM_OPCODES = frozenset(STREAM_OPENERS) | {"blob", "end"}
# guacd's limit of streams per user (GUAC_USER_MAX_STREAMS); more open at once
# is not a client's doing.
MAX_CLIENT_STREAMS = 64


def allowed_opcodes(parameters: Mapping[str, str]) -> frozenset[str]:
    """The opcodes a viewer may send on a connection made with ``parameters``
    (guacd parameter names to values, as sent in ``connect``)."""
    allowed = set(BASE_OPCODES)
    if parameters.get("disable-paste") != "true":
        allowed |= CLIPBOARD_OPCODES
    if parameters.get("enable-audio-input") == "true":
        allowed |= AUDIO_INPUT_OPCODES
    if parameters.get("enable-drive") == "true" or parameters.get("enable-sftp") == "true":
        allowed |= FILE_TRANSFER_OPCODES
    return frozenset(allowed)
