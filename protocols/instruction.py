"""The Guacamole instruction codec: framing, parsing and encoding. No I/O.

Wire format: ``LEN.VALUE,LEN.VALUE,...;`` in UTF-8, where ``LEN`` counts
Unicode code points (Python ``len(str)``), not bytes. ``;`` and ``,`` occur
inside values (``31.audio/L16;rate=44100,channels=2``), so everything here
frames by the length prefixes only, never by searching for terminators.

Limits are guacd's (``libguac/parser-constants.h``): an instruction is at most
``MAX_INSTRUCTION_LENGTH`` code points (prefixes and separators included),
``MAX_ELEMENTS`` elements and ``MAX_LENGTH_DIGITS`` digits a length prefix.
Input beyond them raises `InstructionTooLarge` before it is buffered, so no
input can make a parser hold more than one instruction's worth of bytes.

Three tools, from cheapest to richest:

- `BoundaryScanner`: fed raw bytes, tells how many bytes at its head are whole
  instructions, without decoding or building objects per instruction. It also
  notes cheaply whether a ``sync`` went by and the first ``error``. Meant for
  the relay, which forwards whole instructions and must not pay for parsing
  multi-kilobyte blobs.
- `Parser`: fed raw bytes in any chunking (UTF-8 characters split across
  chunks included), returns `Instruction` objects.
- `parse_instruction` / `parse_instructions`: for complete text (a browser's
  WebSocket message is exactly one instruction).

`Instruction.encode` is the encoder; it refuses instructions guacd would.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass

from protocols.errors import IncompleteInstruction, InstructionError, InstructionTooLarge
from protocols.status import GuacamoleStatus

MAX_INSTRUCTION_LENGTH = 8192
MAX_ELEMENTS = 128
MAX_LENGTH_DIGITS = 5
MAX_JOIN_REPAIRS = 4  # `BoundaryScanner(repair_joins=True)`: tails skipped before the first sync

_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))
_COMMA, _SEMICOLON = 0x2C, 0x3B


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction: an opcode and its arguments, all text.

    The opcode ``""`` marks the tunnel's internal instructions (``0.,4.ping,...``),
    which are never forwarded to guacd.
    """

    opcode: str
    args: tuple[str, ...] = ()

    @classmethod
    def of(cls, opcode: str, *args: str | int | bool) -> Instruction:
        """Build from mixed values: ints as decimal, bools as ``true``/``false``."""
        return cls(opcode, tuple(_as_text(a) for a in args))

    @property
    def is_internal(self) -> bool:
        return self.opcode == ""

    def encode(self) -> str:
        """The wire text. Raises `InstructionTooLarge` beyond guacd's limits."""
        elements = (self.opcode, *self.args)
        if len(elements) > MAX_ELEMENTS:
            raise InstructionTooLarge(f"{len(elements)} elements (limit {MAX_ELEMENTS})")
        text = ",".join([f"{len(e)}.{e}" for e in elements]) + ";"
        if len(text) > MAX_INSTRUCTION_LENGTH:
            raise InstructionTooLarge(
                f"{self.opcode!r} instruction of {len(text)} characters"
                f" (limit {MAX_INSTRUCTION_LENGTH})"
            )
        return text

    def to_bytes(self) -> bytes:
        """The wire bytes (UTF-8). Raises `InstructionError` for unencodable text."""
        try:
            return self.encode().encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InstructionError(f"{self.opcode!r} instruction is not valid Unicode") from exc


def encode_instructions(instructions: Iterable[Instruction]) -> bytes:
    """Concatenated wire bytes of several instructions."""
    return b"".join(i.to_bytes() for i in instructions)


