"""Container log files in the CRI format a kubelet reads, and the log API's filters over them (pure).

Each line on disk is ``<RFC3339Nano> <stream> <F|P> <content>``: ``F`` ends a line of output, ``P`` is a
piece of a longer one. ``sinceTime``, ``sinceSeconds``, ``tailLines``, ``limitBytes`` and ``timestamps``
behave as the kubelet's: the tail is taken first, then lines older than ``since`` are dropped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_LINE = 16 * 1024  # longer output is split into partial lines, as container runtimes do
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$")


def format_timestamp(ns: int) -> str:
    """Go's RFC3339Nano in UTC: nanoseconds with trailing zeros dropped."""
    seconds, nanos = divmod(ns, 10**9)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def parse_timestamp(text: str) -> int:
    """An RFC3339 (or RFC3339Nano) time as nanoseconds since the epoch."""
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise ValueError(f"not an RFC3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    nanos = int((match.group(7) or "0").ljust(9, "0"))
    offset = 0
    if match.group(9):
        offset = (int(match.group(10)) * 60 + int(match.group(11))) * 60
        offset = offset if match.group(9) == "+" else -offset
    moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    return (int(moment.timestamp()) - offset) * 10**9 + nanos


@dataclass(frozen=True)
class LogLine:
    timestamp: str
    ns: int
    stream: str
    partial: bool
    content: bytes


def encode_record(ns: int, stream: str, piece: bytes, partial: bool) -> bytes:
    return b"%s %s %s %s\n" % (format_timestamp(ns).encode(), stream.encode(), b"P" if partial else b"F", piece)


def encode_lines(ns: int, stream: str, data: bytes) -> bytes:
    """``data`` (one line of output, without its newline) as log file lines."""
    pieces = [data[i:i + MAX_LINE] for i in range(0, len(data), MAX_LINE)] or [b""]
    return b"".join(encode_record(ns, stream, piece, index < len(pieces) - 1) for index, piece in enumerate(pieces))


def parse_line(raw: bytes) -> LogLine | None:
    raw = raw.rstrip(b"\n")
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        ns = parse_timestamp(parts[0].decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return LogLine(parts[0].decode(), ns, parts[1].decode(errors="replace"), parts[2] == b"P",
                   parts[3] if len(parts) > 3 else b"")


def parse_lines(data: bytes) -> list[LogLine]:
    return [line for raw in data.splitlines() if (line := parse_line(raw)) is not None]


@dataclass(frozen=True)
class LogQuery:
    since_ns: int | None = None
    tail_lines: int | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


def select(lines: Sequence[LogLine], query: LogQuery) -> list[LogLine]:
    """The lines the query returns: the last ``tail_lines`` full lines, then none older than ``since``."""
    chosen = list(lines)
    if query.tail_lines is not None:
        if query.tail_lines <= 0:
            return []
        full = 0
        start = 0
        for index in range(len(chosen) - 1, -1, -1):
            if not chosen[index].partial:
                full += 1
                if full > query.tail_lines:
                    start = index + 1
                    break
        chosen = chosen[start:]
    if query.since_ns is not None:
        chosen = [line for line in chosen if line.ns >= query.since_ns]
    return chosen


def render(lines: Iterable[LogLine], timestamps: bool) -> bytes:
    out = []
    at_line_start = True
    for line in lines:
        if timestamps and at_line_start:
            out.append(line.timestamp.encode() + b" ")
        out.append(line.content)
        if not line.partial:
            out.append(b"\n")
        at_line_start = not line.partial
    return b"".join(out)


def limit(data: bytes, limit_bytes: int | None) -> bytes:
    return data if limit_bytes is None else data[:max(limit_bytes, 0)]
