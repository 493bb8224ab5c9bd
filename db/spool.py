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
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import URL

from .engine import LockTimeout, data_dir, file_lock, flock_within, url_key
from .jsonlines import (
    MAX_LINE,
    BadLine,
    PartialAppend,
    append_lines,
    count_lines,
    decode_line,
    encode_line,
    iter_lines,
    keep_from,
    rejected_line,
    write_new,
)

__all__ = ["Spool", "DroppedCounter", "QuarantineError", "spool_path", "rejected_path", "dropped_path",
           "spool_files", "spooled_count", "rejected_count", "dropped_count"]

CHUNK_BYTES = 8 << 20  # a replay batch ends after this many bytes of lines, or BATCH records
BATCH = 2000


def spool_path(url: URL) -> Path:
    return data_dir() / f"spool-{url_key(url)}.jsonl"


def rejected_path(url: URL) -> Path:
    return Path(f"{spool_path(url)}.rejected")


def dropped_path(url: URL) -> Path:
    return data_dir() / f"dropped-{url_key(url)}.count"


def spool_files(main: Path) -> list[Path]:
    """The main spool (if any) and its claimed and side files, oldest name first."""
    stem = main.name[: -len(".jsonl")]
    side = sorted(p for p in main.parent.glob(f"{stem}.*.jsonl"))
    return ([main] if main.exists() else []) + side


def spooled_count(url: URL, max_bytes: int | None = None) -> int:
    """Records waiting in the spool files (``max_bytes`` per file: see ``count_lines``)."""
    return sum(count_lines(p, max_bytes) for p in spool_files(spool_path(url)))


def rejected_count(url: URL, max_bytes: int | None = None) -> int:
    return count_lines(rejected_path(url), max_bytes)


def dropped_count(url: URL) -> int:
    try:
        return int(dropped_path(url).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _release(fd: int) -> None:
    """Let go of a spool file's flock explicitly (a forked child may hold a copy), then close it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class QuarantineError(OSError):
    """Lines or records to quarantine could not be written to the quarantine file."""


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
                append_lines(self.path, lines)
        except LockTimeout:
            write_new(self._fresh_name("side"), lines)  # a frozen process holds the lock: a file of our own

    def append_records(self, records: list[dict], *, timeout: float | None = None):
        """``append`` for records: ``(lines kept, [(record, reason)] that JSON cannot hold, error)``,
        the error (None when every line was kept) never raised."""
        lines, unencodable = [], []
        for record in records:
            try:
                lines.append(encode_line(record))
            except (TypeError, ValueError) as exc:
                unencodable.append((record, f"cannot be spooled: {type(exc).__name__}: {exc}"[:300]))
        try:
            self.append(lines, timeout=timeout)
        except PartialAppend as exc:
            return exc.kept, unencodable, exc
        except Exception as exc:  # noqa: BLE001 - e.g. no descriptor left: the caller counts the rest
            return 0, unencodable, exc
        return len(lines), unencodable, None

    def reject(self, entries: list[bytes]) -> None:
        """Append quarantine lines (``rejected_line``); raises OSError when they cannot be kept."""
        if not entries:
            return
        try:
            with file_lock(self.lock_path, timeout=self._timeout()):
                append_lines(self.rejected_path, entries)
        except LockTimeout:
            append_lines(self.rejected_path, entries)  # O_APPEND: whole writes, even without the lock

    def reject_records(self, rejected: list[tuple[dict, str]]) -> None:
        self.reject([rejected_line(reason, record=record) for record, reason in rejected])

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
        for path in spool_files(self.path):
            if path == self.path:
                continue
            fd = claimed[0] if claimed is not None and claimed[1] == path else self._lock_side(path)
            if fd is None:
                continue
            try:
                a, q = self._replay_file(fd, path, insert)
            finally:
                _release(fd)
                if claimed is not None and claimed[1] == path:
                    claimed = None
            added += a
            quarantined += q
        if claimed is not None:  # claimed, then not listed (cannot happen short of a rename race)
            _release(claimed[0])
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
                    keep_from(path, fh, start)
                    raise
                try:
                    self.reject(bad + [rejected_line(reason, record=r) for r, reason in refused])
                except OSError as exc:
                    keep_from(path, fh, start)  # stored again next time adds nothing; the bad ones wait
                    raise QuarantineError(exc.errno, f"{self.rejected_path}: {exc.strerror or exc}") from exc
                added += stored
                quarantined += len(bad) + len(refused)

            for offset, line, whole in iter_lines(fh):
                if not batch and not bad:
                    start = offset
                if not whole:
                    bad.append(rejected_line(f"a line longer than {MAX_LINE} bytes", line=line))
                elif line.strip():
                    try:
                        batch.append(decode_line(line))
                        size += len(line)
                    except BadLine as exc:
                        bad.append(rejected_line(str(exc), line=line))
                if len(batch) >= BATCH or size >= CHUNK_BYTES:
                    flush_batch()
                    batch, bad, size = [], [], 0
            flush_batch()
        path.unlink(missing_ok=True)  # every line is stored or quarantined
        return added, quarantined


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
