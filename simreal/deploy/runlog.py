"""The per-cycle run log: one JSON object per line, written so a crash loses at most one line.

Record types (field "type"):
  header   once, first: robot, joint names, period, limits, bundle, versions
  cycle    every control cycle: t, k, phase, state, obs, action, targets, sent, timings, errors
  event    anything the safety layer or runtime decided (trip, safe stop, signal, start, ...)
  summary  once, last, when the run ended cleanly enough to write it

The file is line-buffered, so every record reaches the operating system as soon as it is
written: a SIGKILL loses nothing (faults.md P4). Events are also fsync'ed, so even a power cut
keeps the reason for a stop. NaN and infinity are written as Python's json writes them
(NaN, Infinity): a non-finite value that was rejected is shown as it was. float32 arrays (the
policy's input and output) are written to 7 decimal places.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype == np.float32:
            # float32 carries ~7 significant digits; its float64 repr has 17 of noise (and costs 2x to write)
            return np.round(obj.astype(np.float64), 7).tolist()
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"run log: cannot write {type(obj).__name__}")


def dumps(record: dict) -> str:
    return json.dumps(record, default=_default, separators=(",", ":"))


class RunLogWriter:
    """Appends records to a JSONL file; see the module docstring for the guarantees."""

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", buffering=1, encoding="utf-8")   # line-buffered
        self.records = 0
        self.events = 0
        self._write({"type": "header", **header})
        self.sync()

    def _write(self, record: dict) -> None:
        self._f.write(dumps(record) + "\n")
        self.records += 1

    def cycle(self, record: dict) -> None:
        self._write({"type": "cycle", **record})

    def event(self, kind: str, **fields: Any) -> None:
        """A safety or runtime event: flushed and fsync'ed before this returns."""
        self._write({"type": "event", "kind": kind, **fields})
        self.events += 1
        self.sync()

    def summary(self, summary: dict) -> None:
        self._write({"type": "summary", **summary})
        self.sync()

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()

    def __enter__(self) -> RunLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunLog:
    """A log read back: every complete record, and whether the last line was cut off."""
    path: Path
    header: dict = field(default_factory=dict)
    cycles: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    summary: dict | None = None
    truncated: bool = False

    def events_of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("kind") == kind]


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, dict | None]]:
    """(line number, record) per line; record None for a line that is not a complete JSON object."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                yield lineno, None
                continue
            yield lineno, rec if isinstance(rec, dict) else None


def read_log(path: str | os.PathLike) -> RunLog:
    """Read a run log; a damaged LAST line (the process died mid-write) is tolerated and flagged.

    A damaged line anywhere else means the file is not a run log (or was edited): ValueError
    naming the line.
    """
    path = Path(path)
    log = RunLog(path)
    bad: list[int] = []
    last = 0
    for lineno, rec in iter_records(path):
        last = lineno
        if rec is None:
            bad.append(lineno)
            continue
        kind = rec.get("type")
        if kind == "cycle":
            log.cycles.append(rec)
        elif kind == "event":
            log.events.append(rec)
        elif kind == "header":
            log.header = rec
        elif kind == "summary":
            log.summary = rec
    if bad and bad != [last]:
        raise ValueError(f"{path}: line {bad[0]} is not a JSON record (only the last line may be cut off)")
    log.truncated = bool(bad)
    if not log.header:
        raise ValueError(f"{path}: no header record; is this a simreal run log?")
    return log