def _as_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """What an ``error`` instruction said: guacd's message and decimal code."""

    message: str
    code: int

    @property
    def status(self) -> GuacamoleStatus:
        return GuacamoleStatus.from_code(self.code)

    @classmethod
    def from_instruction(cls, instruction: Instruction) -> ErrorReport:
        """Read ``error,<message>,<code>``; a missing or bad code reads as 512."""
        args = instruction.args
        message = args[0] if args else ""
        try:
            code = int(args[1])
        except (IndexError, ValueError):
            code = int(GuacamoleStatus.SERVER_ERROR)
        return cls(message, code)


# --------------------------------------------------------------------------- text


def parse_instruction(text: str) -> Instruction:
    """Parse text holding exactly one instruction.

    Raises `InstructionError` when it is malformed, incomplete or followed by
    anything, `InstructionTooLarge` beyond guacd's limits.
    """
    instruction, end = _parse_at(text, 0)
    if end != len(text):
        raise InstructionError("text after the end of the instruction")
    return instruction


def parse_instructions(text: str) -> list[Instruction]:
    """Parse text holding whole instructions only (``""`` gives ``[]``)."""
    result: list[Instruction] = []
    pos, end = 0, len(text)
    while pos < end:
        instruction, pos = _parse_at(text, pos)
        result.append(instruction)
    return result


def _parse_at(text: str, pos: int) -> tuple[Instruction, int]:
    """Parse the instruction starting at ``pos``; return it and where it ends."""
    start, size = pos, len(text)
    elements: list[str] = []
    while True:
        if pos >= size:
            raise IncompleteInstruction("text ends inside an instruction")
        dot = text.find(".", pos, pos + MAX_LENGTH_DIGITS + 1)
        digits = text[pos:dot] if dot > pos else text[pos : pos + MAX_LENGTH_DIGITS + 1]
        if not (digits.isascii() and digits.isdigit()):
            raise InstructionError(f"malformed length prefix at character {pos}")
        if dot < 0:
            if size - pos > MAX_LENGTH_DIGITS:
                raise InstructionTooLarge(f"length prefix over {MAX_LENGTH_DIGITS} digits")
            raise IncompleteInstruction("text ends inside a length prefix")
        end = dot + 1 + int(digits)
        if end + 1 - start > MAX_INSTRUCTION_LENGTH:
            raise InstructionTooLarge(f"instruction over {MAX_INSTRUCTION_LENGTH} characters")
        if end >= size:
            raise IncompleteInstruction("text ends inside an instruction")
        elements.append(text[dot + 1 : end])
        if len(elements) > MAX_ELEMENTS:
            raise InstructionTooLarge(f"instruction over {MAX_ELEMENTS} elements")
        terminator, pos = text[end], end + 1
        if terminator == ";":
            return Instruction(elements[0], tuple(elements[1:])), pos
        if terminator != ",":
            raise InstructionError(f"element not followed by ',' or ';' at character {end}")


# -------------------------------------------------------------------------- bytes


