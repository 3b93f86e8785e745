"""`simreal log plot LOG --out DIR`: the figures a person looks at after a run.

    joints.png     commanded (sent) vs measured position, one panel per joint, limits dashed
    attitude.png   roll and pitch from the IMU quaternion, tilt, and the gyro
    velocity.png   base velocity and position from the mock's ground truth (when logged) vs command
    timing.png     loop period and serial round-trip histograms, cycle work time over the run

Safety events (trips, safe stop, command timeout) are vertical lines on every time axis.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from simreal.deploy.runlog import RunLog, read_log

EVENT_STYLE = {"trip": ("tab:red", "-"), "safe_stop": ("tab:red", "--"), "stop": ("0.4", "--"),
               "command_timeout": ("tab:orange", ":"), "torque_on": ("tab:green", ":")}


def _series(cycles: list[dict], *path: str) -> tuple[np.ndarray, np.ndarray]:
    """(t, values) over the cycles that have the field at `path` (nested keys)."""
    ts, vals = [], []
    for c in cycles:
        v = c
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
            if v is None:
                break
        if v is not None:
            ts.append(c["t"])
            vals.append(v)
    return np.asarray(ts, float), np.asarray(vals, float)


def roll_pitch_deg(quat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ZYX Euler roll and pitch of (w, x, y, z) quaternions, degrees."""
    w, x, y, z = quat.T
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    return np.degrees(roll), np.degrees(pitch)


def _mark_events(ax, run: RunLog, with_labels: bool = False) -> None:
    seen = set()
    for e in run.events:
        style = EVENT_STYLE.get(e.get("kind"))
        if style is None or "t" not in e:
            continue
        label = None
        if with_labels:
            label = f"{e['kind']}" + (f": {e['cause']}" if e.get("cause") else "")
            label = None if label in seen else label
            seen.add(label)
        ax.axvline(e["t"], color=style[0], linestyle=style[1], linewidth=1.2, label=label)


def _title(run: RunLog) -> str:
    h = run.header
    trips = run.events_of("trip")
    tail = f"; SAFE: {trips[0]['cause']}" if trips else ""
    return f"{h.get('robot', '?')} - {Path(str(h.get('bundle', ''))).name or run.path.name}{tail}"


