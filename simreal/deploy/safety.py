"""The safety layer: small checks, each answering one row of docs/faults.md, and a latch.

Everything here is pure (numbers in, verdict out) so each row can be tested on its own with
no robot, link or clock. The runtime composes them; the order it uses is the point:

    state  -> non-finite? (C1) -> joint left its limits? (C7) -> tilted for D cycles? (C6)
           -> timestamp stuck for N cycles? (C4)                       any -> SAFE
    action -> non-finite? (C2, BEFORE any clamp: NaN passes min/max or becomes a bound)
           -> clamp to joint limits -> limit change per cycle (C3)     -> what is sent
    link   -> K consecutive failed cycles (T2, D2) / link lost (T1)    -> SAFE
    loop   -> persistent overruns (C5)                                 -> SAFE
    commands stop arriving for T seconds -> zero velocity (C8)

A verdict is a reason string (None = fine) so the log says exactly what was seen.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from simreal import protocol as P
from simreal.robot.action import clamp_targets, limit_change

# Causes of a safe stop, as they appear in logs and summaries.
NON_FINITE_STATE = "non_finite_state"
NON_FINITE_ACTION = "non_finite_action"
JOINT_LIMIT = "joint_limit"
TILT = "tilt"
STALE_STATE = "stale_state"
LINK_FAILED = "link_failed"          # K consecutive failed cycles
LINK_LOST = "link_lost"
DEVICE_FAULT = "device_fault"
OVERRUN = "overrun"
SIGNAL = "signal"                    # SIGINT / SIGTERM
EXCEPTION = "exception"
START_REFUSED = "start_refused"      # the robot was not in a state to start from


class NonFiniteError(ValueError):
    """A value that must never reach the wire (or a clamp) is NaN or infinite."""


@dataclass(frozen=True)
class SafetyConfig:
    """Thresholds. Times are in control cycles where the fault row counts cycles."""
    max_tilt_deg: float = 60.0
    tilt_debounce: int = 3               # D: consecutive cycles beyond max_tilt before SAFE (C6)
    stale_cycles: int = 5                # N: cycles the robot clock may stand still (C4)
    max_failed_cycles: int = 3           # K: consecutive cycles without a usable reply (T2, D2)
    overrun_consecutive: int = 10        # this many overruns in a row is persistent (C5)
    overrun_window: int = 50             # ... or more than overrun_fraction of the last window
    overrun_fraction: float = 0.5
    joint_limit_margin: float = 0.1      # rad past the spec's limit a MEASURED joint may go (C7)
    start_limit_margin: float = 1.0      # at power-up a joint further out than this is a calibration
                                         # fault (D4), not a folded limp joint: refuse to start
    command_timeout_s: float = 0.5       # streamed velocity commands older than this -> zero (C8)
    # Before torque on the robot must be at rest and standing: torque on a robot that is still
    # folding (or tipping) hands the soft start a moving, tilting body it cannot stand up.
    start_max_tilt_deg: float = 20.0     # tilt limit from pre-flight to the end of settle (normal: 4-16 deg)
    # A limp quadruped folds at ~0.2 rad/s for ~4 s (mock, measured); at rest the fitted joint speed
    # is ~0.03 rad/s and under the worn profile's sensor noise below ~0.05.
    rest_window_s: float = 0.3           # at rest = over this window of STATE reads...
    rest_joint_speed: float = 0.1        # ... every joint's fitted speed is below this (rad/s, encoders)
    rest_gyro: float = 0.06              # ... and the mean body rate is below this (rad/s)
    rest_wait_s: float = 5.0             # how long pre-flight waits for rest before refusing
    # At the handover to the policy the robot must have stood up and settled (measured at the end
    # of settle: ~0.7 deg and 0.01 rad/s when it stood up, 15-25 deg and 0.3-1.8 rad/s when it was tipping).
    handover_max_tilt_deg: float = 10.0
    handover_gyro: float = 0.25          # rad/s, one STATE (worn sensor noise stays below ~0.15)

    def __post_init__(self) -> None:
        for name in ("tilt_debounce", "stale_cycles", "max_failed_cycles", "overrun_consecutive",
                     "overrun_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"SafetyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.max_tilt_deg <= 180:
            raise ValueError(f"SafetyConfig.max_tilt_deg must be in (0, 180], got {self.max_tilt_deg}")
        if not 0 < self.overrun_fraction <= 1:
            raise ValueError(f"SafetyConfig.overrun_fraction must be in (0, 1], got {self.overrun_fraction}")
        if not 0 < self.start_max_tilt_deg <= self.max_tilt_deg:
            raise ValueError(f"SafetyConfig.start_max_tilt_deg must be in (0, max_tilt_deg], "
                             f"got {self.start_max_tilt_deg}")
        for name in ("rest_window_s", "rest_joint_speed", "rest_gyro", "rest_wait_s", "handover_max_tilt_deg",
                     "handover_gyro"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SafetyConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.joint_limit_margin < 0 or self.start_limit_margin < self.joint_limit_margin \
                or self.command_timeout_s <= 0:
            raise ValueError("SafetyConfig: need 0 <= joint_limit_margin <= start_limit_margin and "
                             "command_timeout_s > 0")


# --------------------------------------------------------------------------- finiteness (C1, C2)

def _finite(v: object) -> bool:
    # Fast paths for what the loop passes every cycle (float arrays, floats, tuples of floats).
    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
        return bool(np.isfinite(v).all())
    if isinstance(v, float):
        return math.isfinite(v)
    try:
        return bool(np.isfinite(np.asarray(v, dtype=np.float64)).all())
    except (TypeError, ValueError):     # not numbers at all
        return False


def non_finite_fields(**values: object) -> list[str]:
    """Names of the given arrays/scalars holding any NaN or infinity (or nothing numeric at all)."""
    return [name for name, v in values.items() if not _finite(v)]


def check_finite(what: str, **values: object) -> None:
    """Raise NonFiniteError naming every offending field; call before anything else touches them."""
    bad = non_finite_fields(**values)
    if bad:
        raise NonFiniteError(f"{what}: non-finite values in {', '.join(bad)}")


def state_problem(state) -> str | None:
    """C1: a RobotState with any non-finite field is not fed to anything."""
    bad = non_finite_fields(joint_pos=state.joint_pos, joint_vel=state.joint_vel, quat=state.quat,
                            gyro=state.gyro, accel=state.accel, timestamp=state.timestamp)
    return f"non-finite state: {', '.join(bad)}" if bad else None


def mode_problem(status: int, torque_on_expected: bool) -> str | None:
    """F9: the robot's own mode disagrees with the host's. While the host drives, the runtime never
    sends HOLD or DAMP, so WATCHDOG, DAMPING, HOLDING or torque off in a STATE means the robot has
    stopped following COMMANDs (its watchdog fired during a host freeze, a button, a brown-out):
    another policy call would act on a robot that is not doing what the policy assumes."""
    if not torque_on_expected:
        return None
    s = P.Status(status)
    seen = [name for flag, name in ((P.Status.WATCHDOG, "WATCHDOG"), (P.Status.DAMPING, "DAMPING"),
                                    (P.Status.HOLDING, "HOLDING")) if s & flag]
    if not s & P.Status.TORQUE_ON:
        seen.append("torque off")
    if not seen:
        return None
    return f"the robot left position control by itself ({', '.join(seen)}; status {s!r})"


def rest_problem(t: Sequence[float], q: np.ndarray, gyro: np.ndarray, names: Sequence[str],
                 max_joint_speed: float, max_gyro: float) -> str | None:
    """Is the robot at rest over these reads (times t, joint positions q [reads, joints], gyro
    [reads, 3])? Joint speed is the least-squares slope of the encoder positions over the window
    (not the noisy velocity channel); the body rate is the norm of the mean gyro (noise averages
    out, motion does not)."""
    t = np.asarray(t, dtype=np.float64) - float(t[0])
    dt = t - t.mean()
    if not float(dt @ dt) > 0:
        return "no time passed between the reads"
    speed = np.abs(dt @ (q - q.mean(axis=0))) / float(dt @ dt)
    j = int(np.argmax(speed))
    rate = float(np.linalg.norm(np.mean(gyro, axis=0)))
    moving = []
    if speed[j] > max_joint_speed:
        moving.append(f"{names[j]} moving at {speed[j]:.2f} rad/s (limit {max_joint_speed:g})")
    if rate > max_gyro:
        moving.append(f"body turning at {rate:.2f} rad/s (limit {max_gyro:g})")
    return "; ".join(moving) or None


# --------------------------------------------------------------------------- targets (C3)

def clamp_to_limits(targets: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Clip joint targets into [lo, hi]. Refuses non-finite input rather than turning NaN into a bound."""
    check_finite("clamp_to_limits", targets=targets)
    return clamp_targets(np.asarray(targets, dtype=np.float64), lo, hi)


