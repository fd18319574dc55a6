"""A log writer's spill folder: rows the database could not take yet, on local disk, replayed once.

Layout of a folder (one live writer per folder, enforced with a file lock on ``.lock``):

* ``<prefix>-<seq>.jsonl`` — **segments**: append-only JSON-lines files, one row per line,
  replayed oldest first, one segment per database transaction, and deleted only after
  that transaction committed. The highest-numbered one may be the **open** segment,
  still being appended to; it is sealed (flushed, fsynced) before it is replayed.
* ``<segment>.attempted`` — a **marker**: the segment's rows may have been committed (a
  write was started and its outcome is unknown). Before a marked segment is written again,
  the caller checks whether it is already stored (``replay_oldest``'s ``already_stored``).
* ``rejected.jsonl`` — rows the database refuses for good, one JSON object per line with
  the reason and the row: nothing disappears silently.
* ``quarantine/`` — segments that cannot be read or written at all (a poison file), moved
  aside with a ``.reason`` file so that the segments after them are replayed.

The class does file work only: no thread, no database. ``LogWriter`` drives it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARKER = ".attempted"
TS_POSITION = 1  # position of ``ts`` in both row layouts of the log contract


class SpillFolderInUse(RuntimeError):
    """Another live writer holds this spill folder; give each process or writer its own."""


@dataclass(frozen=True)
class Replay:
    """What ``replay_oldest`` did with one segment: ``replayed``, ``already_present`` or ``quarantined``."""

    outcome: str
    segment: str
    rows: int


def encode_row(row: tuple) -> str:
    """One row as a JSON line (without the newline); the timestamp as ISO 8601."""
    values = list(row)
    ts = values[TS_POSITION]
    if isinstance(ts, dt.datetime):
        values[TS_POSITION] = ts.isoformat()
    # NaN stays NaN (Python's json reads it back); foreign types become their repr and
    # are rejected at replay time, into rejected.jsonl, rather than dropped here.
    # ASCII-only: a lone surrogate in a text is kept as an escape (the file stays valid UTF-8)
    # and refused by the bulk writer at replay, naming it.
    return json.dumps(values, default=repr, separators=(",", ":"))


def decode_row(line: str, row_type: type) -> tuple:
    """The row of one JSON line (``row_type`` when the field count matches, else a plain tuple)."""
    values = json.loads(line)
    if not isinstance(values, list):
        raise ValueError("a spilled row must be a JSON array")
    ts = values[TS_POSITION] if len(values) > TS_POSITION else None
    if isinstance(ts, str):
        try:
            values[TS_POSITION] = dt.datetime.fromisoformat(ts)
        except ValueError:
            pass  # not a timestamp: the bulk writer rejects the row, naming the problem
    return row_type(*values) if len(values) == len(row_type._fields) else tuple(values)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpillFolder:
    """Segments of spilled rows in one folder; thread-safe, with one internal lock for file changes."""

    def __init__(self, folder: str | os.PathLike, *, prefix: str, row_type: type, segment_rows: int = 50_000,
                 name: str = "spill"):
        if segment_rows < 1:
            raise ValueError("segment_rows must be >= 1")
        self.folder = Path(folder)
        self.prefix = prefix
        self.row_type = row_type
        self.segment_rows = segment_rows
        self.name = name
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.folder / ".lock", "a+")  # noqa: SIM115 - held for the folder's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            raise SpillFolderInUse(f"spill folder {self.folder} is used by another live log writer") from exc
        self._lock = threading.RLock()
        self._open: Any = None
        self._open_path: Path | None = None
        self._open_rows = 0
        self.rejected = 0
        self.quarantined = 0
        self._seq = self._recover()

    # --- paths ----------------------------------------------------------------------------

    @property
    def rejected_path(self) -> Path:
        return self.folder / "rejected.jsonl"

    @property
    def quarantine_dir(self) -> Path:
        return self.folder / "quarantine"

    def _segment_path(self, seq: int) -> Path:
        return self.folder / f"{self.prefix}-{seq:012d}.jsonl"

    @staticmethod
    def marker(segment: Path) -> Path:
        return segment.with_name(segment.name + MARKER)

    def _recover(self) -> int:
        """Tidy what a previous writer left; return the next segment number."""
        highest = 0
        for marker in self.folder.glob(f"{self.prefix}-*.jsonl{MARKER}"):
            if not marker.with_name(marker.name[: -len(MARKER)]).exists():
                marker.unlink()  # crashed after deleting the segment, before deleting its marker
        for path in self.folder.glob(f"{self.prefix}-*.jsonl.tmp"):
            path.unlink()  # an interrupted rewrite: the original segment is still there
        for path in self.folder.glob(f"{self.prefix}-*.jsonl"):
            try:
                highest = max(highest, int(path.name[len(self.prefix) + 1 : -len(".jsonl")]))
            except ValueError:
                continue
        return highest + 1

    # --- writing ----------------------------------------------------------------------------

    def append(self, rows: list) -> None:
        """Append rows to the open segment (opened when needed; sealed once it holds ``segment_rows``)."""
        if not rows:
            return
        with self._lock:
            if self._open is None:
                self._open_path = self._segment_path(self._seq)
                self._seq += 1
                self._open = open(self._open_path, "a", encoding="utf-8")  # noqa: SIM115
                self._open_rows = 0
            self._open.write("".join(encode_row(r) + "\n" for r in rows))
            self._open.flush()
            self._open_rows += len(rows)
            if self._open_rows >= self.segment_rows:
                self.seal()

    def seal(self) -> None:
        """Close the open segment (fsynced) so that it can be replayed."""
        with self._lock:
            if self._open is None:
                return
            self._open.flush()
            os.fsync(self._open.fileno())
            self._open.close()
            self._open, self._open_path, self._open_rows = None, None, 0
            _fsync_dir(self.folder)

    def write_attempted(self, rows: list) -> Path:
        """Rows whose write may have committed: a segment of their own, marked as attempted."""
        with self._lock:
            path = self._segment_path(self._seq)
            self._seq += 1
            self.marker(path).touch()
            self._write_file(path, rows)
        return path

    def _write_file(self, path: Path, rows: list) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(encode_row(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.folder)

    def rewrite(self, segment: Path, rows: list) -> None:
        """Replace a segment's rows atomically (a temporary file renamed over it)."""
        with self._lock:
            tmp = segment.with_name(segment.name + ".tmp")
            self._write_file(tmp, rows)
            os.replace(tmp, segment)
            _fsync_dir(self.folder)

    # --- listing and reading -----------------------------------------------------------------

    def segments(self) -> list[Path]:
        """Sealed segments, oldest first (the open one is not among them)."""
        open_path = self._open_path
        return sorted(p for p in self.folder.glob(f"{self.prefix}-*.jsonl") if p != open_path)

    def pending(self) -> int:
        """Segments waiting to be replayed (the open one counts if it holds rows)."""
        return len(self.segments()) + (1 if self._open_rows else 0)

    def oldest(self) -> Path | None:
        """The oldest segment to replay, sealing the open one when it is the only one left."""
        with self._lock:
            found = self.segments()
            if not found and self._open_rows:
                self.seal()
                found = self.segments()
        return found[0] if found else None

    def read(self, segment: Path) -> list:
        """The rows of a segment; a line that cannot be decoded goes to rejected.jsonl (only a crash
        in the middle of an append leaves one: the last). Raises ``UnicodeDecodeError``/``OSError``
        when the file itself is unreadable."""
        with open(segment, encoding="utf-8") as f:
            lines = f.read().split("\n")
        rows = []
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                rows.append(decode_row(line, self.row_type))
            except (ValueError, TypeError) as exc:
                self.reject_text(line, f"{segment.name} line {number} unreadable: {exc}")
        return rows

    def attempted(self, segment: Path) -> bool:
        return self.marker(segment).exists()

    def mark_attempted(self, segment: Path) -> None:
        self.marker(segment).touch()
        _fsync_dir(self.folder)

    def done(self, segment: Path) -> None:
        """The segment's rows are in the database: delete it, then its marker."""
        segment.unlink()
        self.marker(segment).unlink(missing_ok=True)

    # --- replay --------------------------------------------------------------------------------

    def replay_oldest(self, write: Callable[[Path, list], int],
                      already_stored: Callable[[list], bool]) -> Replay | None:
        """Replay the oldest segment exactly once: None when there is none.

        A marked segment that ``already_stored`` finds in the database is deleted without
        writing; otherwise it is marked, ``write(segment, rows)`` stores it (in one
        transaction; it may rewrite the segment first, e.g. without rejected rows), and it is
        deleted. An exception from either callable propagates and leaves the segment and its
        marker in place (the database is down: try later). An unreadable file is quarantined.
        """
        segment = self.oldest()
        if segment is None:
            return None
        try:
            rows = self.read(segment)
        except (OSError, UnicodeDecodeError) as exc:
            self.quarantine(segment, f"unreadable: {type(exc).__name__}: {exc}")
            return Replay("quarantined", segment.name, 0)
        if self.attempted(segment) and rows and already_stored(rows):
            self.done(segment)
            return Replay("already_present", segment.name, len(rows))
        self.mark_attempted(segment)
        written = write(segment, rows)
        self.done(segment)
        return Replay("replayed", segment.name, written)

    # --- set aside ----------------------------------------------------------------------------------

    def reject(self, row: Any, reason: str) -> None:
        """Keep a row the database refuses in rejected.jsonl, with the reason."""
        self.reject_text(encode_row(row) if isinstance(row, tuple) else repr(row), reason)

    def reject_text(self, text: str, reason: str) -> None:
        with self._lock, open(self.rejected_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"reason": reason, "row": text}) + "\n")
            self.rejected += 1
        log.error("%s: row rejected by the log contract, kept in %s: %s", self.name, self.rejected_path, reason)

    def quarantine(self, segment: Path, reason: str) -> Path:
        """Move a segment that cannot be replayed to quarantine/ (with a .reason file), so the rest go on."""
        with self._lock:
            self.quarantine_dir.mkdir(exist_ok=True)
            target = self.quarantine_dir / segment.name
            os.replace(segment, target)
            target.with_name(target.name + ".reason").write_text(reason + "\n", encoding="utf-8")
            self.marker(segment).unlink(missing_ok=True)
            _fsync_dir(self.folder)
            self.quarantined += 1
        log.error("%s: %s quarantined in %s: %s", self.name, segment.name, self.quarantine_dir, reason)
        return target

    def quarantine_rows(self, rows: list, reason: str) -> Path:
        """Rows of a batch that cannot be written at all, straight to quarantine/."""
        with self._lock:
            path = self._segment_path(self._seq)
            self._seq += 1
            self._write_file(path, rows)
            return self.quarantine(path, reason)

    def release(self) -> None:
        """Seal the open segment and release the folder for the next writer."""
        try:
            self.seal()
        finally:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            finally:
                self._lock_file.close()
