"""The deployment runtime: handshake, contract check, soft start, a deadline-timed loop, safe stop.

One cycle (period T, deadlines at start + k*T; a late cycle skips the deadlines it missed
and counts them, it never bursts to catch up):

    read STATE -> checks (safety.py: C1 C7 C6 C4) -> observation (THE shared function)
    -> policy -> non-finite? (C2) -> clamp + change limit -> COMMAND -> log the cycle

Any trip latches SAFE (safety.SafetyLatch) and runs the safe stop: DAMP, a short wait, then
TORQUE off until the robot's reply confirms it, all within stop_timeout_s. If the link is gone
the stop cannot be confirmed; the robot's own watchdog is then what makes it safe, and the
summary says so. Policy output never reaches the wire once SAFE is latched.

Time comes from an injectable clock (clock.py) and the robot from an injectable driver
(driver.Driver), so every fault row runs in unit tests without a port or a sleeping test.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.deploy.clock import Clock, MonotonicClock
from simreal.deploy.driver import (LINK_ERRORS, DeviceFault, Driver, DriverError, JointMismatch, LinkConfig,
                                   LinkLost, PortError, RemoteError)
from simreal.deploy.runlog import RunLogWriter
from simreal.robot.observation import ObservationBuilder, RobotState
from simreal.errors import EXIT_INTERRUPTED, UserError


class StartRefused(UserError, RuntimeError):
    """The run did not start; torque was never enabled. The message says which field or check."""


class CommandError(UserError, ValueError):
    """--command is not vx=NUMBER,yaw=NUMBER with finite numbers (exit 2; still a ValueError)."""


class StartInterrupted(StartRefused):
    """Ctrl-C / SIGTERM before torque on (handshake, pre-flight, the operator prompt): exit 130."""

    exit_code = EXIT_INTERRUPTED


class PolicyLike(Protocol):
    def infer(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------- what the run needs

@dataclass(frozen=True)
class DeployPlan:
    """Everything the runtime takes from the bundle's contract (and the robot spec where tighter)."""
    robot: str
    joint_names: tuple[str, ...]
    default_pose: np.ndarray
    period: float
    joint_min: np.ndarray
    joint_max: np.ndarray
    max_target_rate: float                        # rad/s
    command_ranges: tuple[tuple[float, float], ...]   # per command term: (vx), (yaw)
    default_command: tuple[float, ...]
    max_tilt_deg: float = 60.0

    @property
    def n(self) -> int:
        return len(self.joint_names)

    def max_step(self, period: float) -> float:
        """Per-cycle change limit: max_target_rate * period (C3)."""
        return self.max_target_rate * period


def plan_from_contract(contract: Any, spec: Any = None) -> DeployPlan:
    """The plan from a bundle's contract (simreal.bundle.contract.Contract, or anything with its fields).

    With the robot spec installed here, limits are the tighter of the two: a bundle can narrow
    what robot.yaml allows, never widen it.
    """
    n = len(contract.joint_names)
    lo, hi = np.asarray(contract.joint_min, float), np.asarray(contract.joint_max, float)
    rate, tilt = float(contract.max_target_rate), float(contract.max_tilt_deg)
    if spec is not None and list(spec.joint_names) == list(contract.joint_names):
        lo, hi = np.maximum(lo, spec.joint_min), np.minimum(hi, spec.joint_max)
        rate, tilt = min(rate, spec.control.max_target_rate), min(tilt, spec.task.max_tilt_deg)
    default = np.asarray(contract.default_pose, float)
    for what, arr in (("default_pose", default), ("joint_min", lo), ("joint_max", hi)):
        if arr.shape != (n,):
            raise StartRefused(f"bundle contract field {what} has shape {arr.shape}, expected ({n},)")
    ranges = (tuple(map(float, contract.command_vx)), tuple(map(float, contract.command_yaw)))
    # The default command: the middle of the trained range (the policy is surest there).
    default_cmd = tuple(0.5 * (r[0] + r[1]) for r in ranges)
    return DeployPlan(str(contract.robot), tuple(contract.joint_names), default, float(contract.control_period),
                      lo, hi, rate, ranges, default_cmd, tilt)


def contract_problems(plan: DeployPlan, info: P.Info) -> list[str]:
    """What the robot's INFO contradicts in the bundle, each naming the contract field."""
    problems = []
    if info.robot_name != plan.robot:
        problems.append(f"robot: the bundle is for {plan.robot!r}, the robot says it is {info.robot_name!r}")
    missing = [n for n in plan.joint_names if n not in info.joint_names]
    extra = [n for n in info.joint_names if n not in plan.joint_names]
    if missing or extra:
        problems.append(f"joint_names: the robot lacks {missing} and has {extra} the bundle does not know "
                        f"(robot: {list(info.joint_names)})")
    return problems


@dataclass(frozen=True)
class RuntimeConfig:
    duration_s: float | None = 10.0       # policy phase length; None = until stopped
    period_s: float | None = None         # None = the bundle's control period (--rate overrides)
    soft_start_s: float = 1.0             # ramp to the default pose at rising gains
    soft_start_kp: float = 0.25           # gain scale at the start of the ramp
    settle_s: float = 0.3                 # hold the default pose at full gains before the policy
    damp_s: float = 0.2                   # safe stop: DAMP this long before torque off
    stop_timeout_s: float = 1.0           # the whole safe stop, confirmed or not (+ one transaction)
    relaxed_timeout_s: float = 0.05       # per attempt, for the untimed start and stop transactions
    truth_every: int = 5                  # simulated robots: ground truth every N cycles (0 = ends only)
    handle_signals: bool = True           # SIGINT/SIGTERM -> safe stop (main thread only)
    clear_errors: bool = False            # send CLEAR_ERRORS before start (the explicit reset)
    reset_sim: bool = False               # simulated robots: SIM_RESET to the default pose before pre-flight
    pipelined: bool = False               # one transaction per cycle: observe the previous COMMAND's reply
    transaction_budget_s: float | None = None   # one transaction, retries included; None: 0.4 of the
                                                # period (0.8 pipelined), so a cycle's transactions fit
    safety: S.SafetyConfig = S.SafetyConfig()

    def transaction_budget(self, period: float) -> float:
        """Seconds one transaction may take: both (fresh read + command) or one (pipelined) fit a period."""
        if self.transaction_budget_s is not None:
            return self.transaction_budget_s
        return (0.8 if self.pipelined else 0.4) * period


