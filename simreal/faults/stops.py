"""Safety drills (docs/faults.md C1, C2, C4-C7, C9, F9, T1, T2): each fault, injected at several
cycles, must latch the right cause and end in a confirmed safe stop; with the times it took.

A drill runs the real Runtime against the lockstep mock in this process on a FakeClock
(simreal.faults.bench), so the figures are exact and do not depend on the machine's load.
Times are on the host's clock, from injection:
- injection: for a robot-side fault, when the host sent the COMMAND during which it occurred (in
  lockstep the robot's time from one cycle to the next passes inside that transaction); for a
  policy or host fault, the start of the cycle it happens in;
- detect: the trip (SAFE latched);
- safe: the first reply after it confirming DAMPING (motors passive and braking) or torque off;
- torque off: the robot's reply confirming torque off. The stop damps for RuntimeConfig.damp_s
  (0.2 s) first, so torque off comes that much after detection by design; with the link gone
  (T1, T2) nothing can be confirmed and the robot's watchdog is what makes it safe.
Every COMMAND sent in every drill is also checked for non-finite values.
"""
from __future__ import annotations

import math
import os
import signal
import statistics
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.deploy.clock import FakeClock
from simreal.faults.bench import RTT_S, T, at_cycle, make_runtime

N_PRE = 15          # soft start (0.2 s) + settle (0.1 s) at 50 Hz: the runtime cycles before the policy


@dataclass(frozen=True)
class Drill:
    row: str
    name: str
    cause: str                                   # the trip it must latch
    setup: Callable[[int, int], dict[str, Any]]  # (injection cycle, joints) -> make_runtime kwargs
    robot_side: bool = True                      # injected at robot time (c - 1/2) T; else at cycle c's start
    confirmable: bool = True                     # False: the link is gone, only the watchdog can stop it


def _nan_action(c: int, n: int) -> dict:
    def fn(k: int, obs: Any) -> np.ndarray:
        a = np.zeros(n)
        if k >= c - N_PRE:
            a[3] = math.nan
        return a
    return {"fn": fn}


def _exception(c: int, n: int) -> dict:
    def fn(k: int, obs: Any) -> np.ndarray:
        if k >= c - N_PRE:
            raise RuntimeError("the policy raised (drill)")
        return np.zeros(n)
    return {"fn": fn}


def _sigterm(c: int, n: int) -> dict:
    def on_cycle(i: int, rec: dict) -> None:
        if i == c:
            os.kill(os.getpid(), signal.SIGTERM)
    return {"on_cycle": on_cycle, "handle_signals": True}


DRILLS: tuple[Drill, ...] = (
    Drill("C1", "NaN joint position", S.NON_FINITE_STATE, lambda c, n: {"faults": f"nan_at={at_cycle(c)}:2:q"}),
    Drill("C1", "NaN gyro", S.NON_FINITE_STATE, lambda c, n: {"faults": f"nan_at={at_cycle(c)}:2:gyro"}),
    Drill("C2", "NaN action", S.NON_FINITE_ACTION, _nan_action, robot_side=False),
    Drill("C4", "stale state (robot clock stops)", S.STALE_STATE,
          lambda c, n: {"faults": f"freeze_timestamp_at={at_cycle(c)}"}),
    Drill("C5", "every cycle 1.5x the period", S.OVERRUN, lambda c, n: {"infer_s": 1.5 * T}, robot_side=False),
    Drill("C6", "fall (tilt 90 deg)", S.TILT, lambda c, n: {"faults": f"tilt_at={at_cycle(c)}:90"}),
    Drill("C7", "joint beyond its limit", S.JOINT_LIMIT,
          lambda c, n: {"faults": f"encoder_slip_at={at_cycle(c)}:fl_knee:1.7"}),
    Drill("C9", "exception in the policy", S.EXCEPTION, _exception, robot_side=False),
    Drill("C9", "SIGTERM", S.SIGNAL, _sigterm, robot_side=False),
    Drill("F9", "device fault (overheat)", S.DEVICE_FAULT,
          lambda c, n: {"faults": f"device_fault={at_cycle(c)}:overheat"}),
    Drill("F9", "robot e-stop", S.DEVICE_FAULT, lambda c, n: {"faults": f"estop_at={at_cycle(c)}"}),
    Drill("T1", "unplugged", S.LINK_LOST, lambda c, n: {"faults": f"disconnect_at={at_cycle(c)}"}, confirmable=False),
    Drill("T2", "stalled device", S.LINK_FAILED, lambda c, n: {"faults": f"stall_at={at_cycle(c)}"}, confirmable=False),
)