class BoundaryScanner:
    """Finds whole instructions in a byte stream without parsing them.

    Feed it the bytes as they arrive; ``feed`` returns how many bytes at the
    head of what it holds are whole instructions; ``take`` removes and returns
    them. A partial instruction at the tail stays inside (at most one
    instruction: about 32 KiB at guacd's limits).

    Cost: one regular-expression match per *instruction* for what guacd
    nearly always sends (ASCII; every element but the last at most 99
    characters without ``,`` or ``;``; the last of any length: see
    `_WHOLE_INSTRUCTION`), and a few Python operations per element for the
    rest (non-ASCII input, an instruction split across reads, anything the
    expression does not take: it then starts again at the instruction's
    head). Each fed chunk is checked once with ``bytes.isascii``; in ASCII
    chunks bytes are code points. Elements in other chunks are checked with
    ``isascii`` and counted with ``bytes.translate`` only if needed.

    Cheap observations for the relay, updated as instructions complete:
    ``syncs`` (how many ``sync`` instructions went by; the relay holds browser
    input until the first), ``error`` (the first ``error`` instruction seen,
    as an `ErrorReport`), ``instructions`` (count of whole instructions),
    ``disconnect_at`` (the stream offset where guacd's first ``disconnect``
    starts), ``unsynced_disconnect`` (the same, when that ``disconnect`` came
    before any ``sync``: guacd's way of saying it could not connect),
    ``error_at`` (the stream offset where the first ``error`` starts),
    ``unsynced_error`` (the same, when it came before any ``sync``),
    ``taken`` (bytes taken so far, the stream offset of what is held).

    The scanner checks framing and limits but not UTF-8 validity: the caller
    decodes what it takes. Any `InstructionError` is final: the stream cannot
    be resynchronised, and later calls raise it again.

    The caller must ``take`` what it is given: held bytes grow until it does.

    ``repair_joins``: until the first ``sync``, a malformed length prefix where
    an instruction should start is skipped through the next ``;`` instead of
    failing (at most ``MAX_JOIN_REPAIRS`` times; counted in ``repairs``, the
    bytes in ``repaired_bytes``). guacd 1.5.5 writes each instruction to its
    users element by element, choosing the users at every write
    (``socket-broadcast.c``), and promotes a joining user between those writes
    (``guac_client_promote_pending_users``), so the user sometimes receives
    the tail of an instruction whose head went only to the others: seen about
    once in 25 SSH connects, at the owner's promotion ~250 ms after ``ready``.
    That tail is the only thing dropped; the stream offsets above count the
    repaired stream.
    """

    __slots__ = (
        "_buf",
        "_base",
        "_pos",
        "_ready",
        "_in_content",
        "_remaining",
        "_elements",
        "_chars",
        "_inst_start",
        "_opcode_start",
        "_opcode_end",
        "_ascii_from",
        "_failure",
        "syncs",
        "instructions",
        "error",
        "unsynced_disconnect",
        "disconnect_at",
        "error_at",
        "unsynced_error",
        "repairs",
        "repaired_bytes",
        "_repair",
    )

    def __init__(self, *, repair_joins: bool = False) -> None:
        self._buf = b""  # held bytes; replaced, never mutated (a frame taken whole is not copied)
        self._base = 0  # stream offset of _buf[0]
        self._pos = 0  # next byte of _buf to examine
        self._ready = 0  # bytes at the head of _buf that are whole instructions
        self._in_content = False
        self._remaining = 0  # code points left in the current element
        self._elements = 0
        self._chars = 0  # code points of the current instruction so far
        self._inst_start = 0
        self._opcode_start = 0
        self._opcode_end = 0
        self._ascii_from = 0  # every byte from here on is ASCII
        self._failure: InstructionError | None = None
        self.syncs = 0
        self.instructions = 0
        self.error: ErrorReport | None = None
        self.unsynced_disconnect: int | None = None
        self.disconnect_at: int | None = None
        self.error_at: int | None = None
        self.unsynced_error: int | None = None
        self.repairs = 0
        self.repaired_bytes = 0
        self._repair = repair_joins

    @property
    def taken(self) -> int:
        """Bytes taken so far: the stream offset of the first byte still held."""
        return self._base

    @property
    def sync_seen(self) -> bool:
        return self.syncs > 0

    @property
    def ready(self) -> int:
        """Bytes of whole instructions waiting to be taken."""
        return self._ready

    @property
    def pending(self) -> int:
        """Bytes of the partial instruction held at the tail."""
        return len(self._buf) - self._ready

    @property
    def at_boundary(self) -> bool:
        """True when no partial instruction is held."""
        return len(self._buf) == self._ready

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Add bytes; return how many bytes of whole instructions are ready.

        Raises `InstructionError` (or `InstructionTooLarge`) on malformed input.
        """
        if self._failure is not None:
            raise InstructionError(self._failure.message, status=self._failure.status)
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._buf = self._buf + chunk if self._buf else chunk
        if not chunk.isascii():
            self._ascii_from = len(self._buf)  # conservative: any of this chunk may be
        try:
            self._scan()
        except InstructionError as exc:
            self._failure = exc
            raise
        return self._ready

    def take(self, max_bytes: int | None = None) -> bytes:
        """Remove and return the whole instructions ready (``b""`` if none).

        With ``max_bytes``, return only as many whole instructions as fit (but
        always at least one), for callers that cap their frame size.
        """
        cut = self._ready
        if max_bytes is not None and cut > max_bytes:
            ends = _instruction_ends(self._buf, cut)
            cut = ends[0]
            for end in ends:
                if end > max_bytes:
                    break
                cut = end
        if cut == 0:
            return b""
        buf = self._buf
        if cut == len(buf):
            data, self._buf = buf, b""
        else:
            data, self._buf = buf[:cut], buf[cut:]
        self._base += cut
        self._pos -= cut
        self._ready -= cut
        self._inst_start -= cut
        self._opcode_start -= cut
        self._opcode_end -= cut
        self._ascii_from = max(0, self._ascii_from - cut)
        return data

    def _scan(self) -> None:
        # One loop with local state: this runs once per instruction guacd
        # sends (once per element off the fast path), so method calls and
        # attribute lookups here are most of the relay's framing cost.
        buf, size, pos = self._buf, len(self._buf), self._pos
        ascii_from = self._ascii_from
        in_content, remaining = self._in_content, self._remaining
        elements, chars = self._elements, self._chars
        opcode_start, opcode_end = self._opcode_start, self._opcode_end
        inst_start, ready = self._inst_start, self._ready
        syncs, count = self.syncs, self.instructions
        whole = _WHOLE_INSTRUCTION.match
        maybe_noted, limit = _MAYBE_NOTED, MAX_INSTRUCTION_LENGTH
        try:
            while pos < size:
                if not elements and pos >= ascii_from:
                    # The fast path: a whole ASCII instruction in one match. A
                    # miss (split, non-ASCII, unusual, malformed) costs one
                    # match; the element loop below then takes it from its head.
                    while (m := whole(buf, pos)) is not None:
                        end = m.end()
                        kind = m.lastindex
                        if kind == 4:  # _LONG: the last element's length prefix
                            end += int(m.group(4))
                            kind = _kind_of(buf, pos) if buf[pos + 2] in maybe_noted else None
                        if not (end < size and buf[end] == 59 and end - pos < limit):  # ";"
                            break
                        end += 1
                        count += 1
                        if kind is not None:
                            if kind == 1:  # _SYNC
                                syncs += 1
                            else:
                                self._noted(kind, buf, pos, end, syncs)
                        pos = end
                    ready = inst_start = pos
                    if pos >= size:
                        break
                if not in_content:
                    dot = buf.find(b".", pos, pos + MAX_LENGTH_DIGITS + 1)
                    digits = buf[pos:dot] if dot >= 0 else buf[pos : pos + MAX_LENGTH_DIGITS + 1]
                    if not digits.isdigit():
                        if elements or not self._repairable():
                            raise InstructionError("malformed length prefix")
                        cut = buf.find(b";", pos)
                        if cut < 0:  # the tail's end is still to come
                            if size - pos > MAX_INSTRUCTION_LENGTH:
                                raise InstructionError("malformed length prefix")
                            break
                        buf = buf[:pos] + buf[cut + 1 :]
                        size = len(buf)
                        ascii_from = max(pos, ascii_from - (cut + 1 - pos))
                        self.repairs += 1
                        self.repaired_bytes += cut + 1 - pos
                        continue
                    if dot < 0:  # digits so far: a prefix still arriving, or too long
                        _check_partial_prefix(buf, pos, size)
                        break
                    remaining = int(digits)
                    elements += 1
                    chars += dot - pos + remaining + 2
                    if elements > MAX_ELEMENTS or chars > MAX_INSTRUCTION_LENGTH:
                        raise InstructionTooLarge(
                            f"instruction over {MAX_INSTRUCTION_LENGTH} characters"
                            f" or {MAX_ELEMENTS} elements"
                        )
                    pos = dot + 1
                    if elements == 1:
                        opcode_start = pos
                    in_content = True
                end = pos + remaining
                if end < size and pos >= ascii_from:
                    pos, remaining = end, 0  # ASCII: bytes are code points
                else:
                    pos, remaining = _advance(buf, pos, remaining, size)
                    if remaining or pos >= size:
                        break  # the element or its last character is not all here
                terminator = buf[pos]
                in_content = False
                if elements == 1:
                    opcode_end = pos
                pos += 1
                if terminator == _COMMA:
                    continue
                if terminator != _SEMICOLON:
                    raise InstructionError("element not followed by ',' or ';'")
                elements = chars = 0
                count += 1
                kind = _NOTED.get(buf[opcode_start:opcode_end])
                if kind is not None:
                    if kind == _SYNC:
                        syncs += 1
                    else:
                        self._noted(kind, buf, inst_start, pos, syncs)
                ready = inst_start = pos
        finally:
            self._buf, self._pos = buf, pos
            self._in_content, self._remaining = in_content, remaining
            self._elements, self._chars = elements, chars
            self._opcode_start, self._opcode_end = opcode_start, opcode_end
            self._ascii_from, self._inst_start, self._ready = ascii_from, inst_start, ready
            self.syncs, self.instructions = syncs, count

    def _noted(self, kind: int, buf: bytes, start: int, end: int, syncs: int) -> None:
        """An ``error`` or ``disconnect`` instruction ran from ``start`` to ``end``."""
        offset = self._base + start
        if kind == _ERROR:
            if self.error is None:
                self.error_at = offset
                if not syncs:
                    self.unsynced_error = offset
                self._note_error(buf[start:end])
        elif self.disconnect_at is None:
            self.disconnect_at = offset
            if not syncs:
                self.unsynced_disconnect = offset

    def _repairable(self) -> bool:
        return self._repair and not self.syncs and self.repairs < MAX_JOIN_REPAIRS

    def _note_error(self, raw: bytes) -> None:
        if self.error is None:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InstructionError("instruction is not valid UTF-8") from exc
            self.error = ErrorReport.from_instruction(parse_instruction(text))


# The scanner's fast path. One element of 0..99 code points whose value holds
# no separator, its length prefix without leading zeros and the value checked
# by the expression itself (``1(?:\.X|0\.X{10}|...)``: the engine tries only
# the branches whose digits match); ASCII only, where bytes are code points.
def _short_element() -> str:
    value = "[^,;]"

    def after(length: int) -> str:
        branches = [rf"\.{value}{{{length}}}" if length else r"\."]
        if 0 < length < 10:
            branches += [f"{d}{after(length * 10 + d)}" for d in range(10)]
        return "(?:" + "|".join(branches) + ")"

    first_digits = (1, 2, 3, 4, 9, 5, 6, 7, 8, 0)  # guacd's commonest lengths first
    return "(?:" + "|".join(f"{d}{after(d)}" for d in first_digits) + ")"


_SYNC, _ERROR, _DISCONNECT, _LONG = 1, 2, 3, 4
_NOTED = {b"sync": _SYNC, b"error": _ERROR, b"disconnect": _DISCONNECT}
_MAYBE_NOTED = frozenset(b"se.")  # the third byte of "4.sync", "5.error", "10.disconnect"

# A whole instruction's elements up to the last one's value: the opcode
# (``sync``, ``error`` and ``disconnect`` captured as groups 1-3), up to 126
# short elements (possessive: never given back, there is nothing to retry),
# then optionally one more element, short or of any length:
# for the latter (a blob's base64 nearly always) only its length prefix
# (group 4), whose value the scanner skips by arithmetic. At most 128
# elements; what follows must be ``;`` (checked by the scanner, with the
# length limit), or the instruction goes the element-by-element way.
_E = _short_element()
_WHOLE_INSTRUCTION = re.compile(
    (
        rf"(?:(4\.sync)|(5\.error)|(10\.disconnect)|{_E})"
        rf"(?:,{_E}){{0,{MAX_ELEMENTS - 2}}}+"
        rf"(?:,(?:{_E}|(\d{{1,{MAX_LENGTH_DIGITS}}})\.))?"
    ).encode(),
    re.DOTALL,
)


def _kind_of(buf: bytes, start: int) -> int | None:
    """Which noted opcode (if any) the instruction at ``start`` has."""
    for prefix, kind in ((b"4.sync", _SYNC), (b"5.error", _ERROR), (b"10.disconnect", _DISCONNECT)):
        if buf.startswith(prefix, start):
            return kind
    return None


def _instruction_ends(buf: bytes, stop: int) -> list[int]:
    """Where each whole instruction in ``buf[:stop]`` (already checked) ends."""
    ends: list[int] = []
    pos = 0
    while pos < stop:
        dot = buf.index(b".", pos)
        pos, _ = _advance(buf, dot + 1, int(buf[pos:dot]), stop)
        if buf[pos] == _SEMICOLON:
            ends.append(pos + 1)
        pos += 1
    return ends


def _check_partial_prefix(buf: bytes, pos: int, size: int) -> None:
    """Raise unless ``buf[pos:size]`` can still become a valid length prefix."""
    if size - pos > MAX_LENGTH_DIGITS:
        raise InstructionTooLarge(f"length prefix over {MAX_LENGTH_DIGITS} digits")
    if not buf[pos:size].isdigit():
        raise InstructionError("malformed length prefix")


def _advance(buf: bytes, pos: int, remaining: int, size: int) -> tuple[int, int]:
    """Skip ``remaining`` code points from ``pos``; return the new (pos, remaining).

    Counts characters *started* (non-continuation bytes), so a character split
    across feeds is counted once, when its first byte arrives. When all are
    started, the continuation bytes of the last one are skipped too.
    """
    while remaining and pos < size:
        end = min(pos + remaining, size)
        if buf[pos:end].isascii():
            remaining -= end - pos
        else:
            remaining -= len(buf[pos:end].translate(None, _CONTINUATION_BYTES))
        pos = end
    while pos < size and 0x80 <= buf[pos] < 0xC0:
        pos += 1
    return pos, remaining


class Parser:
    """Incremental parser: bytes in any chunking in, `Instruction` objects out.

    Decodes incrementally (a UTF-8 character split across chunks waits for
    its last byte) and parses the text by its length prefixes; the partial
    instruction at the end is kept for the next feed (at most one
    instruction's worth: the limits are checked before it is awaited).

    Raises `InstructionError` / `InstructionTooLarge` on malformed input; that
    is final, later feeds raise again. ``pending`` is non-zero while a partial
    instruction is held: a stream that ends then was cut.
    """

    __slots__ = ("_decoder", "_text", "_failure")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._text = ""
        self._failure: InstructionError | None = None

    @property
    def pending(self) -> int:
        """Characters (and undecoded bytes) of a partial instruction held."""
        return len(self._text) + len(self._decoder.getstate()[0])

    def feed(self, data: bytes | bytearray | memoryview) -> list[Instruction]:
        if self._failure is not None:
            raise InstructionError(self._failure.message, status=self._failure.status)
        try:
            return self._parse(data)
        except InstructionError as exc:
            self._failure = exc
            raise

    def _parse(self, data: bytes | bytearray | memoryview) -> list[Instruction]:
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise InstructionError("instruction is not valid UTF-8") from exc
        if self._text:
            text = self._text + text
        result: list[Instruction] = []
        pos, size = 0, len(text)
        try:
            while pos < size:
                instruction, pos = _parse_at(text, pos)
                result.append(instruction)
        except IncompleteInstruction:
            pass  # the rest arrives with a later feed
        self._text = text[pos:]
        return result