def limit_step(targets: np.ndarray, previous: np.ndarray, max_step: float | np.ndarray) -> np.ndarray:
    """Move from `previous` toward `targets` by at most max_step per joint (rad per cycle)."""
    check_finite("limit_step", targets=targets, previous=previous)
    return limit_change(np.asarray(targets, dtype=np.float64), previous, max_step)


@dataclass
class Filtered:
    """What a filter pass decided: the targets to send and which joints it had to change."""
    sent: np.ndarray
    clamped: list[int] = field(default_factory=list)        # joints clipped to their limits
    rate_limited: list[int] = field(default_factory=list)   # joints held back by the change limit


class SafetyLayer:
    """Joint targets in, targets actually sent out (LeRobot's send_action habit).

    Order: reject non-finite (raises NonFiniteError; nothing is sent) -> clamp into the limits ->
    at most max_step from the last target sent -> clamp again. The final clamp makes the limits
    hard. One exception, for a robot powered up outside its limits (a limp knee folds past them):
    start_from(q) takes the measured pose as it is, and a joint outside its limits may then only
    move toward them (the envelope is [min(lo, last), max(hi, last)]), never further out.
    """

    def __init__(self, joint_min: Sequence[float], joint_max: Sequence[float], max_step: float):
        self.lo = np.asarray(joint_min, dtype=np.float64)
        self.hi = np.asarray(joint_max, dtype=np.float64)
        if self.lo.shape != self.hi.shape or np.any(self.lo > self.hi):
            raise ValueError("SafetyLayer: joint_min and joint_max must have one shape and min <= max")
        if not max_step > 0:
            raise ValueError(f"SafetyLayer: max_step must be > 0, got {max_step}")
        self.max_step = float(max_step)
        self.previous: np.ndarray | None = None

    def start_from(self, q: Sequence[float]) -> None:
        """Reference for the first change limit: the measured pose when torque came on."""
        check_finite("start_from", q=q)
        q = np.asarray(q, dtype=np.float64)
        if q.shape != self.lo.shape:
            raise ValueError(f"start pose has shape {q.shape}, the robot has {self.lo.shape}")
        self.previous = q.copy()

    def envelope(self) -> tuple[np.ndarray, np.ndarray]:
        """The limits, widened only to include the last target sent (a start outside the limits)."""
        if self.previous is None:
            return self.lo, self.hi
        return np.minimum(self.lo, self.previous), np.maximum(self.hi, self.previous)

    def filter(self, targets: Sequence[float]) -> Filtered:
        check_finite("joint targets", targets=targets)   # first: NaN never reaches a clamp
        want = np.asarray(targets, dtype=np.float64)
        if want.shape != self.lo.shape:
            raise ValueError(f"joint targets have shape {want.shape}, the robot has {self.lo.shape}")
        lo, hi = self.envelope()
        # simreal.robot.action's pipeline stages (the training env runs the same): `want` and the
        # reference are known finite here
        clamped = clamp_targets(want, lo, hi)
        out = clamped if self.previous is None else limit_change(clamped, self.previous, self.max_step)
        out = clamp_targets(out, lo, hi)
        self.previous = out
        return Filtered(out, np.flatnonzero(clamped != want).tolist(),
                        np.flatnonzero(out != clamped).tolist())