@dataclass(frozen=True)
class Trial:
    cycle: int
    cause: str | None
    detect_s: float | None        # injection -> trip
    safe_s: float | None          # trip -> a reply confirming DAMPING or torque off
    off_s: float | None           # trip -> torque off confirmed
    confirmed: bool
    commands: int
    non_finite_commands: int


def trial(spec: Any, drill: Drill, c: int) -> Trial:
    """One run with the fault injected at runtime cycle c."""
    replies: list[tuple[float, str, P.Message]] = []      # (reply time, request type, reply)
    clock = FakeClock(100.0)

    def hook(request: P.Message, reply: P.Message) -> P.Message:
        replies.append((clock.now(), request.TYPE.name, reply))
        return reply

    rt, bench, _pol, _ = make_runtime(spec, clock=clock, hook=hook, duration=1.0, **drill.setup(c, spec.n_joints))
    try:
        s = rt.run()
    except RuntimeError:            # C9: the policy's exception is re-raised after the safe stop
        s = rt.summary()
    starts = rt.stats.starts
    if drill.robot_side:            # lockstep: robot time (c-1)T..cT passes inside cycle c-1's COMMAND
        inject = next(t - RTT_S for t, kind, _r in replies if kind == "COMMAND" and t >= starts[c - 1])
    else:                           # C5: every policy cycle is slow, from the first
        inject = starts[N_PRE if drill.row == "C5" else c]
    trips = s["safe_stops"]
    cause = trips[0]["cause"] if trips else None
    t_trip = trips[0]["t"] + rt.t0 if trips else math.nan
    after = [(t, kind, r) for t, kind, r in replies if t >= t_trip]
    safe = next((t for t, kind, r in after if isinstance(r, P.State)
                 and (r.status & P.Status.DAMPING or not r.torque_on)), None)
    off = next((t for t, kind, r in after if kind == "TORQUE" and not r.torque_on), None)
    cmds = bench.commands()
    return Trial(c, cause, t_trip - inject if trips else None,
                 None if safe is None else safe - t_trip, None if off is None else off - t_trip,
                 bool(s["stop"] and s["stop"]["confirmed"]), len(cmds),
                 sum(not all(map(math.isfinite, q)) for q in cmds))


@dataclass(frozen=True)
class StopRun:
    row: str
    name: str
    cause: str
    trials: int
    detected: int                 # the right cause latched
    confirmed: int                # torque off confirmed by the robot
    detect_ms: dict[str, float]   # p50 / p95 / max over trials
    safe_ms: dict[str, float]     # trip -> DAMPING or torque off confirmed
    off_ms: dict[str, float]
    non_finite_commands: int
    confirmable: bool

    @property
    def passed(self) -> bool:
        """Right cause every time; a safe mode (DAMPING, or torque off) confirmed within one period of
        detection; torque off confirmed
        wherever the link lets it be; no non-finite command."""
        ok = self.detected == self.trials and self.non_finite_commands == 0
        if self.confirmable:
            ok = ok and self.confirmed == self.trials and self.safe_ms.get("max", math.inf) <= T * 1e3 + 1e-9
        return ok


def _stats(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    xs = sorted(x * 1e3 for x in xs)
    p95 = xs[min(len(xs) - 1, math.ceil(0.95 * len(xs)) - 1)]
    return {"p50": round(statistics.median(xs), 3), "p95": round(p95, 3), "max": round(xs[-1], 3)}


def run(trials: int = 20) -> list[StopRun]:
    """Each drill at `trials` injection cycles spread over the policy phase."""
    from simreal.robot.spec import load_robot

    spec = load_robot("quadruped")
    out = []
    for d in DRILLS:
        cycles = [N_PRE + 2 + (k * 7) % 30 for k in range(trials)]
        ts = [trial(spec, d, c) for c in cycles]
        right = [t for t in ts if t.cause == d.cause]
        out.append(StopRun(d.row, d.name, d.cause, len(ts), len(right), sum(t.confirmed for t in ts),
                           _stats([t.detect_s for t in right if t.detect_s is not None]),
                           _stats([t.safe_s for t in right if t.safe_s is not None]),
                           _stats([t.off_s for t in right if t.off_s is not None]),
                           sum(t.non_finite_commands for t in ts), d.confirmable))
    return out
