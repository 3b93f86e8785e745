"""Read a `simreal sysid record` folder back: the policy-phase cycles as arrays, every value checked.

A malformed or truncated recording is refused with the file and line named (RecordingError)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simreal.errors import UserError
from simreal.sysid.record import LOG_FILE, META_FILE


class RecordingError(UserError, ValueError):
    """The recording cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Recording:
    robot: str
    stance: str
    period: float
    q: np.ndarray           # (T, n) encoder positions read at each cycle, rad
    dq: np.ndarray          # (T, n)
    sent: np.ndarray        # (T, n) targets sent after each read


def load_recording(folder: str | Path) -> Recording:
    folder = Path(folder)
    meta_path, log_path = folder / META_FILE, folder / LOG_FILE
    for p in (meta_path, log_path):
        if not p.is_file():
            raise RecordingError(f"{p}: missing (not a `simreal sysid record` folder, or it never completed)")
    try:
        meta = json.loads(meta_path.read_text())
        robot, stance, period, n = str(meta["robot"]), str(meta["stance"]), float(meta["period"]), len(meta["joint_names"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordingError(f"{meta_path}: not a recording's metadata ({exc})") from None
    q, dq, sent = [], [], []
    with open(log_path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except ValueError:
                raise RecordingError(f"{log_path} line {no}: not JSON (truncated or corrupted)") from None
            if not isinstance(r, dict) or r.get("type") != "cycle" or r.get("phase") != "policy":
                continue
            if "state" not in r or "sent" not in r:
                continue                  # a failed cycle: nothing read or nothing sent
            try:
                row = (r["state"]["q"], r["state"]["dq"], r["sent"])
                arrs = [np.asarray(v, dtype=float) for v in row]
            except (KeyError, TypeError, ValueError):
                raise RecordingError(f"{log_path} line {no}: a cycle without numeric q, dq and sent") from None
            for name, a in zip(("q", "dq", "sent"), arrs):
                if a.shape != (n,):
                    raise RecordingError(f"{log_path} line {no}: {name} has {a.size} values, the robot {n} joints")
                if not np.all(np.isfinite(a)):
                    raise RecordingError(f"{log_path} line {no}: {name} is not finite")
            q.append(arrs[0]), dq.append(arrs[1]), sent.append(arrs[2])
    if len(q) < 50:
        raise RecordingError(f"{log_path}: {len(q)} policy cycles with a state and a command; need >= 50")
    if not (math.isfinite(period) and period > 0):
        raise RecordingError(f"{meta_path}: period must be a finite number > 0, got {period!r}")
    return Recording(robot, stance, period, np.array(q), np.array(dq), np.array(sent))
