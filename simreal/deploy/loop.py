"""The deadline loop: soft start, settle, then the policy, one cycle per period.

Cycle k is due at start + k*T (absolute deadlines). A cycle that runs past the next deadline
skips the deadlines it missed and counts an overrun (C5); it never bursts to catch up. Phases
are counted in deadline slots, so each lasts its wall time even when cycles are skipped.

    read STATE -> StateChecks (C1 C7 C6 C4) -> observation (THE shared function)
    -> policy -> non-finite? (C2) -> SafetyLayer: clamp + change limit (C3) -> COMMAND -> log
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.deploy.driver import LINK_ERRORS, DeviceFault, LinkLost
from simreal.deploy.plan import robot_state
from simreal.robot.observation import RobotState, heading_of

if TYPE_CHECKING:
    from simreal.deploy.runtime import Runtime


def run_loop(rt: Runtime) -> None:
    cfg, T = rt.config, rt.period
    ramp = start_ramp(rt.q_start, cfg.standup, rt.plan.default_pose, cfg.soft_start_s, T)
    n_soft = len(ramp)
    n_settle = int(round(cfg.settle_s / T))
    n_total = None if cfg.duration_s is None else n_soft + n_settle + int(round(cfg.duration_s / T))
    start = rt.clock.now()
    k = 0          # deadline slot: cycle k is due at start + k*T
    i = 0          # cycles run (k minus the slots skipped)
    while not rt.latch.safe:
        if n_total is not None and k >= n_total:
            rt.end_reason = "duration"
            break
        deadline = start + k * T
        rt.clock.sleep_until(deadline)
        if rt.stop_requested:
            rt.trip(S.SIGNAL, rt.stop_requested)
            break
        phase = "soft_start" if k < n_soft else "settle" if k < n_soft + n_settle else "policy"
        rt.cycle = i
        _cycle(rt, i, k, phase, min(1.0, (k + 1) / n_soft), deadline, ramp[min(k, n_soft - 1)])
        i += 1
        # Absolute deadlines: the next one is start + (k+1)T; if the work ran past it, skip to the
        # first deadline still ahead (never burst), counting what was missed (C5).
        end = rt.clock.now()
        k += 1
        overran = end > start + k * T
        if overran:
            k_next = math.floor((end - start) / T) + 1
            rt.stats.overruns += 1
            rt.stats.missed_deadlines += k_next - k
            k = k_next
        reason = rt.overrun.update(overran)
        if reason and not rt.latch.safe:
            rt.trip(S.OVERRUN, reason)
    if not rt.end_reason:
        rt.end_reason = "safe_stop"


def state_record(s: P.State) -> dict:
    return {"ts": s.timestamp_us * 1e-6, "status": s.status, "errors": s.errors, "q": s.q, "dq": s.dq,
            "quat": s.quat, "gyro": s.gyro, "accel": s.accel}


def state_from_record(r: dict) -> P.State:
    """The STATE a cycle record's `state` was written from (state_record), for reading a run log
    back (joint count not recorded: 0)."""
    return P.State(int(round(r["ts"] * 1e6)), r["status"], r["errors"], 0, r["q"], r["dq"], r["quat"], r["gyro"],
                   r["accel"])


def _cycle(rt: Runtime, i: int, slot: int, phase: str, alpha: float, deadline: float,
           ramp_targets: np.ndarray) -> None:
    d, clock, st = rt.driver, rt.clock, rt.stats
    t_start = clock.now()
    st.starts.append(t_start)
    rec: dict[str, Any] = {"k": i, "slot": slot, "t": t_start - rt.t0, "phase": phase, "late": t_start - deadline}
    errors: list[str] = []
    timing: dict[str, float] = {}
    rec["errors"], rec["timing"] = errors, timing
    try:
        state, rt.reply_state = rt.reply_state, None
        if state is None:       # fresh read (always, unless pipelined and the last reply is at hand)
            state = transact(rt, d.read_state, "read", errors)
            timing["read"] = clock.now() - t_start
            if state is None:
                return
            st.read_s.append(timing["read"])
        rec["state"] = state_record(state)
        mode = S.mode_problem(state.status, rt.torque_enabled)
        if mode:                # before anything reads the state: the robot is not following us
            rt.trip(S.DEVICE_FAULT, mode)
            return
        rs = robot_state(state)
        rt.checks.starting = phase != "policy"
        problem = rt.checks.first_problem(rs)
        rec["tilt_deg"] = rt.checks.tilt.last_deg
        if problem:
            rt.trip(*problem)
            return
        kp = kd = None
        action = None
        if phase == "policy":
            first = rt.policy_slots[0] if rt.policy_slots else slot
            rt.policy_slots = (first, slot)
            out = _policy_targets(rt, rs, rec, timing)
            if out is None:
                return
            action, targets = out
        else:
            targets, gain = _soft_start_targets(rt, phase, alpha, ramp_targets)
            rec["targets"] = targets
            if gain is not None:
                kp = kd = [gain] * rt.plan.n
                rec["kp_scale"] = gain
        filt = rt.layer.filter(targets)
        rec["sent"] = filt.sent
        if filt.clamped:
            rec["clamped"] = filt.clamped
            st.clamped += phase == "policy"
        if filt.rate_limited:
            rec["rate_limited"] = filt.rate_limited
            st.rate_limited += phase == "policy"
        if rt.latch.safe:     # a signal or another thread latched SAFE meanwhile: send nothing
            return
        t2 = clock.now()
        reply = transact(rt, lambda: d.send_command(filt.sent, kp, kd, budget_s=rt.budget_s), "send", errors)
        timing["send"] = clock.now() - t2
        if reply is None:
            return
        st.send_s.append(timing["send"])
        st.commands_sent += 1
        rec["reply_status"] = reply.status
        mode = S.mode_problem(reply.status, rt.torque_enabled)
        if mode:
            rt.trip(S.DEVICE_FAULT, mode)
            return
        rt.link.ok()
        if rt.config.pipelined:
            rt.reply_state = reply
        if action is not None:
            rt.last_action = np.asarray(action, dtype=np.float64)
        if rt.info is not None and rt.info.simulated and rt.config.truth_every and i % rt.config.truth_every == 0:
            gt = rt.ground_truth(errors)
            if gt is not None:
                rec["truth"] = {"pos": gt.base_pos, "vel": gt.base_lin_vel, "fallen": gt.fallen}
    finally:
        timing["work"] = clock.now() - t_start
        if len(st.starts) > 1:
            timing["period"] = st.starts[-1] - st.starts[-2]
        if rt.log is not None:
            rt.log.cycle(rec)
        if rt.on_cycle is not None:
            rt.on_cycle(i, rec)


def _policy_targets(rt: Runtime, rs: RobotState, rec: dict, timing: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Observation -> policy -> (action, joint targets); None after latching SAFE (nothing to send)."""
    if rt.stats.policy_calls == 0:
        problem = rt.checks.handover_problem(rs)
        if problem:
            rt.trip(*problem)
            return None
    t1 = rt.clock.now()
    command = _command(rt, t1)
    if rt.heading_hold.active:
        command, rt.heading_ref = rt.heading_hold.command(command, rt.heading_ref, heading_of(rs.quat))
    rec["command"] = command
    obs = rt.builder(rs, rt.last_action, command)
    rec["obs"] = obs
    if S.non_finite_fields(obs=obs):   # finite state, non-finite observation: a scale or layout is broken
        rt.trip(S.NON_FINITE_STATE, "observation is not finite")
        return None
    rt.stats.policy_calls += 1
    action, targets = rt.policy.infer(obs)
    timing["infer"] = rt.clock.now() - t1
    rt.stats.infer_s.append(timing["infer"])
    rec["action"], rec["targets"] = action, targets
    bad = S.non_finite_fields(action=action, targets=targets)
    if bad:     # C2: before any clamp; nothing derived from it is sent
        rt.trip(S.NON_FINITE_ACTION, f"policy output not finite: {', '.join(bad)}")
        return None
    return action, targets


