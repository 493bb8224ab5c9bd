"""The writer's files beside the database: the spool, its quarantine and the dropped count.

The spool is JSON lines (one record a line; money and times as text), shared by every process
writing to one database: ``spool-<key>.jsonl`` in the data dir, appended under
``spool-<key>.lock``. Every wait on that lock is bounded; when it runs out (a frozen process
holds it) the records go to a new side file, ``spool-<key>.side-<pid>-<random>.jsonl``, written
whole and renamed into place. An append keeps whole lines only: if the disk fills up mid-write,
the lines written whole stay, the rest is cut off again (and counted by the caller), and an
append to a file that ends in part of a line starts on a fresh line.

A replay first claims the spool: under the lock, for an instant, it renames it to
``spool-<key>.replay-<pid>-<random>.jsonl`` and holds an ``flock`` on that file while it works,
so new records go to a fresh spool without waiting. It reads a batch of lines at a time (memory
stays flat), quarantines each line that cannot be read, hands the rest to ``insert`` and
quarantines the records it refuses. When the database goes away mid-replay, what is not stored
yet stays in the claimed file; claimed and side files whose owner is gone (no ``flock``) are
replayed by the next replay in any process.

Quarantine: ``spool-<key>.jsonl.rejected``, one JSON object a line with ``rejected_at``,
``reason`` and the ``record`` (or the unreadable ``line``), in ASCII (``\\u`` escapes), so that
any string survives, lone surrogates included. ``spendlog db status`` counts its lines.

Dropped records (neither the database nor any spool file could take them) are counted in
``dropped-<key>.count``, through a descriptor the writer opens when it is made, so that the
count is kept even when the process has no descriptor left to open.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy.engine import URL

from .engine import LockTimeout, data_dir, file_lock, flock_within, url_key

__all__ = ["Spool", "DroppedCounter", "PartialAppend", "QuarantineError", "spool_path", "rejected_path", "dropped_path",
           "spooled_count", "rejected_count", "dropped_count", "count_lines", "encode_line", "decode_line"]

MAX_LINE = 16 << 20  # a longer spool line is quarantined (as its first bytes), never read whole
CHUNK_BYTES = 8 << 20  # a replay batch ends after this many bytes of lines, or BATCH records
BATCH = 2000


def spool_path(url: URL) -> Path:
    return data_dir() / f"spool-{url_key(url)}.jsonl"


def rejected_path(url: URL) -> Path:
    return Path(f"{spool_path(url)}.rejected")


def dropped_path(url: URL) -> Path:
    return data_dir() / f"dropped-{url_key(url)}.count"


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


def _spool_files(main: Path) -> list[Path]:
    """The main spool (if any) and its claimed and side files, oldest name first."""
    stem = main.name[: -len(".jsonl")]
    side = sorted(p for p in main.parent.glob(f"{stem}.*.jsonl"))
    return ([main] if main.exists() else []) + side


def spooled_count(url: URL, max_bytes: int | None = None) -> int:
    """Records waiting in the spool files (``max_bytes`` per file: see ``count_lines``)."""
    return sum(count_lines(p, max_bytes) for p in _spool_files(spool_path(url)))


def rejected_count(url: URL, max_bytes: int | None = None) -> int:
    return count_lines(rejected_path(url), max_bytes)


def dropped_count(url: URL) -> int:
    try:
        return int(dropped_path(url).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


# -- lines ------------------------------------------------------------------------------------------

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


def _plain(value, depth: int = 0):
    """``value`` as JSON can always hold it: money and times as text, anything else as its repr."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if depth < 20 and isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): _plain(v, depth + 1) for k, v in value.items()}
    if depth < 20 and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return repr(value)


def _rejected_line(reason: str, *, record=None, line: bytes | None = None) -> bytes:
    entry = {"rejected_at": datetime.now(timezone.utc).isoformat(), "reason": reason}
    if line is not None:
        entry["line"] = line.rstrip(b"\n").decode("utf-8", "backslashreplace")
    else:
        entry["record"] = _plain(record)
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode("ascii")


# -- appends ----------------------------------------------------------------------------------------

