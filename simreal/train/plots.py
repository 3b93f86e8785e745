"""learning_curve.png from a run's metrics.csv and evaluations.csv (matplotlib, no display needed)."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from simreal.files import write_atomic
from simreal.train.layout import RunPaths


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows])
            for k in rows[0]}


def rolling_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` finite values (NaN where there is none yet)."""
    out = np.full(len(y), math.nan)
    for i in range(len(y)):
        seg = y[max(0, i - window + 1): i + 1]
        seg = seg[np.isfinite(seg)]
        if len(seg):
            out[i] = seg.mean()
    return out


def plot_learning_curve(run_dir: Path, title: str | None = None, window: int = 20) -> Path:
    """Return, forward velocity and fall rate against environment steps; written atomically."""
    from matplotlib.figure import Figure

    paths = RunPaths(Path(run_dir))
    m, e = _read(paths.metrics), _read(paths.evaluations)
    has_v = bool(m) and np.isfinite(m.get("forward_velocity", np.array([math.nan]))).any()
    rows = 3 if has_v else 2
    fig = Figure(figsize=(8, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True)
    ax_ret, ax_fall = axes[0], axes[-1]
    if m:
        t = m["timesteps"]
        ax_ret.plot(t, m["return"], ".", ms=2, alpha=0.25, color="tab:blue", label="episode")
        ax_ret.plot(t, rolling_mean(m["return"], window), color="tab:blue",
                    label=f"mean of last {window}")
        ax_fall.plot(t, rolling_mean(m["fell"], window), color="tab:red")
        if has_v:
            ax_v = axes[1]
            ax_v.plot(t, rolling_mean(m["forward_velocity"], window), color="tab:green",
                      label="forward velocity")
            if np.isfinite(m["tracking_error"]).any():
                ax_v.plot(t, rolling_mean(m["tracking_error"], window), color="tab:orange",
                          label="|v - v_cmd|")
            ax_v.set_ylabel("m/s")
            ax_v.legend(loc="best", fontsize=8)
    if e:
        ax_ret.errorbar(e["timesteps"], e["mean_return"], yerr=e["std_return"], fmt="o-",
                        color="black", ms=4, capsize=2, label="evaluation")
    ax_ret.set_ylabel("episode return")
    ax_ret.legend(loc="best", fontsize=8)
    ax_fall.set_ylabel("fall rate")
    ax_fall.set_ylim(-0.05, 1.05)
    ax_fall.set_xlabel("environment steps")
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_atomic(paths.curve, buf.getvalue())
    return paths.curve