# --------------------------------------------------------------------------- state monitors

def joint_limit_problem(q: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float,
                        names: Sequence[str] | None = None, joints: Sequence[int] | None = None) -> str | None:
    """A measured joint more than `margin` past its limit (tracking overshoot stays inside it).

    joints: check only these (default all)."""
    outside = (q < lo - margin) | (q > hi + margin)
    if joints is not None:
        mask = np.zeros_like(outside)
        mask[list(joints)] = True
        outside &= mask
    over = np.flatnonzero(outside)
    if not over.size:
        return None
    j = int(over[0])
    name = names[j] if names is not None else f"joint {j}"
    return (f"{name} at {q[j]:+.3f} rad, limits [{lo[j]:+.3f}, {hi[j]:+.3f}] + {margin:g} margin"
            + (f" ({over.size} joints beyond)" if over.size > 1 else ""))


class JointLimitMonitor:
    """C7: a joint that has been inside its limits (+ margin) and leaves them is a fault.

    A joint powered up outside them (a limp robot folds past its soft limits) is watched from the
    moment the soft start has brought it inside; `unarmed()` lists those still outside, which
    the runtime requires to be empty when the policy takes over.
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, margin: float, names: Sequence[str] | None = None):
        self.lo, self.hi, self.margin, self.names = lo, hi, margin, names
        self.armed = np.zeros(len(lo), dtype=bool)

    def update(self, q: np.ndarray) -> str | None:
        inside = (q >= self.lo - self.margin) & (q <= self.hi + self.margin)
        if inside.all():                  # the every-cycle case
            self.armed[:] = True
            return None
        problem = joint_limit_problem(q, self.lo, self.hi, self.margin, self.names,
                                      np.flatnonzero(self.armed).tolist())
        self.armed |= inside
        return problem

    def unarmed(self) -> list[str]:
        return [self.names[j] if self.names is not None else f"joint {j}" for j in np.flatnonzero(~self.armed)]


def tilt_deg(quat: Sequence[float]) -> float:
    """Angle between the body z axis and world up, degrees; NaN for a non-finite or zero quaternion.

    For q = (w, x, y, z) world-from-body, R[2,2] = (w^2 - x^2 - y^2 + z^2) / |q|^2 is the cosine.
    """
    w, x, y, z = (float(v) for v in quat)
    n2 = w * w + x * x + y * y + z * z
    if not (math.isfinite(n2) and n2 > 0):
        return math.nan
    c = (w * w - x * x - y * y + z * z) / n2
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


class TiltMonitor:
    """C6: tilt beyond the threshold for `debounce` consecutive cycles. A non-finite IMU is a fault now."""

    def __init__(self, max_tilt_deg: float, debounce: int):
        self.max_tilt_deg, self.debounce = max_tilt_deg, debounce
        self.count = 0
        self.last_deg = 0.0

    def update(self, quat: Sequence[float]) -> str | None:
        deg = tilt_deg(quat)
        self.last_deg = deg
        if math.isnan(deg):
            return "IMU orientation is not finite (treated as a fall, not as level)"
        self.count = self.count + 1 if deg > self.max_tilt_deg else 0
        if self.count >= self.debounce:
            return f"tilt {deg:.1f} deg > {self.max_tilt_deg:g} deg for {self.count} cycles"
        return None


class StaleMonitor:
    """C4: the robot's timestamp has not advanced for `max_cycles` cycles while replies still arrive."""

    def __init__(self, max_cycles: int):
        self.max_cycles = max_cycles
        self.last: float | None = None
        self.count = 0

    def update(self, timestamp: float) -> str | None:
        if self.last is not None and timestamp <= self.last:
            self.count += 1
        else:
            self.count = 0
            self.last = timestamp
        if self.count >= self.max_cycles:
            return f"robot timestamp stuck at {self.last:.6f} s for {self.count} cycles"
        return None