class PartialAppend(OSError):
    """An append failed; ``kept`` of its lines (the first ones) are in the file, whole."""

    def __init__(self, kept: int, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.kept = kept


class QuarantineError(OSError):
    """Lines or records to quarantine could not be written to the quarantine file."""


def _append(path: Path, lines: list[bytes]) -> None:
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


def _write_new(path: Path, lines: list[bytes]) -> None:
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


def _iter_lines(fh) -> Iterator[tuple[int, bytes, bool]]:
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


# -- the spool ----------------------------------------------------------------------------------------

class Spool:
    """One database's spool files (see the module docstring). ``timeout``: a callable giving the
    longest wait for the spool's lock, read at each use."""

    def __init__(self, url: URL, timeout: Callable[[], float]):
        self.path = spool_path(url)
        self.lock_path = self.path.with_suffix(".lock")
        self.rejected_path = rejected_path(url)
        self._stem = self.path.name[: -len(".jsonl")]
        self._timeout = timeout

    def _fresh_name(self, kind: str) -> Path:
        return self.path.with_name(f"{self._stem}.{kind}-{os.getpid()}-{secrets.token_hex(4)}.jsonl")

    def append(self, lines: list[bytes], *, timeout: float | None = None) -> None:
        """Append whole lines; raises ``PartialAppend`` (with how many were kept) or OSError."""
        if not lines:
            return
        wait = self._timeout() if timeout is None else timeout
        try:
            with file_lock(self.lock_path, timeout=wait):
                _append(self.path, lines)
        except LockTimeout:
            _write_new(self._fresh_name("side"), lines)  # a frozen process holds the lock: a file of our own

    def reject(self, entries: list[bytes]) -> None:
        """Append quarantine lines (``_rejected_line``); raises OSError when they cannot be kept."""
        if not entries:
            return
        try:
            with file_lock(self.lock_path, timeout=self._timeout()):
                _append(self.rejected_path, entries)
        except LockTimeout:
            _append(self.rejected_path, entries)  # O_APPEND: whole writes, even without the lock

    def reject_records(self, rejected: list[tuple[dict, str]]) -> None:
        self.reject([_rejected_line(reason, record=record) for record, reason in rejected])

    def has_records(self) -> bool:
        try:
            if self.path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            pass
        return any(True for _ in self.path.parent.glob(f"{self._stem}.*.jsonl"))

    def replay(self, insert: Callable[[list[dict]], tuple[int, list[tuple[dict, str]]]]) -> tuple[int, int]:
        """Replay every spool file no other replay holds. ``insert(records)`` stores a batch and
        returns ``(added, [(record, reason), ...] refused)``, or raises when the database is
        unavailable (then what is not stored stays spooled and the error is raised).
        Returns ``(rows added, lines or records quarantined)``."""
        added = quarantined = 0
        try:
            claimed = self._claim_main()
        except LockTimeout:  # a frozen process holds the spool's lock: replay the other files
            claimed = None
        for path in _spool_files(self.path):
            if path == self.path:
                continue
            fd = claimed[0] if claimed is not None and claimed[1] == path else self._lock_side(path)
            if fd is None:
                continue
            try:
                a, q = self._replay_file(fd, path, insert)
            finally:
                os.close(fd)
                if claimed is not None and claimed[1] == path:
                    claimed = None
            added += a
            quarantined += q
        if claimed is not None:  # claimed, then not listed (cannot happen short of a rename race)
            os.close(claimed[0])
        return added, quarantined

    def _claim_main(self) -> tuple[int, Path] | None:
        with file_lock(self.lock_path, timeout=self._timeout()):
            try:
                if self.path.stat().st_size == 0:
                    return None
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only replays lock spool files themselves
                claimed = self._fresh_name("replay")
                os.rename(self.path, claimed)
            except OSError:
                os.close(fd)
                return None
            return fd, claimed

    @staticmethod
    def _lock_side(path: Path) -> int | None:
        """A descriptor holding ``path``'s flock, or None when another replay has it or it is gone."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            flock_within(fd, 0)
            if os.fstat(fd).st_nlink:
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def _replay_file(self, fd: int, path: Path, insert) -> tuple[int, int]:
        added = quarantined = 0
        with os.fdopen(os.dup(fd), "rb") as fh:
            start, batch, bad, size = 0, [], [], 0

            def flush_batch() -> None:
                nonlocal added, quarantined
                try:
                    stored, refused = insert(batch) if batch else (0, [])
                except BaseException:
                    _keep_from(path, fh, start)
                    raise
                try:
                    self.reject(bad + [_rejected_line(reason, record=r) for r, reason in refused])
                except OSError as exc:
                    _keep_from(path, fh, start)  # stored again next time adds nothing; the bad ones wait
                    raise QuarantineError(exc.errno, f"{self.rejected_path}: {exc.strerror or exc}") from exc
                added += stored
                quarantined += len(bad) + len(refused)

            for offset, line, whole in _iter_lines(fh):
                if not batch and not bad:
                    start = offset
                if not whole:
                    bad.append(_rejected_line(f"a line longer than {MAX_LINE} bytes", line=line))
                elif line.strip():
                    try:
                        batch.append(decode_line(line))
                        size += len(line)
                    except BadLine as exc:
                        bad.append(_rejected_line(str(exc), line=line))
                if len(batch) >= BATCH or size >= CHUNK_BYTES:
                    flush_batch()
                    batch, bad, size = [], [], 0
            flush_batch()
        path.unlink(missing_ok=True)  # every line is stored or quarantined
        return added, quarantined


def _keep_from(path: Path, fh, offset: int) -> None:
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


class DroppedCounter:
    """The persistent count of dropped records (``dropped-<key>.count``), through a descriptor
    opened in advance (None when even that failed: then the path is opened at each use)."""

    def __init__(self, url: URL):
        self.path = dropped_path(url)
        self.fd: int | None = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return
        try:
            flock_within(fd, 1.0)
            if os.fstat(fd).st_size == 0:
                os.pwrite(fd, b"0", 0)  # its block is allocated now, not on a full disk later
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass  # a busy or full file: it is still the descriptor to count with
        self.fd = fd

    def add(self, n: int, timeout: float) -> None:
        """Add ``n`` to the stored count (shared by every process); raises OSError on failure."""
        fd = self.fd if self.fd is not None else os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            flock_within(fd, timeout)
            try:
                try:
                    current = int(os.pread(fd, 64, 0).strip() or 0)
                except ValueError:
                    current = 0
                data = str(current + n).encode()
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child may share the descriptor
        finally:
            if fd != self.fd:
                os.close(fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