# --------------------------------------------------------------------------- helpers

def robot_state(s: P.State) -> RobotState:
    """Protocol STATE (host joint order) -> the RobotState the observation function takes."""
    return RobotState(joint_pos=np.asarray(s.q, dtype=np.float64), joint_vel=np.asarray(s.dq, dtype=np.float64),
                      quat=np.asarray(s.quat, dtype=np.float64), gyro=np.asarray(s.gyro, dtype=np.float64),
                      accel=np.asarray(s.accel, dtype=np.float64), timestamp=s.timestamp_us * 1e-6)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _state_record(s: P.State) -> dict:
    return {"ts": s.timestamp_us * 1e-6, "status": s.status, "errors": s.errors, "q": s.q, "dq": s.dq,
            "quat": s.quat, "gyro": s.gyro, "accel": s.accel}


def _error_kind(exc: BaseException) -> str:
    return type(exc).__name__


# --------------------------------------------------------------------------- the runtime

@dataclass
class _Stats:
    starts: list[float] = field(default_factory=list)       # cycle start times (s, clock)
    read_s: list[float] = field(default_factory=list)
    send_s: list[float] = field(default_factory=list)
    infer_s: list[float] = field(default_factory=list)
    overruns: int = 0
    missed_deadlines: int = 0
    failed_cycles: int = 0
    policy_calls: int = 0
    commands_sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Runtime:
    """One deployment run. Build it, call run(), read the summary it returns.

    driver: an unconnected or connected Driver built with host joint_names = plan.joint_names.
    policy: .infer(obs) -> (action, joint_targets); action is what the next observation's
            last_action term holds (as in training), joint_targets are radians.
    commands: the velocity command source (CommandWatch); fixed at plan.default_command if None.
    confirm(info) -> bool: the operator's go-ahead, asked after the checks and before torque on.
    """

    def __init__(self, driver: Driver, policy: PolicyLike, plan: DeployPlan, builder: ObservationBuilder,
                 config: RuntimeConfig = RuntimeConfig(), *, log: RunLogWriter | None = None,
                 clock: Clock | None = None, commands: S.CommandWatch | None = None,
                 on_cycle: Callable[[int, dict], None] | None = None,
                 confirm: Callable[[P.Info], bool] | None = None):
        self.driver, self.policy, self.plan, self.builder = driver, policy, plan, builder
        self.config = config
        self.log = log
        self.clock = clock or MonotonicClock()
        self.period = float(config.period_s or plan.period)
        if not self.period > 0:
            raise ValueError(f"control period must be > 0, got {self.period}")
        self.commands = commands or S.CommandWatch(plan.default_command, None)
        self.on_cycle = on_cycle
        self.confirm = confirm
        self.budget_s = config.transaction_budget(self.period)
        self._reply_state: P.State | None = None
        sc = config.safety
        self.latch = S.SafetyLatch()
        self.layer = S.SafetyLayer(plan.joint_min, plan.joint_max, plan.max_step(self.period))
        self.tilt = S.TiltMonitor(min(sc.max_tilt_deg, plan.max_tilt_deg), sc.tilt_debounce)
        self.limits = S.JointLimitMonitor(plan.joint_min, plan.joint_max, sc.joint_limit_margin, plan.joint_names)
        self.stale = S.StaleMonitor(sc.stale_cycles)
        self.link = S.FailureMonitor(sc.max_failed_cycles)
        self.overrun = S.OverrunMonitor(sc.overrun_consecutive, sc.overrun_window, sc.overrun_fraction)
        self.stats = _Stats()
        self.info: P.Info | None = None
        self.torque_enabled = False
        self.stop_result: dict | None = None
        self.truth_start: P.SimGroundTruth | None = None
        self.truth_end: P.SimGroundTruth | None = None
        self.last_action = np.zeros(plan.n)
        self.t0 = 0.0
        self.cycle = 0
        self.end_reason = ""
        self._signal: str | None = None
        self._interruptible = False       # a signal now raises StartInterrupted (before TORQUE 1 is sent)
        self._policy_slots: tuple[int, int] | None = None    # first and last deadline slot of the policy phase
        self._command_timed_out = False

    # ---- public

    def request_stop(self, why: str = "stop requested") -> None:
        """Thread- and signal-safe: the loop latches SAFE at its next check."""
        self._signal = why

    def reset(self, reason: str) -> None:
        """The explicit reset that allows another run() after a safe stop (C10)."""
        self.latch.reset(reason)
        self._event("reset", reason=reason)

    def run(self) -> dict:
        """Start, run the phases, stop; returns the summary. Raises StartRefused before any torque."""
        if self.latch.safe:
            raise StartRefused(f"SAFE is latched ({self.latch.latched_by.cause}: {self.latch.latched_by.detail}); "
                               "call reset() first")
        with self._signals():
            try:
                self._start()
                self._loop()
            except StartRefused as exc:
                self._event("start_interrupted" if isinstance(exc, StartInterrupted) else "start_refused",
                            reason=str(exc))
                if self.torque_enabled:       # refused after torque (maybe) came on: make it safe anyway
                    self._trip(S.START_REFUSED, str(exc))
                    self._finish()
                raise
            except KeyboardInterrupt:
                self._trip(S.SIGNAL, "KeyboardInterrupt")
            except BaseException as exc:  # noqa: BLE001 - any exception is a safe stop, then re-raised
                self._trip(S.EXCEPTION, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
                self._finish()
                raise
            self._finish()
        return self.summary()

    # ---- start

    @contextlib.contextmanager
    def _relaxed_link(self):
        """Start and stop are not cycle-timed: give their transactions room (a loaded host or a slow
        robot must not turn a handshake or a torque-off into a timeout). Drivers without a
        LinkConfig are left alone."""
        d = self.driver
        cfg = getattr(d, "config", None)
        if not isinstance(cfg, LinkConfig):
            yield
            return
        d.config = dataclasses.replace(cfg, timeout_s=max(cfg.timeout_s, self.config.relaxed_timeout_s),
                                       budget_s=None)
        try:
            yield
        finally:
            d.config = cfg

    def _start(self) -> None:
        self._interruptible = True
        try:
            with self._relaxed_link():
                self._start_inner()
        except KeyboardInterrupt:           # Ctrl-C outside our handler (e.g. a confirm callback)
            if self.torque_enabled:
                raise
            raise StartInterrupted(self._interrupted_message("KeyboardInterrupt")) from None
        finally:
            self._interruptible = False

    def _interrupted_message(self, why: str) -> str:
        return f"interrupted ({why}) before torque on: torque was never on, nothing moved"

    def _check_interrupt(self) -> None:
        if self._signal:
            raise StartInterrupted(self._interrupted_message(self._signal))

    def _start_inner(self) -> None:
        d, cfg = self.driver, self.config
        self.t0 = self.clock.now()
        d.connect()
        try:
            info = d.handshake()
        except JointMismatch as exc:
            raise StartRefused(f"bundle contract field joint_names disagrees with the robot: {exc}") from exc
        except DriverError as exc:
            raise StartRefused(f"handshake failed: {exc}") from exc
        self.info = info
        problems = contract_problems(self.plan, info)
        if problems:
            raise StartRefused("the bundle does not match the robot; torque stays off:\n  " + "\n  ".join(problems))
        self._event("handshake", robot=info.robot_name, joints=list(info.joint_names), firmware=info.firmware,
                    watchdog_ms=info.watchdog_ms, simulated=info.simulated, capabilities=info.capabilities)
        self._check_interrupt()
        if cfg.reset_sim:
            if not info.simulated:
                raise StartRefused(f"--reset-sim is for simulated robots only: robot {info.robot_name!r} "
                                   "is not simulated; torque stays off")
            try:
                d.reset()
            except (DriverError, P.ProtocolError) as exc:
                raise StartRefused(f"--reset-sim: the simulated robot did not reset: {exc}") from exc
            self._event("sim_reset", reason="--reset-sim: default pose, standing")
        try:
            if cfg.clear_errors:
                try:
                    d.clear_errors()
                except RemoteError as exc:
                    raise StartRefused(f"the robot did not clear its errors: {exc}") from exc
                self._event("reset", reason="CLEAR_ERRORS requested (--clear-errors)")
            state = d.read_state()
        except DeviceFault as exc:
            raise StartRefused(f"{exc}; clear the cause, then restart with --clear-errors") from exc
        except LINK_ERRORS as exc:
            raise StartRefused(f"cannot read the robot's state: {exc}") from exc
        rs = robot_state(state)
        preflight = self._state_problem(rs, preflight=True)
        if preflight:
            raise StartRefused(f"pre-flight check failed, torque stays off: {preflight[1]}")
        outside = S.joint_limit_problem(rs.joint_pos, self.plan.joint_min, self.plan.joint_max,
                                        cfg.safety.joint_limit_margin, self.plan.joint_names)
        if outside:      # allowed (a limp joint folds past its limit); the soft start must bring it in
            self._event("start_outside_limits", detail=outside)
        if info.simulated:
            self.truth_start = self._truth_or_none()
        self._check_interrupt()
        if self.confirm is not None and not self.confirm(info):
            self._check_interrupt()
            raise StartRefused("the operator did not confirm the start")
        self._check_interrupt()
        self._interruptible = False       # from here a signal is a safe stop (TORQUE 1 may be on the wire)
        try:
            state = d.enable_torque()
        except RemoteError as exc:        # refused outright (not calibrated, fault latched): torque is off
            raise StartRefused(f"the robot refused torque on: {exc}") from exc
        except (DriverError, P.ProtocolError) as exc:
            self.torque_enabled = True    # the request may have landed with its reply lost: stop it properly
            raise StartRefused(f"torque on was not confirmed: {exc}") from exc
        self.torque_enabled = True
        if not state.torque_on:
            raise StartRefused(f"the robot answered torque on without TORQUE_ON (status {P.Status(state.status)!r})")
        self.layer.start_from(state.q)
        self._q_start = np.asarray(state.q, dtype=np.float64)
        self._event("torque_on", q=state.q)

    # ---- loop

    def _loop(self) -> None:
        """Phases are in deadline slots, so each lasts its wall time even when cycles are skipped."""
        cfg, T = self.config, self.period
        n_soft = max(1, int(round(cfg.soft_start_s / T)))
        n_settle = int(round(cfg.settle_s / T))
        n_total = None if cfg.duration_s is None else n_soft + n_settle + int(round(cfg.duration_s / T))
        start = self.clock.now()
        k = 0          # deadline slot: cycle k is due at start + k*T
        i = 0          # cycles run (k minus the slots skipped)
        while not self.latch.safe:
            if n_total is not None and k >= n_total:
                self.end_reason = "duration"
                break
            deadline = start + k * T
            self.clock.sleep_until(deadline)
            if self._signal:
                self._trip(S.SIGNAL, self._signal)
                break
            phase = "soft_start" if k < n_soft else "settle" if k < n_soft + n_settle else "policy"
            self.cycle = i
            self._cycle(i, k, phase, min(1.0, (k + 1) / n_soft), deadline)
            i += 1
            # Absolute deadlines: the next one is start + (k+1)T; if the work ran past it, skip to the
            # first deadline still ahead (never burst), counting what was missed (C5).
            end = self.clock.now()
            k += 1
            overran = end > start + k * T
            if overran:
                k_next = math.floor((end - start) / T) + 1
                self.stats.overruns += 1
                self.stats.missed_deadlines += k_next - k
                k = k_next
            reason = self.overrun.update(overran)
            if reason and not self.latch.safe:
                self._trip(S.OVERRUN, reason)
        if not self.end_reason:
            self.end_reason = "safe_stop"

    def _cycle(self, i: int, slot: int, phase: str, alpha: float, deadline: float) -> None:
        d, clock, st = self.driver, self.clock, self.stats
        t_start = clock.now()
        st.starts.append(t_start)
        rec: dict[str, Any] = {"k": i, "slot": slot, "t": t_start - self.t0, "phase": phase,
                               "late": t_start - deadline}
        errors: list[str] = []
        timing: dict[str, float] = {}
        rec["errors"], rec["timing"] = errors, timing
        try:
            state, self._reply_state = self._reply_state, None
            if state is None:       # fresh read (always, unless pipelined and the last reply is at hand)
                state = self._transact(d.read_state, "read", errors)
                timing["read"] = clock.now() - t_start
                if state is None:
                    return
                st.read_s.append(timing["read"])
            rec["state"] = _state_record(state)
            rs = robot_state(state)
            problem = self._state_problem(rs)
            rec["tilt_deg"] = self.tilt.last_deg
            if problem:
                self._trip(*problem)
                return
            kp = kd = None
            action = None
            if phase == "policy":
                first = self._policy_slots[0] if self._policy_slots else slot
                self._policy_slots = (first, slot)
                out = self._policy_targets(rs, rec, timing)
                if out is None:
                    return
                action, targets = out
            else:
                targets, gain = self._soft_start_targets(phase, alpha)
                rec["targets"] = targets
                if gain is not None:
                    kp = kd = [gain] * self.plan.n
                    rec["kp_scale"] = gain
            filt = self.layer.filter(targets)
            rec["sent"] = filt.sent
            if filt.clamped:
                rec["clamped"] = filt.clamped
            if filt.rate_limited:
                rec["rate_limited"] = filt.rate_limited
            if self.latch.safe:     # a signal or another thread latched SAFE meanwhile: send nothing
                return
            t2 = clock.now()
            reply = self._transact(lambda: d.send_command(filt.sent, kp, kd, budget_s=self.budget_s), "send",
                                   errors)
            timing["send"] = clock.now() - t2
            if reply is None:
                return
            st.send_s.append(timing["send"])
            st.commands_sent += 1
            rec["reply_status"] = reply.status
            if self.torque_enabled and not reply.torque_on:
                self._trip(S.DEVICE_FAULT, f"the robot turned torque off by itself (status {P.Status(reply.status)!r})")
                return
            self.link.ok()
            if self.config.pipelined:
                self._reply_state = reply
            if action is not None:
                self.last_action = np.asarray(action, dtype=np.float64)
            if self.info is not None and self.info.simulated and self.config.truth_every \
                    and i % self.config.truth_every == 0:
                gt = self._truth_or_none(errors)
                if gt is not None:
                    rec["truth"] = {"pos": gt.base_pos, "vel": gt.base_lin_vel, "fallen": gt.fallen}
        finally:
            timing["work"] = clock.now() - t_start
            if len(st.starts) > 1:
                timing["period"] = st.starts[-1] - st.starts[-2]
            if self.log is not None:
                self.log.cycle(rec)
            if self.on_cycle is not None:
                self.on_cycle(i, rec)

    def _policy_targets(self, rs: RobotState, rec: dict, timing: dict) -> tuple[np.ndarray, np.ndarray] | None:
        """Observation -> policy -> (action, joint targets); None after latching SAFE (nothing to send)."""
        if self.limits.unarmed():
            self._trip(S.JOINT_LIMIT, f"{', '.join(self.limits.unarmed())} still outside the limits after the "
                                      "soft start")
            return None
        t1 = self.clock.now()
        command = self._command(t1)
        rec["command"] = command
        obs = self.builder(rs, self.last_action, command)
        rec["obs"] = obs
        if S.non_finite_fields(obs=obs):   # finite state, non-finite observation: a scale or layout is broken
            self._trip(S.NON_FINITE_STATE, "observation is not finite")
            return None
        self.stats.policy_calls += 1
        action, targets = self.policy.infer(obs)
        timing["infer"] = self.clock.now() - t1
        self.stats.infer_s.append(timing["infer"])
        rec["action"], rec["targets"] = action, targets
        bad = S.non_finite_fields(action=action, targets=targets)
        if bad:     # C2: before any clamp; nothing derived from it is sent
            self._trip(S.NON_FINITE_ACTION, f"policy output not finite: {', '.join(bad)}")
            return None
        return action, targets

    def _soft_start_targets(self, phase: str, alpha: float) -> tuple[np.ndarray, float | None]:
        """Smoothstep from the pose at torque-on to the default pose; gains rising while it moves
        (when the robot honours COMMAND gain scales). Settle holds the default pose at full gains."""
        s = alpha * alpha * (3 - 2 * alpha)
        targets = self._q_start + s * (self.plan.default_pose - self._q_start)
        gain = None
        if phase == "soft_start" and self.info is not None and self.info.capabilities & P.Capability.GAINS:
            gain = self.config.soft_start_kp + (1 - self.config.soft_start_kp) * alpha
        return targets, gain

    def _transact(self, fn: Callable[[], P.State], what: str, errors: list[str]) -> P.State | None:
        """One driver call; link trouble becomes a failed cycle (K in a row -> SAFE) or an immediate trip."""
        try:
            return fn()
        except DeviceFault as exc:
            self.stats.error("DeviceFault")
            errors.append(f"{what}: {exc}")
            self._trip(S.DEVICE_FAULT, str(exc))
        except LinkLost as exc:
            self.stats.error("LinkLost")
            errors.append(f"{what}: {exc}")
            self._trip(S.LINK_LOST, str(exc))
        except LINK_ERRORS as exc:
            kind = _error_kind(exc)
            self.stats.error(kind)
            self.stats.failed_cycles += 1
            errors.append(f"{what}: {kind}: {exc}")
            reason = self.link.failed(f"{what}: {kind}")
            if reason:
                self._trip(S.LINK_FAILED, reason)
        return None

    def _state_problem(self, rs: RobotState, preflight: bool = False) -> tuple[str, str] | None:
        """(cause, detail) of the first check the state fails, in the order of safety.py's docstring."""
        p = self.plan
        detail = S.state_problem(rs)
        if detail:
            return S.NON_FINITE_STATE, detail
        if preflight:
            detail = S.joint_limit_problem(rs.joint_pos, p.joint_min, p.joint_max,
                                           self.config.safety.start_limit_margin, p.joint_names)
            if detail:
                return S.JOINT_LIMIT, f"{detail}: a calibration error? (a limp joint does not fold that far)"
            deg = S.tilt_deg(rs.quat)
            if not deg <= self.tilt.max_tilt_deg:
                return S.TILT, f"the robot is tilted {deg:.1f} deg (limit {self.tilt.max_tilt_deg:g})"
            return None
        detail = self.limits.update(rs.joint_pos)
        if detail:
            return S.JOINT_LIMIT, detail
        detail = self.tilt.update(rs.quat)
        if detail:
            return S.TILT, detail
        detail = self.stale.update(rs.timestamp)
        if detail:
            return S.STALE_STATE, detail
        return None

    def _command(self, now: float) -> np.ndarray:
        cmd = self.commands.current(now)
        if self.commands.timed_out and not self._command_timed_out:
            self._event("command_timeout", after_s=self.commands.timeout_s, command=[0.0] * len(cmd))
        self._command_timed_out = self.commands.timed_out
        return S.clamp_command(cmd, self.plan.command_ranges) if not self.commands.timed_out else cmd

    def _truth_or_none(self, errors: list[str] | None = None) -> P.SimGroundTruth | None:
        try:
            return self.driver.ground_truth()
        except LinkLost as exc:
            self.stats.error("LinkLost")
            if errors is not None:
                errors.append(f"truth: {exc}")
                self._trip(S.LINK_LOST, str(exc))
        except LINK_ERRORS as exc:
            self.stats.error(f"truth:{_error_kind(exc)}")
            if errors is not None:
                errors.append(f"truth: {exc}")
        return None

    # ---- stopping

    def _trip(self, cause: str, detail: str, **extra: Any) -> None:
        t = self.clock.now() - self.t0
        first = self.latch.trip(cause, detail, t, self.cycle)
        self._event("trip", cause=cause, detail=detail, first=first, cycle=self.cycle, **extra)

    def _finish(self) -> None:
        with self._relaxed_link():
            if self.torque_enabled:
                self._safe_stop()
            if self.info is not None and self.info.simulated:
                self.truth_end = self._truth_or_none()
        if self.log is not None:
            self.log.summary(self.summary())

    def _safe_stop(self) -> None:
        """DAMP, wait damp_s, TORQUE off until a reply confirms it; bounded by stop_timeout_s."""
        d, clock, cfg = self.driver, self.clock, self.config
        t_begin = clock.now()
        deadline = t_begin + cfg.stop_timeout_s
        self._event("stopping", cause=self.latch.latched_by.cause if self.latch.latched_by else self.end_reason)
        steps: list[str] = []
        confirmed = False
        lost = False
        try:
            d.damp()
            steps.append("damp")
            clock.sleep_until(min(clock.now() + cfg.damp_s, deadline))
        except LinkLost as exc:
            lost = True
            steps.append(f"damp failed: {exc}")
        except (DriverError, P.ProtocolError) as exc:
            steps.append(f"damp failed: {_error_kind(exc)}: {exc}")
        attempts = 0
        while not lost and not confirmed and (attempts == 0 or clock.now() < deadline):
            attempts += 1
            try:
                reply = d.disable_torque()
                confirmed = not reply.torque_on
                steps.append("torque off confirmed" if confirmed else
                             f"torque off not confirmed (status {reply.status:#x})")
            except LinkLost as exc:
                lost = True
                steps.append(f"torque off failed: {exc}")
            except (DriverError, P.ProtocolError) as exc:
                steps.append(f"torque off failed: {_error_kind(exc)}: {exc}")
            if not confirmed:   # pace the retries: one per period, not a storm
                clock.sleep_until(min(clock.now() + self.period, deadline))
        elapsed = clock.now() - t_begin
        if confirmed:
            self.torque_enabled = False
        watchdog = self.info.watchdog_ms if self.info is not None else 0
        note = "" if confirmed else (f"not confirmed: the robot's watchdog ({watchdog} ms) must make it safe"
                                     if watchdog else "not confirmed and the robot declares no watchdog")
        cause = self.latch.latched_by.cause if self.latch.latched_by else self.end_reason or "end"
        self.stop_result = {"cause": cause, "confirmed": confirmed, "time_s": elapsed, "steps": steps,
                            "note": note}
        self._event("safe_stop" if self.latch.safe else "stop", **self.stop_result)

    def _event(self, kind: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.event(kind, t=self.clock.now() - self.t0, **fields)

    # ---- signals

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """Before TORQUE 1 goes out: abort the start at once (a prompt's input() included); after: a
        request for the safe stop, taken at the loop's next check."""
        name = signal.Signals(signum).name
        self.request_stop(name)
        if self._interruptible and not self.torque_enabled:
            self._interruptible = False
            raise StartInterrupted(self._interrupted_message(name))

    def _signals(self):
        runtime = self

        class _Ctx:
            def __enter__(self):
                self.old = {}
                if runtime.config.handle_signals and threading.current_thread() is threading.main_thread():
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        self.old[sig] = signal.signal(sig, runtime._on_signal)

            def __exit__(self, *exc):
                for sig, handler in self.old.items():
                    signal.signal(sig, handler)

        return _Ctx()

    # ---- summary

    def summary(self) -> dict:
        st = self.stats
        periods = np.diff(st.starts).tolist() if len(st.starts) > 1 else []
        ms = lambda v: None if v is None else round(v * 1e3, 4)    # noqa: E731
        counters = self.driver.counters.as_dict() if getattr(self.driver, "counters", None) else {}
        out: dict[str, Any] = {
            "robot": self.plan.robot,
            "cycles": len(st.starts),
            "period_nominal_ms": ms(self.period),
            "period_ms": {"p50": ms(percentile(periods, 50)), "p99": ms(percentile(periods, 99)),
                          "max": ms(max(periods) if periods else None)},
            "read_ms": {"p50": ms(percentile(st.read_s, 50)), "p99": ms(percentile(st.read_s, 99))},
            "send_ms": {"p50": ms(percentile(st.send_s, 50)), "p99": ms(percentile(st.send_s, 99))},
            "infer_ms": {"p50": ms(percentile(st.infer_s, 50)), "p99": ms(percentile(st.infer_s, 99))},
            "overruns": st.overruns,
            "missed_deadlines": st.missed_deadlines,
            "failed_cycles": st.failed_cycles,
            "retries": counters.get("retries", 0),
            "errors": dict(st.errors),
            "policy_calls": st.policy_calls,
            "commands_sent": st.commands_sent,
            "end": self.end_reason,
            "policy_s": (round((self._policy_slots[1] - self._policy_slots[0] + 1) * self.period, 4)
                         if self._policy_slots else 0.0),
            "safe_stops": [{"cause": t.cause, "detail": t.detail, "t": round(t.t, 4), "cycle": t.cycle}
                           for t in self.latch.trips],
            "stop": self.stop_result,
            "link": counters,
        }
        if self.truth_start is not None and self.truth_end is not None:
            p0, p1 = np.asarray(self.truth_start.base_pos), np.asarray(self.truth_end.base_pos)
            out["distance_m"] = round(float(np.hypot(*(p1 - p0)[:2])), 4)
            out["forward_m"] = round(float(p1[0] - p0[0]), 4)
            out["fallen"] = bool(self.truth_end.fallen)
        return out


def format_summary(s: dict) -> str:
    """The human summary printed at the end of a run."""
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} ms"

    pm = s["period_ms"]
    lines = [f"robot {s['robot']}: {s['cycles']} cycles, ended by {s['end'] or '?'}",
             f"period (nominal {s['period_nominal_ms']:g} ms): p50 {ms(pm['p50'])}, p99 {ms(pm['p99'])}, "
             f"max {ms(pm['max'])}",
             f"round trip: read p50 {ms(s['read_ms']['p50'])}, command p50 {ms(s['send_ms']['p50'])}; "
             f"inference p50 {ms(s['infer_ms']['p50'])}",
             f"overruns {s['overruns']} (missed deadlines {s['missed_deadlines']}), failed cycles "
             f"{s['failed_cycles']}, retries {s['retries']}",
             "errors: " + (", ".join(f"{k} {v}" for k, v in sorted(s["errors"].items())) or "none")]
    if s["safe_stops"]:
        lines.append("safe stops: " + "; ".join(f"{t['cause']} at cycle {t['cycle']} ({t['detail']})"
                                                for t in s["safe_stops"]))
    else:
        lines.append("safe stops: none")
    stop = s.get("stop")
    if stop:
        lines.append(f"stop: {'torque off confirmed' if stop['confirmed'] else 'NOT confirmed'} in "
                     f"{stop['time_s'] * 1e3:.0f} ms" + (f" ({stop['note']})" if stop.get("note") else ""))
    if "distance_m" in s:
        lines.append(f"distance walked (mock ground truth): {s['distance_m']:.3f} m "
                     f"(forward {s['forward_m']:+.3f} m){', FELL' if s['fallen'] else ''}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- wiring: bundle + port -> run

def parse_command(text: str | None, plan: DeployPlan) -> tuple[float, float]:
    """'vx=0.4,yaw=0.1' (either key optional) -> (vx, yaw); missing keys take the plan's default."""
    from simreal.robot.command import parse_command as parse

    try:
        return parse(text, plan.default_command)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def stream_commands(watch: S.CommandWatch, clock: Clock, lines) -> threading.Thread:
    """Feed 'VX [YAW]' lines (stdin) into the watch from a daemon thread; bad lines are ignored."""
    def pump() -> None:
        for line in lines:
            parts = line.split()
            try:
                vals = [float(p) for p in parts[:2]]
                watch.update((vals + [0.0])[:2], clock.now())
            except (ValueError, IndexError, S.NonFiniteError):
                continue

    th = threading.Thread(target=pump, name="command-stream", daemon=True)
    th.start()
    return th


@contextlib.contextmanager
def raised_priority(pid: int = 0, fifo_priority: int = 20, nice: int = -10):
    """Best effort, for the run only: real-time scheduling (SCHED_FIFO) for a control process, else a
    lower nice value; yields what was obtained (for the log) and restores the old setting after.

    A control loop on a busy host misses deadlines because it waits for a CPU, not because it is
    slow; this is the usual cure. Needs root or CAP_SYS_NICE; without them nothing changes. The
    loop sleeps between cycles, and Linux keeps 5% of each second for other tasks regardless.
    """
    import os

    restore: Callable[[], None] | None = None
    got = "unchanged"
    try:
        old_policy, old_param = os.sched_getscheduler(pid), os.sched_getparam(pid)
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(fifo_priority))
        got = f"SCHED_FIFO {fifo_priority}"
        restore = lambda: os.sched_setscheduler(pid, old_policy, old_param)   # noqa: E731
    except (AttributeError, OSError):
        try:
            old_nice = os.getpriority(os.PRIO_PROCESS, pid)
            os.setpriority(os.PRIO_PROCESS, pid, nice)
            got = f"nice {nice}"
            restore = lambda: os.setpriority(os.PRIO_PROCESS, pid, old_nice)   # noqa: E731
        except (AttributeError, OSError) as exc:
            got = f"unchanged ({type(exc).__name__})"
    try:
        yield got
    finally:
        if restore is not None:
            try:
                restore()
            except OSError:       # the process is gone, or we may not lower it back: nothing to undo
                pass


def default_log_path(robot: str) -> str:
    import time as _time

    return f"runs/deploy/{robot}-{_time.strftime('%Y%m%d-%H%M%S')}.jsonl"


def check_arguments(duration_s: float | None, rate_hz: float | None, cfg: RuntimeConfig) -> None:
    """Refuse numbers no run can use (NaN, infinite, negative), naming the flag: before anything is opened."""
    def finite(v: Any) -> bool:
        try:
            return math.isfinite(float(v))
        except (TypeError, ValueError):
            return False

    checks = [("--duration", duration_s, duration_s is None or (finite(duration_s) and duration_s >= 0), ">= 0"),
              ("--rate", rate_hz, rate_hz is None or (finite(rate_hz) and rate_hz > 0), "> 0"),
              ("--soft-start", cfg.soft_start_s, finite(cfg.soft_start_s) and cfg.soft_start_s > 0, "> 0"),
              ("--command-timeout", cfg.safety.command_timeout_s,
               cfg.safety.command_timeout_s is None or (finite(cfg.safety.command_timeout_s)
                                                        and cfg.safety.command_timeout_s > 0), "> 0"),
              ("--truth-every", cfg.truth_every, isinstance(cfg.truth_every, int) and cfg.truth_every >= 0, ">= 0"),
              ("control period", cfg.period_s, cfg.period_s is None or (finite(cfg.period_s) and cfg.period_s > 0),
               "> 0")]
    for flag, value, ok, want in checks:
        if not ok:
            raise StartRefused(f"{flag} must be a finite number {want}, got {value!r}; torque stays off")


def check_log_path(path: str | Path) -> Path:
    """The run log can be written: the file (if it exists) is a writable file, and its folder exists
    and is writable or can be created below a writable one. Leaves nothing behind.

    Writability is probed for real (an unnamed temporary file in the nearest existing folder):
    os.access says yes to root for folders nobody can create files in (/proc, read-only mounts)."""
    import tempfile

    p = Path(path)
    if p.is_dir():
        raise StartRefused(f"--log {p}: is a folder, not a file; torque stays off")
    if p.exists():
        try:
            with open(p, "a"):
                pass
        except OSError as exc:
            raise StartRefused(f"--log {p}: not writable ({exc.strerror or exc}); torque stays off") from None
        return p
    probe = p.parent if str(p.parent) else Path(".")
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise StartRefused(f"--log {p}: cannot create its folder ({probe} is not a folder); torque stays off")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise StartRefused(f"--log {p}: cannot write in {probe} ({exc.strerror or exc}); "
                           "torque stays off") from None
    return p


def deploy(bundle: str, port: str, *, duration_s: float | None = 10.0, rate_hz: float | None = None,
           log_path: str | None = None, command: str | None = None, command_stream=None,
           config: RuntimeConfig | None = None, allow_hash_mismatch: bool = False, backend: str = "auto",
           confirm: Callable[[P.Info], bool] | None = None, link: Any = None,
           policy_wrapper: Callable[[PolicyLike], PolicyLike] | None = None,
           on_cycle: Callable[[int, dict], None] | None = None, realtime: bool = False,
           notify: Callable[[str], None] = lambda s: None) -> tuple[dict, str]:
    """Load BUNDLE, talk to PORT, run; returns (summary, log path). Raises StartRefused / BundleError.

    link: a driver.LinkConfig (default: robot.yaml's serial settings, budget from the period);
    policy_wrapper / on_cycle: hooks for tests (wrap the loaded policy; see each logged cycle);
    realtime: raise this process's scheduling priority for the run (raise_priority).
    """
    import dataclasses as _dc

    from simreal.deploy.driver import LinkConfig, SerialDriver
    from simreal.bundle.policy import Policy
    from simreal.robot.spec import RobotSpecError, load_robot

    # 1. arguments, then the bundle: nothing is opened yet
    cfg = config or RuntimeConfig()
    check_arguments(duration_s, rate_hz, cfg)
    cfg = _dc.replace(cfg, duration_s=duration_s, period_s=(1.0 / rate_hz) if rate_hz else cfg.period_s)
    policy = Policy.load(bundle, allow_hash_mismatch=allow_hash_mismatch, backend=backend)
    for w in policy.warnings:
        notify(f"warning: {w}")
    spec = None
    try:
        spec = load_robot(policy.contract.robot, check_mjcf=False)
    except RobotSpecError as exc:       # installed but broken: its limits cannot be trusted, so no run
        raise StartRefused(f"robot {policy.contract.robot!r} is installed here but its description is "
                           f"broken ({exc}); fix it, torque stays off") from None
    except KeyError:                    # UnknownRobot: not installed here
        notify(f"robot {policy.contract.robot!r} is not installed here: limits come from the bundle alone")
    plan = plan_from_contract(policy.contract, spec)
    period = cfg.period_s or plan.period
    if abs(period - plan.period) > 1e-9:
        notify(f"warning: running at {1 / period:g} Hz; the policy was trained at {1 / plan.period:g} Hz")
    vx, yaw = parse_command(command, plan)
    clamped = S.clamp_command((vx, yaw), plan.command_ranges)
    if tuple(clamped) != (vx, yaw):
        notify(f"warning: command ({vx:g}, {yaw:g}) is outside the trained range {plan.command_ranges}; "
               f"using ({clamped[0]:g}, {clamped[1]:g})")
    budget = cfg.transaction_budget(period)
    serial_timeout = spec.serial.timeout if spec is not None else budget
    baud = spec.serial.baudrate if spec is not None else 1_000_000
    link = link or LinkConfig(baudrate=baud, timeout_s=min(serial_timeout, budget), retries=2, budget_s=budget)
    # 2. the log can be written (created only once the port is open)
    log_path = str(log_path or default_log_path(plan.robot))
    check_log_path(log_path)
    # 3. the port
    driver = SerialDriver(port, joint_names=plan.joint_names, config=link)
    try:
        driver.connect()
    except PortError as exc:
        raise StartRefused(f"{exc}; torque stays off") from None
    try:
        return _deploy_on(driver, policy, plan, cfg, bundle=bundle, port=port, log_path=log_path, link=link,
                          command=(vx, yaw), clamped=tuple(map(float, clamped)), command_stream=command_stream,
                          period=period, confirm=confirm,
                          policy_wrapper=policy_wrapper, on_cycle=on_cycle, realtime=realtime)
    finally:
        driver.close()


def _deploy_on(driver: Any, policy: Any, plan: DeployPlan, cfg: RuntimeConfig, *, bundle: str, port: str,
               log_path: str, link: Any, command: tuple[float, float], clamped: tuple[float, ...],
               command_stream, period: float,
               confirm, policy_wrapper, on_cycle, realtime: bool) -> tuple[dict, str]:
    """deploy() once the port is open: the run log, then the Runtime."""
    import dataclasses as _dc
    import platform
    import time as _time

    vx, yaw = command
    clock = MonotonicClock()
    watch = S.CommandWatch((vx, yaw), cfg.safety.command_timeout_s if command_stream is not None else None,
                           now=clock.now())
    if command_stream is not None:
        stream_commands(watch, clock, command_stream)
    # Warm the inference session up before anything moves: the first call allocates.
    for _ in range(3):
        policy.infer(np.zeros(policy.obs_dim, np.float32))
    header = {"robot": plan.robot, "bundle": str(bundle), "port": port, "joint_names": plan.joint_names,
              "period": period, "bundle_period": plan.period, "default_pose": plan.default_pose,
              "joint_min": plan.joint_min, "joint_max": plan.joint_max, "max_target_rate": plan.max_target_rate,
              "max_tilt_deg": plan.max_tilt_deg, "command": [vx, yaw], "command_stream": command_stream is not None,
              "config": {k: v for k, v in _dc.asdict(cfg).items() if k != "safety"},
              "safety": _dc.asdict(cfg.safety), "link": _dc.asdict(link), "backend": policy.backend_name,
              "training": {"algo": policy.contract.training.algo, "timesteps": policy.contract.training.timesteps},
              "started": _time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
              "python": platform.python_version()}
    try:
        log = RunLogWriter(log_path, header)
    except OSError as exc:
        raise StartRefused(f"--log {log_path}: {exc.strerror or exc}; torque stays off") from None
    stack = contextlib.ExitStack()
    priority = "unchanged"
    try:
        priority = stack.enter_context(raised_priority()) if realtime else "unchanged"
        log.event("priority", got=priority)
        acting = policy_wrapper(policy) if policy_wrapper is not None else policy
        rt = Runtime(driver, acting, plan, policy.observation_builder(), cfg, log=log, clock=clock,
                     commands=watch, confirm=confirm, on_cycle=on_cycle)
        summary = rt.run()
    finally:
        stack.close()
        driver.close()
        log.close()
    summary["log"] = log_path
    summary["priority"] = priority
    summary["command"] = list(clamped)      # what the policy was asked for (a stream: its first value)
    return summary, log_path