class FailureMonitor:
    """T2/D2: K consecutive cycles without a usable reply. One bad cycle is a retry, not a stop."""

    def __init__(self, max_failed: int):
        self.max_failed = max_failed
        self.count = 0

    def ok(self) -> None:
        self.count = 0

    def failed(self, detail: str) -> str | None:
        self.count += 1
        if self.count >= self.max_failed:
            return f"{self.count} consecutive failed cycles (last: {detail})"
        return None


class OverrunMonitor:
    """C5: a single stall is counted and skipped; overruns that persist are a stop."""

    def __init__(self, consecutive: int, window: int, fraction: float):
        self.consecutive, self.fraction = consecutive, fraction
        self.run = 0
        self.recent: deque[bool] = deque(maxlen=window)

    def update(self, overran: bool) -> str | None:
        self.run = self.run + 1 if overran else 0
        self.recent.append(overran)
        if self.run >= self.consecutive:
            return f"{self.run} consecutive overruns"
        full = len(self.recent) == self.recent.maxlen
        if full and sum(self.recent) > self.fraction * len(self.recent):
            return f"{sum(self.recent)} overruns in the last {len(self.recent)} cycles"
        return None


# --------------------------------------------------------------------------- velocity commands (C8)

def clamp_command(command: Sequence[float], ranges: Sequence[tuple[float, float]]) -> np.ndarray:
    """Limit a velocity command to the range the policy was trained on (a policy extrapolates badly)."""
    check_finite("velocity command", command=command)
    lo = np.array([r[0] for r in ranges], dtype=np.float64)
    hi = np.array([r[1] for r in ranges], dtype=np.float64)
    return np.minimum(np.maximum(np.asarray(command, dtype=np.float64), lo), hi)