def start_ramp(q_start: np.ndarray, standup, default_pose: np.ndarray, soft_start_s: float, T: float) -> np.ndarray:
    """The soft start's targets, one row per cycle: a smoothstep from the pose at torque on through
    each stand-up keyframe (simreal.robot.standup) to the default pose, the last segment taking
    soft_start_s."""
    rows, frm = [], np.asarray(q_start, dtype=np.float64)
    for pose, seconds in [(kf.pose, kf.seconds) for kf in standup] + [(default_pose, soft_start_s)]:
        to, n = np.asarray(pose, dtype=np.float64), max(1, int(round(seconds / T)))
        a = np.arange(1, n + 1) / n
        s = a * a * (3 - 2 * a)
        rows.append(frm + s[:, None] * (to - frm))
        frm = to
    return np.concatenate(rows)


def _soft_start_targets(rt: Runtime, phase: str, alpha: float, ramp_targets: np.ndarray) -> tuple[np.ndarray, float | None]:
    """This cycle's row of the start ramp; gains rising while it moves (when the robot honours
    COMMAND gain scales). Settle holds the default pose at full gains."""
    targets = ramp_targets if phase == "soft_start" else np.asarray(rt.plan.default_pose, dtype=np.float64)
    gain = None
    if phase == "soft_start" and rt.info is not None and rt.info.capabilities & P.Capability.GAINS:
        gain = rt.config.soft_start_kp + (1 - rt.config.soft_start_kp) * alpha
    return targets, gain


def transact(rt: Runtime, fn: Callable[[], P.State], what: str, errors: list[str]) -> P.State | None:
    """One driver call; link trouble becomes a failed cycle (K in a row -> SAFE) or an immediate trip."""
    try:
        return fn()
    except DeviceFault as exc:
        rt.stats.error("DeviceFault")
        errors.append(f"{what}: {exc}")
        rt.trip(S.DEVICE_FAULT, str(exc))
    except LinkLost as exc:
        rt.stats.error("LinkLost")
        errors.append(f"{what}: {exc}")
        rt.trip(S.LINK_LOST, str(exc))
    except LINK_ERRORS as exc:
        kind = type(exc).__name__
        rt.stats.error(kind)
        rt.stats.failed_cycles += 1
        errors.append(f"{what}: {kind}: {exc}")
        reason = rt.link.failed(f"{what}: {kind}")
        if reason:
            rt.trip(S.LINK_FAILED, reason)
    return None


def _command(rt: Runtime, now: float) -> np.ndarray:
    """The velocity command (C8): clamped to the trained range; a stream gone quiet is zero."""
    cmd = rt.commands.current(now)
    if rt.commands.timed_out and not rt.command_timed_out:
        rt.event("command_timeout", after_s=rt.commands.timeout_s, command=[0.0] * len(cmd))
    rt.command_timed_out = rt.commands.timed_out
    return S.clamp_command(cmd, rt.plan.command_ranges) if not rt.commands.timed_out else cmd
