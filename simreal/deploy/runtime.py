"""The deployment runtime: one run from handshake to confirmed stop, behind the safety layer.

    start.py    handshake, contract check, pre-flight, confirmation, torque on
    loop.py     the deadline loop: soft start, settle, policy; one cycle per period
    safety.py   the ordered table of checks (CHECKS), the monitors, the latch
    stop.py     the safe stop: DAMP, wait, TORQUE 0 until confirmed, bounded in time
    summary.py  timing, counters, stops, distance walked

Runtime holds the run's state and ties these together. Any trip latches SAFE (safety.SafetyLatch)
and runs the safe stop; policy output never reaches the wire once SAFE is latched. Time comes from
an injectable clock (clock.py) and the robot from an injectable driver (driver.Driver), so every
fault row runs in unit tests without a port or a sleeping test. session.deploy() wires a bundle
and a port to a Runtime.
"""
from __future__ import annotations

import signal
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.deploy.clock import Clock, MonotonicClock
from simreal.deploy.driver import LINK_ERRORS, Driver, LinkLost
from simreal.deploy.loop import run_loop
from simreal.deploy.plan import DeployPlan, PolicyLike, RuntimeConfig, StartInterrupted, StartRefused
from simreal.deploy.runlog import RunLogWriter
from simreal.deploy.start import interrupted_message, relaxed_link, start
from simreal.deploy.stop import safe_stop
from simreal.deploy.summary import summarize
from simreal.robot.heading import START, HeadingHold
from simreal.robot.observation import ObservationBuilder


@dataclass
class RunStats:
    starts: list[float] = field(default_factory=list)       # cycle start times (s, clock)
    read_s: list[float] = field(default_factory=list)
    send_s: list[float] = field(default_factory=list)
    infer_s: list[float] = field(default_factory=list)
    overruns: int = 0
    missed_deadlines: int = 0
    failed_cycles: int = 0
    policy_calls: int = 0
    commands_sent: int = 0
    rate_limited: int = 0        # policy cycles the change limit held back (the env trains with it)
    clamped: int = 0             # policy cycles clipped to the joint limits
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
        sc = config.safety
        self.latch = S.SafetyLatch()
        self.layer = S.SafetyLayer(plan.joint_min, plan.joint_max, plan.max_step(self.period))
        self.checks = S.StateChecks(plan.joint_min, plan.joint_max, plan.joint_names, sc,
                                    min(sc.max_tilt_deg, plan.max_tilt_deg))
        self.link = S.FailureMonitor(sc.max_failed_cycles)
        self.overrun = S.OverrunMonitor(sc.overrun_consecutive, sc.overrun_window, sc.overrun_fraction)
        self.stats = RunStats()
        self.info: P.Info | None = None
        self.torque_enabled = False
        self.stop_result: dict | None = None
        self.truth_start: P.SimGroundTruth | None = None
        self.truth_end: P.SimGroundTruth | None = None
        self.last_action = np.zeros(plan.n)
        self.q_start = np.asarray(plan.default_pose, dtype=np.float64)   # the pose at torque on
        self.t0 = 0.0
        self.cycle = 0
        self.end_reason = ""
        self.stop_requested: str | None = None    # set by a signal or another thread
        self.interruptible = False        # a signal now raises StartInterrupted (before TORQUE 1 is sent)
        self.policy_slots: tuple[int, int] | None = None    # first and last deadline slot of the policy phase
        self.reply_state: P.State | None = None             # pipelined: the last COMMAND's reply
        self.command_timed_out = False
        gain = plan.heading_hold if config.heading_hold is None else config.heading_hold
        self.heading_hold = HeadingHold(gain, plan.command_ranges[1], self.period)
        self.heading_ref = START              # the heading the hold steers to (set at the first policy cycle)

    # ---- public

    def request_stop(self, why: str = "stop requested") -> None:
        """Thread- and signal-safe: the loop latches SAFE at its next check."""
        self.stop_requested = why

    def reset(self, reason: str) -> None:
        """The explicit reset that allows another run() after a safe stop (C10)."""
        self.latch.reset(reason)
        self.event("reset", reason=reason)

    def run(self) -> dict:
        """Start, run the phases, stop; returns the summary. Raises StartRefused before any torque."""
        if self.latch.safe:
            raise StartRefused(f"SAFE is latched ({self.latch.latched_by.cause}: {self.latch.latched_by.detail}); "
                               "call reset() first")
        with self._signals():
            try:
                start(self)
                run_loop(self)
            except StartRefused as exc:
                self.event("start_interrupted" if isinstance(exc, StartInterrupted) else "start_refused",
                           reason=str(exc))
                if self.torque_enabled:       # refused after torque (maybe) came on: make it safe anyway
                    self.trip(S.START_REFUSED, str(exc))
                    self._finish()
                raise
            except KeyboardInterrupt:
                self.trip(S.SIGNAL, "KeyboardInterrupt")
            except BaseException as exc:  # noqa: BLE001 - any exception is a safe stop, then re-raised
                self.trip(S.EXCEPTION, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
                self._finish()
                raise
            self._finish()
        return self.summary()

    def summary(self) -> dict:
        return summarize(self)

    # ---- used by start, loop and stop

    def trip(self, cause: str, detail: str, **extra: Any) -> None:
        """Latch SAFE (the first trip wins; later ones are recorded) and log it."""
        t = self.clock.now() - self.t0
        first = self.latch.trip(cause, detail, t, self.cycle)
        self.event("trip", cause=cause, detail=detail, first=first, cycle=self.cycle, **extra)

    def event(self, kind: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.event(kind, t=self.clock.now() - self.t0, **fields)

    def ground_truth(self, errors: list[str] | None = None) -> P.SimGroundTruth | None:
        """Simulated robots' ground truth, or None. With `errors` (inside a cycle) a lost link trips."""
        try:
            return self.driver.ground_truth()
        except LinkLost as exc:
            self.stats.error("LinkLost")
            if errors is not None:
                errors.append(f"truth: {exc}")
                self.trip(S.LINK_LOST, str(exc))
        except LINK_ERRORS as exc:
            self.stats.error(f"truth:{type(exc).__name__}")
            if errors is not None:
                errors.append(f"truth: {exc}")
        return None

    # ---- the end

    def _finish(self) -> None:
        with relaxed_link(self):
            if self.torque_enabled:
                self.stop_result = safe_stop(self)
            if self.info is not None and self.info.simulated:
                self.truth_end = self.ground_truth()
        if self.log is not None:
            self.log.summary(self.summary())

    # ---- signals

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """Before TORQUE 1 goes out: abort the start at once (a prompt's input() included); after: a
        request for the safe stop, taken at the loop's next check."""
        name = signal.Signals(signum).name
        self.request_stop(name)
        if self.interruptible and not self.torque_enabled:
            self.interruptible = False
            raise StartInterrupted(interrupted_message(name))

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