class CommandWatch:
    """Velocity commands streamed by an operator: the last one counts for `timeout_s`, then zero.

    A fixed command (deploy --command) never goes stale: pass timeout_s=None.
    """

    def __init__(self, initial: Sequence[float], timeout_s: float | None, now: float = 0.0):
        self.command = np.asarray(initial, dtype=np.float64)
        self.timeout_s = timeout_s
        self.received_at = now
        self.timed_out = False

    def update(self, command: Sequence[float], now: float) -> None:
        check_finite("velocity command", command=command)   # a NaN command is dropped, not latched
        self.command = np.asarray(command, dtype=np.float64)
        self.received_at = now
        self.timed_out = False

    def current(self, now: float) -> np.ndarray:
        if self.timeout_s is not None and now - self.received_at > self.timeout_s:
            self.timed_out = True
            return np.zeros_like(self.command)
        return self.command


# --------------------------------------------------------------------------- the latch (C10)

@dataclass(frozen=True)
class Trip:
    cause: str
    detail: str
    t: float
    cycle: int


class SafetyLatch:
    """RUNNING -> SAFE on the first trip, and SAFE stays until reset() is called on purpose.

    Restoring the link, clearing the tilt or releasing the robot's e-stop does not resume
    motion by itself (C10). Later trips are recorded too (they explain what else went wrong).
    """

    def __init__(self) -> None:
        self.trips: list[Trip] = []
        self.resets: list[str] = []
        self.latched_by: Trip | None = None

    @property
    def safe(self) -> bool:
        return self.latched_by is not None

    def trip(self, cause: str, detail: str, t: float = 0.0, cycle: int = -1) -> bool:
        """Latch SAFE; True when this call is the one that latched it."""
        trip = Trip(cause, detail, t, cycle)
        self.trips.append(trip)
        if self.latched_by is None:
            self.latched_by = trip
            return True
        return False

    def reset(self, reason: str) -> None:
        """The explicit operator action that allows motion again; say why, it goes in the log."""
        if not reason:
            raise ValueError("SafetyLatch.reset needs a reason")
        self.resets.append(reason)
        self.latched_by = None


# --------------------------------------------------------------------------- the ordered table

@dataclass(frozen=True)
class Check:
    """One row of the safety pipeline: where it runs, what trips, which fault row it answers."""
    order: str          # "state 1" ... as in docs/safety.md section 2 (a test holds the two together)
    cause: str          # the cause logged when it trips ("" for the filter that only clamps)
    rows: str           # docs/faults.md rows, e.g. "T2, D2"


