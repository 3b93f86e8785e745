"""`simreal runs [DIR]`: the run directories under DIR, one line each, from their files alone.

Reads config.yaml / run.json, the checkpoint folders' names, the last row of evaluations.csv,
summary.json and the run lock; imports nothing heavy, so listing a folder of runs is instant.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from simreal.train.checkpoint import CheckpointStore
from simreal.train.layout import RunPaths


@dataclass(frozen=True)
class RunRow:
    path: Path
    robot: str
    algo: str
    steps: int | None               # the latest checkpoint's step (None: none saved)
    target: int | None              # config's timesteps
    status: str                     # done, stopped (resumable), running, no checkpoint
    last_eval: dict | None          # the last row of evaluations.csv

    def to_dict(self) -> dict:
        return {"path": str(self.path), "robot": self.robot, "algo": self.algo, "steps": self.steps,
                "timesteps": self.target, "status": self.status, "last_eval": self.last_eval}


def _locked(paths: RunPaths) -> bool:
    """True while a `simreal train` process holds the run's lock."""
    if not paths.lock.is_file():
        return False
    fd = os.open(paths.lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _last_eval(paths: RunPaths) -> dict | None:
    try:
        with open(paths.evaluations, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None
    return rows[-1] if rows else None


def _config_fields(paths: RunPaths) -> tuple[str, str, int | None]:
    from simreal.errors import UserError
    from simreal.yamlfiles import read_mapping

    try:
        cfg = read_mapping(paths.config)
    except (OSError, UserError):         # a damaged run still gets its row
        cfg = {}
    target = cfg.get("timesteps")
    return str(cfg.get("robot", "?")), str(cfg.get("algo", "?")), int(target) if isinstance(target, int) else None


def read_run(root: Path) -> RunRow:
    paths = RunPaths(root)
    robot, algo, target = _config_fields(paths)
    steps_dirs = CheckpointStore(paths.checkpoints).step_dirs()
    steps = int(steps_dirs[0].name.removeprefix("step_")) if steps_dirs else None
    if _locked(paths):
        status = "running"
    elif steps is None:
        status = "no checkpoint"
    else:
        try:
            summary = json.loads(paths.summary.read_text())
        except (OSError, ValueError):
            summary = {}
        done = summary and not summary.get("interrupted") and (target is None or steps >= target)
        status = "done" if done else "stopped"
    return RunRow(root, robot, algo, steps, target, status, _last_eval(paths))


def find_runs(top: Path, depth: int = 2) -> list[Path]:
    """Run directories (holding config.yaml) at or below `top`, up to `depth` levels down."""
    if RunPaths(top).config.is_file():
        return [top]
    if depth == 0 or not top.is_dir():
        return []
    return [r for d in sorted(top.iterdir()) if d.is_dir() for r in find_runs(d, depth - 1)]


def _num(row: dict, key: str) -> float | None:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None


def format_row(r: RunRow) -> str:
    steps = "-" if r.steps is None else f"{r.steps:,}"
    if r.target:
        steps += f"/{r.target:,}"
    ev = "no evaluation yet"
    if r.last_eval:
        v, falls, ret = (_num(r.last_eval, k) for k in ("mean_forward_velocity", "fall_rate", "mean_return"))
        bits = ([f"v {v:.2f} m/s"] if v is not None else []) + \
               ([f"falls {falls:.0%}"] if falls is not None else []) + \
               ([f"return {ret:.0f}"] if ret is not None else [])
        ev = "eval " + " ".join(bits)
    return f"{r.robot:<11} {r.algo:<8} {steps:>22}  {r.status:<13} {ev}  {r.path}"
