"""Identified values -> randomization ranges of robot.yaml, as a diff, applied only on request.

Only the `randomization:` lines of the identified parameters change, in place (comments and
the rest of the file as they were); the file is replaced atomically."""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from simreal.sysid.fit import Fit

MIN_HALF_WIDTH = 0.05     # the range is at least +-5% of the value: another unit, another day


def fitted_ranges(result: Fit) -> dict[str, list[float]]:
    """Ranges for the identified parameters only (Estimate.identified): what the data cannot pin
    keeps the range it had."""
    out: dict[str, list[float]] = {e.name: list(e.range(MIN_HALF_WIDTH)) for e in result.estimates if e.identified}
    d = result.action_latency_steps
    out["action_latency_steps"] = [max(0, d - 1), d + 1]       # the identified delay +- one step
    return out


def updated_yaml(text: str, ranges: dict[str, list[float]]) -> str:
    """robot.yaml's text with each `  NAME: [lo, hi]` line under `randomization:` replaced."""
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if re.match(r"^randomization:\s*(#.*)?$", line))
    except StopIteration:
        raise ValueError("robot.yaml has no top-level randomization: section") from None
    todo = dict(ranges)
    for i in range(start + 1, len(lines)):
        if re.match(r"^\S", lines[i]):
            break                              # the next top-level key
        m = re.match(r"^(\s+)(\w+):\s*\[[^\]]*\](.*)$", lines[i].rstrip("\n"))
        if m and m.group(2) in todo:
            lo, hi = todo.pop(m.group(2))
            fmt = (lambda v: str(int(v))) if m.group(2).endswith("_steps") else (lambda v: f"{v:g}")
            lines[i] = f"{m.group(1)}{m.group(2)}: [{fmt(lo)}, {fmt(hi)}]{m.group(3)}\n"
    if todo:
        raise ValueError(f"robot.yaml randomization has no [lo, hi] line for {', '.join(todo)}")
    return "".join(lines)


def diff(path: Path, new: str) -> str:
    old = path.read_text()
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(path), str(path) + " (fitted)"))


def write(path: Path, new: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
