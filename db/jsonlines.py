"""JSON-lines files that survive a crash and a full disk: the spool's file format.

- ``encode_line`` / ``decode_line``: a record as one ASCII line (money and times as text; any
  string survives as ``\\u`` escapes, lone surrogates included) and back, with ``BadLine`` saying
  why a line is not a record (not JSON, no id, a cost or time that is not one);
- ``rejected_line``: a quarantine entry (reason, and the record or the raw line), always writable;
- ``append_lines``: an append that keeps whole lines only (``PartialAppend`` says how many when
  the disk fills up midway) and starts on a fresh line after a torn one;
- ``write_new``: a new file, all or nothing (written beside it, then renamed);
- ``iter_lines``: lines with their offsets, a line past ``MAX_LINE`` skipped unread;
- ``count_lines``, and ``keep_from`` (cut a replayed prefix off a file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

__all__ = ["MAX_LINE", "BadLine", "PartialAppend", "encode_line", "decode_line", "rejected_line", "append_lines",
           "write_new", "iter_lines", "count_lines", "keep_from"]

MAX_LINE = 16 << 20  # a longer line is quarantined (as its first bytes), never read whole


def count_lines(path: Path, max_bytes: int | None = None) -> int:
    """Lines in ``path`` (a last line without its newline counts), read in blocks; 0 if missing.
    ``max_bytes``: read no more than that (the count is then a lower bound)."""
    n, last, left = 0, b"\n", max_bytes
    try:
        with open(path, "rb") as fh:
            while (left is None or left > 0) and (block := fh.read(1 << 20 if left is None else min(1 << 20, left))):
                n += block.count(b"\n")
                last = block[-1:]
                left = None if left is None else left - len(block)
    except FileNotFoundError:
        return 0
    return n + (last != b"\n")


def encode_line(record: dict) -> bytes:
    """One spool line (newline included). Raises TypeError/ValueError for a value JSON cannot hold."""
    out = {}
    for k, v in record.items():
        if isinstance(v, Decimal):
            v = str(v)
        elif isinstance(v, datetime):
            v = v.isoformat()
        out[k] = v
    return (json.dumps(out, separators=(",", ":")) + "\n").encode("ascii")


class BadLine(ValueError):
    """A spool line that cannot be read back into a record; the message says why."""


def decode_line(line: bytes) -> dict:
    try:
        record = json.loads(line, parse_float=Decimal)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BadLine(f"not a JSON line ({exc})") from None
    if not isinstance(record, dict):
        raise BadLine("not a JSON object")
    if not isinstance(record.get("id"), str) or not record["id"]:
        raise BadLine("no id")
    cost = record.get("cost_usd")
    if cost is not None:
        try:
            cost = Decimal(cost) if isinstance(cost, (str, int, Decimal)) and not isinstance(cost, bool) else None
        except (InvalidOperation, ValueError):
            cost = None
        if cost is None or not cost.is_finite():
            raise BadLine(f"cost_usd is not a number: {str(record['cost_usd'])[:40]!r}")
        record["cost_usd"] = cost
    created = record.get("created_at")
    try:
        record["created_at"] = datetime.fromisoformat(created)
    except (TypeError, ValueError):
        raise BadLine(f"created_at is not a time: {str(created)[:40]!r}") from None
    if record["created_at"].tzinfo is None:
        raise BadLine("created_at has no timezone")
    return record


def plain(value, depth: int = 0):
    """``value`` as JSON can always hold it: money and times as text, anything else as its repr."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if depth < 20 and isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): plain(v, depth + 1) for k, v in value.items()}
    if depth < 20 and isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    return repr(value)


def rejected_line(reason: str, *, record=None, line: bytes | None = None) -> bytes:
    entry = {"rejected_at": datetime.now(timezone.utc).isoformat(), "reason": reason}
    if line is not None:
        entry["line"] = line.rstrip(b"\n").decode("utf-8", "backslashreplace")
    else:
        entry["record"] = plain(record)
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode("ascii")


class PartialAppend(OSError):
    """An append failed; ``kept`` of its lines (the first ones) are in the file, whole."""

    def __init__(self, kept: int, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.kept = kept


def append_lines(path: Path, lines: list[bytes]) -> None:
    """Append ``lines`` to ``path`` keeping whole lines only (see the module docstring)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        start = os.fstat(fd).st_size
        lead = b"\n" if start and os.pread(fd, 1, start - 1) != b"\n" else b""
        data = memoryview(lead + b"".join(lines))
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, data[done:])
            os.fsync(fd)
        except OSError as exc:
            kept, size = 0, len(lead)
            if done < len(data):  # the write stopped: keep the lines that are in whole
                for line in lines:
                    if size + len(line) > done:
                        break
                    size += len(line)
                    kept += 1
            try:
                os.ftruncate(fd, start + size if kept else start)
                os.fsync(fd)
            except OSError:
                kept = 0  # not known to be durable: counted as not spooled (a replay may still find some)
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    pass  # a torn tail stays: the next append starts on a fresh line, the replay quarantines it
            raise PartialAppend(kept, exc) from exc
    finally:
        os.close(fd)


def write_new(path: Path, lines: list[bytes]) -> None:
    """Create ``path`` holding ``lines``, all or nothing (written beside it, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        data = memoryview(b"".join(lines))
        done = 0
        while done < len(data):
            done += os.write(fd, data[done:])
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
    except OSError:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def iter_lines(fh) -> Iterator[tuple[int, bytes, bool]]:
    """``(offset, line, whole)`` for each line of a binary file; a line past ``MAX_LINE`` comes as
    its first bytes with ``whole=False`` and the rest of it is skipped unread."""
    while True:
        offset = fh.tell()
        line = fh.readline(MAX_LINE)
        if not line:
            return
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            while (more := fh.readline(1 << 20)) and not more.endswith(b"\n"):
                pass
            yield offset, line[:400], False
            continue
        yield offset, line, True


def keep_from(path: Path, fh, offset: int) -> None:
    """Cut what was replayed (before ``offset``) off ``path``; on failure the whole file stays."""
    if offset == 0:
        return
    try:
        fh.seek(offset)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as out:
            while block := fh.read(1 << 20):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, path)
    except OSError:
        pass  # replaying it all again later adds nothing twice (ids), at worst quarantines a line twice
