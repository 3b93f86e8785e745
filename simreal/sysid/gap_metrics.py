"""The figures `simreal gap` compares: one policy run's walking figures, per-joint lag and
tracking, and a distance between two observation distributions. Plain numpy on Trace arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_LAG = 10          # control cycles searched for the target -> position lag


@dataclass(frozen=True)
class Trace:
    """One run of a policy over its policy phase, cycle by cycle (robot or simulation).

    q is read at the start of cycle t, obs is built from it, sent is the target sent in cycle t.
    forward_velocity / position are None where nothing measures them (a robot without the mock's
    ground truth); `privileged` says they came from the mock's simulator, not from sensors.
    """
    source: str
    period: float
    command: tuple[float, float]
    q: np.ndarray                  # [T, n] rad
    sent: np.ndarray               # [T, n] rad
    obs: np.ndarray                # [T, obs_dim]
    heading: np.ndarray            # [T] rad
    forward_velocity: np.ndarray | None    # [T] m/s along the heading
    position: np.ndarray | None            # [T, 2] m, world
    fell: bool
    ret: float | None = None
    privileged: bool = False

    @property
    def cycles(self) -> int:
        return len(self.q)


def walking(tr: Trace) -> dict:
    """Forward velocity, its tracking error, heading drift per 15 s (beyond the commanded yaw),
    falls and return, for one trace (None where the trace cannot say)."""
    seconds = tr.cycles * tr.period
    turned = float(np.unwrap(tr.heading)[-1] - tr.heading[0]) if tr.cycles > 1 else 0.0
    drift = math.degrees(turned - tr.command[1] * seconds) * 15.0 / seconds if seconds > 0 else math.nan
    out = {"cycles": tr.cycles, "seconds": round(seconds, 4), "heading_drift_deg_15s": round(drift, 3),
           "fell": tr.fell, "return": None if tr.ret is None else round(tr.ret, 4),
           "forward_velocity": None, "tracking_error": None, "progress_velocity": None,
           "privileged": tr.privileged}
    if tr.forward_velocity is not None and tr.cycles:        # NaN: a cycle with no measurement
        v = np.asarray(tr.forward_velocity)
        out["forward_velocity"] = round(float(np.nanmean(v)), 4)
        out["tracking_error"] = round(float(np.nanmean(np.abs(v - tr.command[0]))), 4)
    if tr.position is not None and tr.cycles > 1:
        seen = np.flatnonzero(np.isfinite(tr.position).all(axis=1))
        if len(seen) > 1:
            i, k = seen[0], seen[-1]
            d = tr.position[k] - tr.position[i]
            out["progress_velocity"] = round(float(d @ [math.cos(tr.heading[i]), math.sin(tr.heading[i])])
                                             / ((k - i) * tr.period), 4)
    return out


def lag_cycles(sent: np.ndarray, q: np.ndarray, max_lag: int = MAX_LAG) -> float:
    """How many control cycles the joint position follows its target by: the peak of the
    cross-correlation of their per-cycle changes over lags 0..max_lag, refined to a fraction of
    a cycle by a parabola through the peak. NaN when the joint barely moved."""
    ds, dq = np.diff(np.asarray(sent, float)), np.diff(np.asarray(q, float))
    if len(ds) <= max_lag + 2 or ds.std() < 1e-9 or dq.std() < 1e-9:
        return math.nan
    c = np.array([np.corrcoef(ds[:len(ds) - k], dq[k:])[0, 1] for k in range(max_lag + 1)])
    k = int(np.nanargmax(c))
    if 0 < k < max_lag:
        a, b, e = c[k - 1], c[k], c[k + 1]
        denom = a - 2 * b + e
        if denom < 0:
            return k + 0.5 * (a - e) / denom
    return float(k)


def joints(robot: Trace, sim: Trace, names: list[str]) -> list[dict]:
    """Per joint: the target -> position lag on each side and their difference (cycles), and the
    rms tracking error |target sent in t - position read in t+1| on each side (rad)."""
    rows = []
    for j, name in enumerate(names):
        lr, ls = lag_cycles(robot.sent[:, j], robot.q[:, j]), lag_cycles(sim.sent[:, j], sim.q[:, j])
        rms = [float(np.sqrt(np.mean((t.sent[:-1, j] - t.q[1:, j]) ** 2))) for t in (robot, sim)]
        rows.append({"joint": name, "lag_robot": _r(lr), "lag_sim": _r(ls), "lag_difference": _r(lr - ls),
                     "rms_error_robot": round(rms[0], 5), "rms_error_sim": round(rms[1], 5)})
    return rows


def wasserstein_1d(a: np.ndarray, b: np.ndarray, levels: int = 201) -> float:
    """Earth mover's distance between two 1-D samples: the mean gap between their quantiles."""
    p = np.linspace(0.0, 1.0, levels)
    return float(np.mean(np.abs(np.quantile(a, p) - np.quantile(b, p))))


def observation_distance(robot: np.ndarray, sim: np.ndarray, names: list[str], worst: int = 5) -> dict:
    """Per observation entry, the 1-D Wasserstein distance between the robot's and the
    simulation's values, in units of the simulation's spread (its std, floored at 1e-3 so a
    constant entry does not divide by zero); the mean over entries and the largest ones."""
    d = []
    for i in range(robot.shape[1]):
        scale = max(float(sim[:, i].std()), 1e-3)
        d.append(wasserstein_1d(robot[:, i], sim[:, i]) / scale)
    order = np.argsort(d)[::-1][:worst]
    return {"mean_w1_over_sim_std": round(float(np.mean(d)), 4),
            "largest": [{"entry": names[i], "w1_over_sim_std": round(d[i], 4)} for i in order]}


def ratio(robot: float | None, sim: float | None) -> float | None:
    if robot is None or sim is None or abs(sim) < 1e-9:
        return None
    return round(robot / sim, 4)


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 3)
