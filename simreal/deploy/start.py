"""The start sequence: everything between an opened port and a robot holding torque.

connect -> handshake (INFO: robot, joints, firmware, watchdog) -> the bundle's contract against
INFO -> --reset-sim (simulated robots only) -> --clear-errors -> first STATE -> pre-flight
(finite, joints not far outside their limits) -> at rest (STATE reads over rest_window_s show no
joint or body motion, waiting up to rest_wait_s; skipped after --reset-sim) -> standing (tilt
within start_max_tilt_deg) -> the operator's confirmation ->
TORQUE 1, confirmed by the reply. Any refusal before TORQUE 1 is a StartRefused with torque never
on; a signal before it is a StartInterrupted (exit 130), after it a safe stop.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.deploy.driver import LINK_ERRORS, DeviceFault, DriverError, JointMismatch, LinkConfig, RemoteError
from simreal.deploy.plan import StartInterrupted, StartRefused, contract_problems, robot_state

if TYPE_CHECKING:
    from simreal.deploy.runtime import Runtime


@contextlib.contextmanager
def relaxed_link(rt: Runtime):
    """Start and stop are not cycle-timed: give their transactions room (a loaded host or a slow
    robot must not turn a handshake or a torque-off into a timeout). Drivers without a
    LinkConfig are left alone."""
    d = rt.driver
    cfg = getattr(d, "config", None)
    if not isinstance(cfg, LinkConfig):
        yield
        return
    d.config = dataclasses.replace(cfg, timeout_s=max(cfg.timeout_s, rt.config.relaxed_timeout_s), budget_s=None)
    try:
        yield
    finally:
        d.config = cfg


def interrupted_message(why: str) -> str:
    return f"interrupted ({why}) before torque on: torque was never on, nothing moved"


def check_interrupt(rt: Runtime) -> None:
    if rt.stop_requested:
        raise StartInterrupted(interrupted_message(rt.stop_requested))


def start(rt: Runtime) -> None:
    """Run the start sequence on `rt`; afterwards torque is on and rt.layer starts from the pose."""
    rt.interruptible = True
    try:
        with relaxed_link(rt):
            _handshake_to_torque(rt)
    except KeyboardInterrupt:           # Ctrl-C outside our handler (e.g. a confirm callback)
        if rt.torque_enabled:
            raise
        raise StartInterrupted(interrupted_message("KeyboardInterrupt")) from None
    finally:
        rt.interruptible = False


def _wait_for_rest(rt: Runtime, state: P.State) -> P.State:
    """Read STATE once a period until the last rest_window_s of reads show the robot at rest (a
    limp robot still folding, or sagging after a previous run's stop, is not); StartRefused after
    rest_wait_s. Returns the last state read. A simulated robot whose clock stands still between
    reads (the lockstep mock moves only on COMMAND) cannot be watched: skipped, and logged."""
    d, sc, clock = rt.driver, rt.config.safety, rt.clock
    n = max(2, int(round(sc.rest_window_s / rt.period)) + 1)
    window: collections.deque[P.State] = collections.deque([state], maxlen=n)
    t_begin = clock.now()
    problem = "not enough reads yet"
    while True:
        if len(window) == n:
            t = [w.timestamp_us * 1e-6 for w in window]       # the robot's clock: motion is in its time
            if t[-1] <= t[0]:
                if not rt.info.simulated:
                    raise StartRefused(f"the robot's timestamp did not advance over {n} reads (stale state); "
                                       "torque stays off")
                rt.event("at_rest", skipped="the simulated robot's clock stands still between reads (lockstep)")
                return window[-1]
            q = np.array([w.q for w in window], dtype=np.float64)
            gyro = np.array([w.gyro for w in window], dtype=np.float64)
            problem = S.rest_problem(t, q, gyro, rt.plan.joint_names, sc.rest_joint_speed, sc.rest_gyro)
            if problem is None:
                rt.event("at_rest", waited_s=round(clock.now() - t_begin, 4))
                return window[-1]
        if clock.now() - t_begin >= sc.rest_wait_s:
            raise StartRefused(f"the robot is not at rest after {sc.rest_wait_s:g} s ({problem}): let it "
                               "come to rest or stand it up, then start again; torque stays off")
        check_interrupt(rt)
        clock.sleep_until(clock.now() + rt.period)
        try:
            state = d.read_state()
        except DeviceFault as exc:
            raise StartRefused(f"{exc}; clear the cause, then restart with --clear-errors") from exc
        except LINK_ERRORS as exc:
            raise StartRefused(f"cannot read the robot's state: {exc}") from exc
        bad = S.state_problem(robot_state(state))
        if bad:
            raise StartRefused(f"pre-flight check failed, torque stays off: {bad}")
        window.append(state)


def _handshake_to_torque(rt: Runtime) -> None:
    d, cfg = rt.driver, rt.config
    rt.t0 = rt.clock.now()
    d.connect()
    try:
        info = d.handshake()
    except JointMismatch as exc:
        raise StartRefused(f"bundle contract field joint_names disagrees with the robot: {exc}") from exc
    except DriverError as exc:
        raise StartRefused(f"handshake failed: {exc}") from exc
    rt.info = info
    problems = contract_problems(rt.plan, info)
    if problems:
        raise StartRefused("the bundle does not match the robot; torque stays off:\n  " + "\n  ".join(problems))
    rt.event("handshake", robot=info.robot_name, joints=list(info.joint_names), firmware=info.firmware,
             watchdog_ms=info.watchdog_ms, simulated=info.simulated, capabilities=info.capabilities)
    check_interrupt(rt)
    if cfg.reset_sim:
        if not info.simulated:
            raise StartRefused(f"--reset-sim is for simulated robots only: robot {info.robot_name!r} "
                               "is not simulated; torque stays off")
        try:
            d.reset()
        except (DriverError, P.ProtocolError) as exc:
            raise StartRefused(f"--reset-sim: the simulated robot did not reset: {exc}") from exc
        rt.event("sim_reset", reason="--reset-sim: default pose, standing")
    try:
        if cfg.clear_errors:
            try:
                d.clear_errors()
            except RemoteError as exc:
                raise StartRefused(f"the robot did not clear its errors: {exc}") from exc
            rt.event("reset", reason="CLEAR_ERRORS requested (--clear-errors)")
        state = d.read_state()
    except DeviceFault as exc:
        raise StartRefused(f"{exc}; clear the cause, then restart with --clear-errors") from exc
    except LINK_ERRORS as exc:
        raise StartRefused(f"cannot read the robot's state: {exc}") from exc
    rs = robot_state(state)
    preflight = rt.checks.preflight(rs)
    if preflight and preflight[0] != S.TILT:      # tilt is judged once the robot is at rest
        raise StartRefused(f"pre-flight check failed, torque stays off: {preflight[1]}")
    if cfg.reset_sim:       # the mock just placed it at rest at the default pose (a held robot)
        rt.event("at_rest", skipped="--reset-sim placed the robot")
    else:
        state = _wait_for_rest(rt, state)
        rs = robot_state(state)
        preflight = rt.checks.preflight(rs)
    if preflight:
        raise StartRefused(f"pre-flight check failed, torque stays off: {preflight[1]}")
    outside = S.joint_limit_problem(rs.joint_pos, rt.plan.joint_min, rt.plan.joint_max,
                                    cfg.safety.joint_limit_margin, rt.plan.joint_names)
    if outside:      # allowed (a limp joint folds past its limit); the soft start must bring it in
        rt.event("start_outside_limits", detail=outside)
    if info.simulated:
        rt.truth_start = rt.ground_truth()
    check_interrupt(rt)
    if rt.confirm is not None and not rt.confirm(info):
        check_interrupt(rt)
        raise StartRefused("the operator did not confirm the start")
    check_interrupt(rt)
    rt.interruptible = False          # from here a signal is a safe stop (TORQUE 1 may be on the wire)
    try:
        state = d.enable_torque()
    except RemoteError as exc:        # refused outright (not calibrated, fault latched): torque is off
        raise StartRefused(f"the robot refused torque on: {exc}") from exc
    except (DriverError, P.ProtocolError) as exc:
        rt.torque_enabled = True      # the request may have landed with its reply lost: stop it properly
        raise StartRefused(f"torque on was not confirmed: {exc}") from exc
    rt.torque_enabled = True
    if not state.torque_on:
        raise StartRefused(f"the robot answered torque on without TORQUE_ON (status {P.Status(state.status)!r})")
    rt.layer.start_from(state.q)
    rt.q_start = np.asarray(state.q, dtype=np.float64)
    rt.event("torque_on", q=state.q)