# The whole pipeline in the order the runtime applies it each cycle; docs/safety.md section 2 is
# this table in words. State checks run in this order through StateChecks; the action checks in
# the loop (non-finite first, then SafetyLayer.filter); the rest where their event happens.
CHECKS: tuple[Check, ...] = (
    Check("state 1", NON_FINITE_STATE, "C1"),
    Check("state 2", JOINT_LIMIT, "C7"),
    Check("state 3", TILT, "C6"),
    Check("state 4", STALE_STATE, "C4"),
    Check("action 1", NON_FINITE_ACTION, "C2"),
    Check("action 2", "", "C3"),
    Check("command", "", "C8"),
    Check("link", LINK_FAILED, "T2, D2"),
    Check("link", LINK_LOST, "T1"),
    Check("device", DEVICE_FAULT, "F9"),
    Check("loop", OVERRUN, "C5"),
    Check("process", SIGNAL, "C9"),
)


class StateChecks:
    """The state rows of CHECKS, run in that order on every STATE: the first that fails trips.

    first_problem(rs) -> (cause, detail) or None; while `starting` (soft start and settle) the tilt
    limit is start_max_tilt_deg, so a robot tipping as it stands up stops before the policy phase.
    preflight(rs) is the check before torque on (joint far outside its limits = a calibration error;
    tilted past the start limit = not standing).
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, names: Sequence[str], config: SafetyConfig,
                 max_tilt_deg: float):
        self.lo, self.hi, self.names, self.config = lo, hi, names, config
        self.limits = JointLimitMonitor(lo, hi, config.joint_limit_margin, names)
        self.tilt = TiltMonitor(max_tilt_deg, config.tilt_debounce)
        self.start_tilt = TiltMonitor(min(config.start_max_tilt_deg, max_tilt_deg), config.tilt_debounce)
        self.stale = StaleMonitor(config.stale_cycles)
        self.starting = True        # soft start and settle: the tighter tilt limit (the runtime clears it)
        run = {NON_FINITE_STATE: state_problem,
               JOINT_LIMIT: lambda rs: self.limits.update(rs.joint_pos),
               TILT: self._tilt,
               STALE_STATE: lambda rs: self.stale.update(rs.timestamp)}
        self.pipeline = tuple((c.cause, run[c.cause]) for c in CHECKS if c.order.startswith("state"))

    def _tilt(self, rs) -> str | None:
        if not self.starting:
            return self.tilt.update(rs.quat)
        detail = self.start_tilt.update(rs.quat)
        self.tilt.last_deg = self.start_tilt.last_deg
        return detail and f"{detail} while standing up (soft start / settle): the policy never took over"

    def handover_problem(self, rs) -> tuple[str, str] | None:
        """Before the first policy call: every joint inside its limits, the body upright and still."""
        if self.limits.unarmed():
            return JOINT_LIMIT, f"{', '.join(self.limits.unarmed())} still outside the limits after the soft start"
        deg, rate = tilt_deg(rs.quat), float(np.linalg.norm(rs.gyro))
        if not (deg <= self.config.handover_max_tilt_deg and rate <= self.config.handover_gyro):
            return TILT, (f"not settled when the policy would take over: tilt {deg:.1f} deg (limit "
                          f"{self.config.handover_max_tilt_deg:g}), body turning at {rate:.2f} rad/s (limit "
                          f"{self.config.handover_gyro:g})")
        return None

    def first_problem(self, rs) -> tuple[str, str] | None:
        for cause, check in self.pipeline:
            detail = check(rs)
            if detail:
                return cause, detail
        return None

    def preflight(self, rs) -> tuple[str, str] | None:
        detail = state_problem(rs)
        if detail:
            return NON_FINITE_STATE, detail
        detail = joint_limit_problem(rs.joint_pos, self.lo, self.hi, self.config.start_limit_margin, self.names)
        if detail:
            return JOINT_LIMIT, f"{detail}: a calibration error? (a limp joint does not fold that far)"
        deg = tilt_deg(rs.quat)
        if not deg <= self.start_tilt.max_tilt_deg:
            return TILT, f"the robot is tilted {deg:.1f} deg (start limit {self.start_tilt.max_tilt_deg:g}): stand it up"
        return None