def _save(fig, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_joints(run: RunLog, out: Path):
    import matplotlib.pyplot as plt

    names = run.header.get("joint_names") or []
    t_q, q = _series(run.cycles, "state", "q")
    t_s, sent = _series(run.cycles, "sent")
    n = q.shape[1] if q.ndim == 2 else len(names)
    if not n:
        return None
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.2 * rows), sharex=True, squeeze=False)
    lo, hi = run.header.get("joint_min"), run.header.get("joint_max")
    for j in range(n):
        ax = axes[j // cols][j % cols]
        if q.ndim == 2:
            ax.plot(t_q, q[:, j], color="tab:blue", linewidth=1, label="measured")
        if sent.ndim == 2 and sent.shape[1] > j:
            ax.step(t_s, sent[:, j], where="post", color="tab:orange", linewidth=1, label="commanded")
        if lo is not None and hi is not None:
            for v in (lo[j], hi[j]):
                ax.axhline(v, color="0.6", linestyle="--", linewidth=0.8)
        _mark_events(ax, run)
        ax.set_title(names[j] if j < len(names) else f"joint {j}", fontsize=9)
        ax.set_ylabel("rad")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    axes[0][0].legend(loc="upper right", fontsize=8)
    return _save(fig, f"joint position: commanded vs measured - {_title(run)}", out / "joints.png")


def plot_attitude(run: RunLog, out: Path):
    import matplotlib.pyplot as plt

    t, quat = _series(run.cycles, "state", "quat")
    if quat.ndim != 2 or not len(t):
        return None
    t_g, gyro = _series(run.cycles, "state", "gyro")
    t_tilt, tilt = _series(run.cycles, "tilt_deg")
    finite = np.all(np.isfinite(quat), axis=1) & (np.linalg.norm(np.nan_to_num(quat), axis=1) > 0)
    roll, pitch = roll_pitch_deg(quat[finite] / np.linalg.norm(quat[finite], axis=1, keepdims=True))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    a1.plot(t[finite], roll, label="roll")
    a1.plot(t[finite], pitch, label="pitch")
    if len(t_tilt):
        a1.plot(t_tilt, tilt, color="0.3", linewidth=1, label="tilt")
    limit = run.header.get("max_tilt_deg")
    if limit:
        a1.axhline(limit, color="tab:red", linestyle=":", linewidth=1, label="tilt limit")
    a1.set_ylabel("deg")
    _mark_events(a1, run, with_labels=True)
    a1.legend(loc="upper left", fontsize=8)
    if gyro.ndim == 2:
        for i, axis in enumerate("xyz"):
            a2.plot(t_g, gyro[:, i], linewidth=1, label=f"gyro {axis}")
        a2.legend(loc="upper left", fontsize=8)
    a2.set_ylabel("rad/s")
    a2.set_xlabel("time (s)")
    _mark_events(a2, run)
    return _save(fig, f"IMU attitude - {_title(run)}", out / "attitude.png")


def plot_velocity(run: RunLog, out: Path):
    import matplotlib.pyplot as plt

    t, vel = _series(run.cycles, "truth", "vel")
    t_c, cmd = _series(run.cycles, "command")
    if not len(t) and not len(t_c):
        return None
    t_p, pos = _series(run.cycles, "truth", "pos")
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    if vel.ndim == 2:
        a1.plot(t, vel[:, 0], label="vx (ground truth, world)")
        a1.plot(t, vel[:, 1], label="vy (ground truth, world)", linewidth=1)
    if cmd.ndim == 2:
        a1.step(t_c, cmd[:, 0], where="post", color="k", linestyle="--", linewidth=1, label="vx command")
    a1.set_ylabel("m/s")
    a1.legend(loc="upper left", fontsize=8)
    _mark_events(a1, run, with_labels=True)
    if pos.ndim == 2:
        a2.plot(t_p, pos[:, 0] - pos[0, 0], label="x - x0")
        a2.plot(t_p, pos[:, 1] - pos[0, 1], label="y - y0", linewidth=1)
        a2.legend(loc="upper left", fontsize=8)
    else:
        a2.text(0.5, 0.5, "no ground truth in this log (real robot)", ha="center", transform=a2.transAxes)
    a2.set_ylabel("m")
    a2.set_xlabel("time (s)")
    _mark_events(a2, run)
    return _save(fig, f"base velocity - {_title(run)}", out / "velocity.png")


def plot_timing(run: RunLog, out: Path):
    import matplotlib.pyplot as plt

    nominal = float(run.header.get("period", 0.0)) * 1e3
    _, period = _series(run.cycles, "timing", "period")
    _, read = _series(run.cycles, "timing", "read")
    _, send = _series(run.cycles, "timing", "send")
    t_w, work = _series(run.cycles, "timing", "work")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    if len(period):
        p = period * 1e3
        ax.hist(p, bins=60, color="tab:blue")
        ax.axvline(nominal, color="k", linestyle="--", linewidth=1, label=f"nominal {nominal:g} ms")
        ax.set_title(f"loop period: p50 {np.percentile(p, 50):.2f}, p99 {np.percentile(p, 99):.2f}, "
                     f"max {p.max():.2f} ms", fontsize=9)
        ax.legend(fontsize=8)
    ax.set_xlabel("ms")
    ax.set_yscale("log")
    ax = axes[1]
    for name, v in (("state read", read), ("command -> state", send)):
        if len(v):
            ax.hist(v * 1e3, bins=60, alpha=0.6, label=f"{name} (p50 {np.percentile(v * 1e3, 50):.2f} ms)")
    ax.set_title("serial round trip", fontsize=9)
    ax.set_xlabel("ms")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax = axes[2]
    if len(work):
        ax.plot(t_w, work * 1e3, linewidth=0.8, label="cycle work")
        ax.axhline(nominal, color="k", linestyle="--", linewidth=1, label="period")
        _mark_events(ax, run)
        ax.legend(fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ms")
    ax.set_title("work per cycle", fontsize=9)
    return _save(fig, f"timing - {_title(run)}", out / "timing.png")


def plot_log(log_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw every figure the log has data for into OUT_DIR; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    run = read_log(log_path)
    if not run.cycles:
        raise ValueError(f"{log_path}: no cycles to plot (the run ended before its first cycle)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [f(run, out) for f in (plot_joints, plot_attitude, plot_velocity, plot_timing)]
    return [f for f in files if f is not None]
