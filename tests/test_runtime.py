"""Runtime + safety against the mock robot in this process, with a fake clock: faults.md C1-C10, T1, T2, D2, F9, P4.

The robot is the package's MockRobot in lockstep (one control period per COMMAND) behind a
LoopbackPort, so every request goes through SerialDriver and the protocol's encoder and decoder
as it would over a serial port; faults come from the mock's own fault schedule (`--faults`),
timed in mock seconds. With FakeClock, every timing figure is exact and nothing sleeps except a
failed read's timeout. The bench (mock, port, driver, scripted policy, runtime) is simreal.faults.bench,
which `simreal faults` drills with too.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal

import numpy as np
import pytest

from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.deploy.clock import FakeClock
from simreal.deploy.runlog import RunLogWriter, read_log
from simreal.deploy.plan import StartRefused
from simreal.deploy.summary import format_summary
from simreal.deploy.driver import LinkTimeout
from simreal.faults.bench import RTT_S, T, Bench, at_cycle, make_runtime


def info_says(**fields):
    """A reply hook: the robot's INFO claims something else (another robot, other joint names)."""
    return lambda request, reply: dataclasses.replace(reply, **fields) if isinstance(reply, P.Info) else reply


N_PRE = 15   # soft start (0.2 s) + settle (0.1 s) at 50 Hz: cycles before the policy runs


def after_torque_on(drv: Bench) -> list[str]:
    kinds = [w for w, _ in drv.wire]
    return kinds[kinds.index("TORQUE"):]


def assert_safe_stopped(rt, drv, cause: str):
    """SAFE latched with `cause`; after the last COMMAND came DAMP (repeated), then TORQUE off, confirmed."""
    s = rt.summary()
    assert s["safe_stops"] and s["safe_stops"][0]["cause"] == cause, s["safe_stops"]
    assert s["stop"]["confirmed"] and not drv.torque, s["stop"]
    wire = drv.wire
    last_cmd = max(i for i, (w, _) in enumerate(wire) if w == "COMMAND")
    tail = [(w, p) for w, p in wire[last_cmd + 1:] if w not in ("GET_STATE", "SIM_GET_GROUND_TRUTH")]
    damps = [w for w, _ in tail[:-1]]
    assert damps and set(damps) == {"DAMP"} and tail[-1] == ("TORQUE", False), tail


# --------------------------------------------------------------------------- nominal

def test_nominal_run_keeps_deadlines_and_stops_with_torque_off(spec):
    rt, drv, pol, clock = make_runtime(spec, duration=1.0)
    s = rt.run()
    assert s["safe_stops"] == [] and s["end"] == "duration"
    assert s["cycles"] == N_PRE + 50
    assert pol.calls == 50
    assert s["period_ms"]["p50"] == pytest.approx(20.0) and s["period_ms"]["max"] == pytest.approx(20.0)
    assert s["overruns"] == 0 and s["stop"]["confirmed"] and not drv.torque
    assert "distance_m" in s and not s["fallen"]
    # Absolute deadlines: every cycle started exactly on start + k*T despite the work time.
    starts = np.array(rt.stats.starts)
    assert np.allclose(np.diff(starts), 0.02, atol=1e-9)
    assert "robot quadruped" in format_summary(s)


def test_soft_start_ramps_to_default_pose_with_rising_gains(spec):
    rt, drv, pol, clock = make_runtime(spec, duration=0.1)
    drv.robot.sim.reset(pose=spec.default_pose + 0.3 * np.array([1, -1] * 4))   # start away from the default pose
    rt.run()
    cmds = [p for w, p in drv.wire if w == "COMMAND"]
    gains = [p[1][0] for p in cmds[:10]]
    assert gains == sorted(gains) and gains[0] < 0.4 and gains[-1] == pytest.approx(1.0)
    assert np.allclose(cmds[9][0], spec.default_pose, atol=1e-6)   # end of the 10-cycle ramp
    first = np.array(cmds[0][0])
    assert np.max(np.abs(first - spec.default_pose)) > 0.2          # starts near the measured pose


# --------------------------------------------------------------------------- C1 / C2 / C3

@pytest.mark.parametrize("channel", ["q", "dq", "quat", "gyro"])
def test_c1_non_finite_state_never_reaches_the_policy(spec, channel):
    c = N_PRE + 3
    rt, drv, pol, clock = make_runtime(spec, faults=f"nan_at={at_cycle(c)}:2:{channel}")   # 2: cycle c-1's COMMAND reply takes one
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.NON_FINITE_STATE and s["safe_stops"][0]["cycle"] == c
    assert pol.calls == c - N_PRE                   # cycles before the fault only
    assert all(np.all(np.isfinite(x)) for x in pol.inputs)
    assert_safe_stopped(rt, drv, S.NON_FINITE_STATE)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_c2_non_finite_action_never_reaches_the_wire(spec, bad):
    n = spec.n_joints

    def fn(k, obs):
        a = np.zeros(n)
        if k >= 5:
            a[3] = bad
        return a

    rt, drv, pol, clock = make_runtime(spec, fn=fn)
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.NON_FINITE_ACTION
    cmds = drv.commands()
    assert len(cmds) == N_PRE + 5                  # nothing after the NaN
    assert all(np.all(np.isfinite(c)) for c in cmds)
    assert pol.calls == 6
    assert_safe_stopped(rt, drv, S.NON_FINITE_ACTION)


@pytest.mark.parametrize("gain", [10.0, 100.0])
def test_c3_huge_and_jumping_actions_are_clamped_and_rate_limited(spec, gain):
    rng = np.random.default_rng(0)

    def fn(k, obs):   # x gain noise plus full-range steps every cycle
        return gain * rng.uniform(-1, 1, spec.n_joints) * (1 if k % 2 else -1)

    rt, drv, pol, clock = make_runtime(spec, fn=fn, duration=0.5)
    s = rt.run()
    cmds = np.array(drv.commands())
    assert np.all(cmds >= spec.joint_min - 1e-12) and np.all(cmds <= spec.joint_max + 1e-12)
    step = spec.control.max_target_rate * spec.control.period
    assert np.max(np.abs(np.diff(cmds, axis=0))) <= step + 1e-6      # the wire carries float32
    assert s["safe_stops"] == [] or s["safe_stops"][0]["cause"] in (S.TILT, S.JOINT_LIMIT)


# --------------------------------------------------------------------------- C4 / C5 / C6 / C7

def test_c4_stale_timestamp_detected_after_n_cycles(spec):
    c = N_PRE + 8
    rt, drv, pol, clock = make_runtime(spec, faults=f"freeze_timestamp_at={at_cycle(c)}")
    s = rt.run()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.STALE_STATE
    n = rt.config.safety.stale_cycles
    assert c < trip["cycle"] <= c + n
    assert_safe_stopped(rt, drv, S.STALE_STATE)


def test_c5_one_stall_is_counted_and_skipped_not_a_stop(spec):
    stall_at = N_PRE + 10
    rt, drv, pol, clock = make_runtime(spec, host_stalls={stall_at: 0.035})
    s = rt.run()
    assert s["safe_stops"] == []
    assert s["overruns"] == 1 and s["missed_deadlines"] == 1
    assert s["period_ms"]["max"] == pytest.approx(40.0)      # the stalled cycle, then back on the grid
    starts = np.array(rt.stats.starts) - rt.stats.starts[0]
    assert np.allclose(starts / 0.02, np.round(starts / 0.02), atol=1e-6)   # never off the deadline grid


def test_c5_ten_percent_slow_cycles_counted_not_a_stop(spec):
    stalls = {r: 0.03 for r in range(N_PRE + 1, N_PRE + 50, 10)}   # 1.5x the 20 ms budget
    rt, drv, pol, clock = make_runtime(spec, host_stalls=stalls)
    s = rt.run()
    assert s["safe_stops"] == [] and s["overruns"] == len(stalls)


def test_c5_persistent_overruns_are_a_safe_stop(spec):
    rt, drv, pol, clock = make_runtime(spec, infer_s=0.03)   # every policy cycle takes 1.5x the period
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.OVERRUN
    assert s["overruns"] >= rt.config.safety.overrun_consecutive
    assert_safe_stopped(rt, drv, S.OVERRUN)


@pytest.mark.parametrize("deg", [60.5, 90.0, 120.0])
def test_c6_fall_is_a_safe_stop_after_debounce(spec, deg):
    c = N_PRE + 3
    rt, drv, pol, clock = make_runtime(spec, faults=f"tilt_at={at_cycle(c)}:{deg}")
    s = rt.run()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.TILT
    d = rt.config.safety.tilt_debounce
    assert trip["cycle"] == c + d - 1                     # D tilted cycles
    assert_safe_stopped(rt, drv, S.TILT)


def test_c7_joint_beyond_limit_is_a_safe_stop(spec):
    # fl_knee's encoder slips 1.7 rad: it reads ~+0.5 rad, past its 0.0 limit (+0.1 margin)
    rt, drv, pol, clock = make_runtime(spec, faults=f"encoder_slip_at={at_cycle(N_PRE + 1)}:fl_knee:1.7")
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.JOINT_LIMIT
    assert "fl_knee" in s["safe_stops"][0]["detail"]
    assert_safe_stopped(rt, drv, S.JOINT_LIMIT)


# --------------------------------------------------------------------------- C8 / C9 / C10

def test_c8_command_stream_stopping_gives_zero_velocity_after_timeout(spec, tmp_path):
    clock = FakeClock(100.0)
    watch = S.CommandWatch((0.5, 0.0), timeout_s=0.2, now=clock.now())
    last_feed = {}

    def feed(i, rec):   # the operator streams commands until cycle 30, then goes silent
        if i < 30:
            watch.update((0.5, 0.0), clock.now())
            last_feed["t"] = clock.now()

    log = RunLogWriter(tmp_path / "c8.jsonl", {"robot": spec.name})
    rt, drv, pol, _ = make_runtime(spec, clock=clock, commands=watch, on_cycle=feed, log=log)
    s = rt.run()
    log.close()
    assert s["safe_stops"] == []
    run = read_log(tmp_path / "c8.jsonl")
    pol_cycles = [c for c in run.cycles if c["phase"] == "policy"]
    zero = [c for c in pol_cycles if c["command"] == [0.0, 0.0]]
    assert zero and all(c["k"] > 29 for c in zero)
    t_zero = zero[0]["t"] + rt.t0
    assert t_zero - last_feed["t"] <= 0.2 + 0.02 + 1e-9          # hold <= T + 1 cycle
    assert len(run.events_of("command_timeout")) == 1


def test_c9_exception_in_policy_is_a_safe_stop_then_raised(spec, tmp_path):
    def fn(k, obs):
        if k == 3:
            raise RuntimeError("onnx exploded")
        return np.zeros(spec.n_joints)

    log = RunLogWriter(tmp_path / "c9.jsonl", {"robot": spec.name})
    rt, drv, pol, clock = make_runtime(spec, fn=fn, log=log)
    with pytest.raises(RuntimeError, match="onnx exploded"):
        rt.run()
    log.close()
    assert rt.latch.latched_by.cause == S.EXCEPTION
    assert rt.stop_result["confirmed"] and not drv.torque
    run = read_log(tmp_path / "c9.jsonl")
    assert run.events_of("trip")[0]["cause"] == S.EXCEPTION and "onnx exploded" in run.events_of("trip")[0]["traceback"]
    assert run.events_of("safe_stop") and run.summary is not None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_c9_signals_are_a_safe_stop(spec, sig):
    def on_cycle(i, rec):
        if i == N_PRE + 4:
            os.kill(os.getpid(), sig)

    rt, drv, pol, clock = make_runtime(spec, on_cycle=on_cycle, handle_signals=True)
    old = signal.getsignal(sig)
    s = rt.run()
    assert signal.getsignal(sig) is old                      # handlers restored
    assert s["safe_stops"][0]["cause"] == S.SIGNAL and sig.name in s["safe_stops"][0]["detail"]
    assert s["safe_stops"][0]["cycle"] <= N_PRE + 5            # within one cycle
    assert_safe_stopped(rt, drv, S.SIGNAL)


def test_c10_latch_holds_until_explicit_reset(spec):
    rt, drv, pol, clock = make_runtime(spec, faults=f"tilt_at={at_cycle(N_PRE)}:90")
    rt.run()
    assert rt.latch.safe
    drv.robot.tilt_quat = None                                  # the cause is gone: the robot is
    drv.driver.reset()                                          # stood back up (SIM_RESET) ...
    n_wire = len(drv.wire)
    with pytest.raises(StartRefused, match="latched"):
        rt.run()                                                # ... but nothing moves
    assert len(drv.wire) == n_wire
    rt.reset("operator checked the robot")
    rt2_summary = rt.run()
    assert len(drv.commands()) > 0 and rt2_summary["end"] == "duration"


# --------------------------------------------------------------------------- link: T1 / T2 / D2 / F9

def test_t1_link_lost_is_a_safe_stop_within_one_cycle(spec, tmp_path):
    c = N_PRE + 5
    log = RunLogWriter(tmp_path / "t1.jsonl", {"robot": spec.name})
    rt, drv, pol, clock = make_runtime(spec, faults=f"disconnect_at={at_cycle(c)}", log=log)
    s = rt.run()
    log.close()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.LINK_LOST and trip["cycle"] == c - 1      # lost during cycle c-1's COMMAND
    # a lockstep mock declares no watchdog (its clock is the host's requests), and the summary says so
    assert not s["stop"]["confirmed"] and "declares no watchdog" in s["stop"]["note"]
    run = read_log(tmp_path / "t1.jsonl")
    assert run.events_of("trip")[0]["cause"] == S.LINK_LOST and run.events_of("safe_stop")


def test_t2_d2_failing_link_is_a_safe_stop_after_k_cycles(spec):
    c = N_PRE + 5
    rt, drv, pol, clock = make_runtime(spec, faults=f"stall_at={at_cycle(c)}")
    s = rt.run()
    trip = s["safe_stops"][0]
    k = rt.config.safety.max_failed_cycles
    assert trip["cause"] == S.LINK_FAILED and trip["cycle"] == c + k - 1   # c-1's reply was out: c's read is the first unanswered
    assert s["failed_cycles"] == k and s["errors"]["LinkTimeout"] == k
    assert not s["stop"]["confirmed"]
    attempts = [w for w, _ in drv.wire].count("TORQUE") / (drv.driver.config.retries + 1)
    assert attempts <= 1 + rt.config.stop_timeout_s / 0.02 + 1        # no retry storm: one per period at most
    # T2: SAFE <= K*period + timeout after the first failure (fake clock: exact)
    assert trip["t"] - (rt.stats.starts[c] - rt.t0) <= k * 0.02 + 0.008 + 1e-9


def test_f9_device_fault_is_a_safe_stop_within_one_cycle(spec):
    c = N_PRE + 2
    rt, drv, pol, clock = make_runtime(spec, faults=f"device_fault={at_cycle(c)}:overheat")
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.DEVICE_FAULT and s["safe_stops"][0]["cycle"] == c - 1   # c-1's reply
    assert s["stop"]["confirmed"] and not drv.torque


@pytest.mark.parametrize("flags", [P.Status.WATCHDOG | P.Status.DAMPING, P.Status.DAMPING, P.Status.HOLDING,
                                   P.Status(0)])
def test_robot_out_of_position_control_is_a_device_fault_before_the_policy(spec, flags):
    # A STATE that says the robot stopped following COMMANDs (its watchdog fired during a host
    # freeze: WATCHDOG + DAMPING; an unexpected DAMP or HOLD; torque off) stops the run at once:
    # no further policy call and no COMMAND. flags=0: TORQUE_ON itself cleared.
    c = N_PRE + 3
    reads = {"n": -1}

    def hook(request, reply):
        if isinstance(request, P.Torque) and request.enable:
            reads["n"] = 0
        elif isinstance(request, P.GetState) and reads["n"] >= 0:
            reads["n"] += 1
            if reads["n"] > c:               # runtime cycle k makes the (k+1)th read after TORQUE 1
                status = reply.status | int(flags) if flags else reply.status & ~int(P.Status.TORQUE_ON)
                reply = dataclasses.replace(reply, status=status)
        return reply
    rt, drv, pol, clock = make_runtime(spec, hook=hook)
    s = rt.run()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.DEVICE_FAULT and trip["cycle"] == c, s["safe_stops"]
    assert "left position control" in trip["detail"]
    assert pol.calls == c - N_PRE and len(drv.commands()) == c      # cycles 0..c-1 sent; none after
    assert s["stop"]["confirmed"]


def test_the_orderly_stop_keeps_the_link_alive_while_it_damps(spec):
    # A clean stop never leaves the link silent for longer than a period (plus a transaction): a
    # robot watchdog of about damp_s must not fire on a clean stop, only on a crashed host.
    rt, drv, pol, clock = make_runtime(spec, duration=0.2, damp_s=0.2)
    s = rt.run()
    assert s["end"] == "duration" and s["stop"]["confirmed"]
    stop = [t for t, kind in drv.times if kind == "DAMP"][0]
    times = [t for t, kind in drv.times if t >= stop]
    off = max(t for t, kind in drv.times if kind == "TORQUE")
    times = [t for t in times if t <= off]
    assert off - stop >= 0.2
    assert max(np.diff(times)) <= T + 2 * RTT_S + 1e-9, np.diff(times)


def test_mode_problem_names_what_the_robot_did():
    on = int(P.Status.TORQUE_ON)
    assert S.mode_problem(on, True) is None and S.mode_problem(0, False) is None
    assert "WATCHDOG, DAMPING" in S.mode_problem(on | P.Status.WATCHDOG | P.Status.DAMPING, True)
    assert "torque off" in S.mode_problem(int(P.Status.SIMULATED), True)
    assert S.mode_problem(int(P.Status.DAMPING), False) is None     # before torque on, nothing is expected


# --------------------------------------------------------------------------- refusing to start

def test_contract_mismatch_refused_before_torque(spec):
    rt, drv, pol, clock = make_runtime(spec, hook=info_says(robot_name="biped"))
    with pytest.raises(StartRefused, match="robot: the bundle is for 'quadruped'"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire] and not drv.commands()


def test_joint_name_mismatch_refused_before_torque(spec):
    names = list(spec.joint_names)
    names[2] = "fr_hip_yaw"
    rt, drv, pol, clock = make_runtime(spec, hook=info_says(joint_names=tuple(names)))
    with pytest.raises(StartRefused, match="joint_names"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]


def test_tilted_robot_refused_before_torque(spec):
    rt, drv, pol, clock = make_runtime(spec, faults="tilt_at=0:80:10")
    with pytest.raises(StartRefused, match="tilted"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]


def test_robot_tilted_past_the_start_limit_is_refused_with_stand_it_up(spec):
    # 25 deg passes the 60 deg fall limit but not the 20 deg start limit: a robot leaning on
    # something is not standing.
    rt, drv, pol, clock = make_runtime(spec, faults="tilt_at=0:25")
    with pytest.raises(StartRefused, match=r"tilted 25.0 deg \(start limit 20\): stand it up"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]


def real_time_robot(spec, clock, *, fold_s: float, speed: float = 0.3, joint: str = "fl_knee", gyro=(0, 0, 0)):
    """A reply hook that makes the lockstep mock look like a robot on its own clock before torque on:
    STATE timestamps follow the host clock, and `joint` creeps at `speed` rad/s (a limp leg folding)
    for the first fold_s seconds, with the body turning at `gyro` meanwhile."""
    j = spec.joint_names.index(joint)
    t0, on = clock.now(), {"torque": False}

    def hook(request, reply):
        if isinstance(request, P.Torque) and request.enable:
            on["torque"] = True
        if on["torque"] or not isinstance(reply, P.State):
            return reply
        moving = min(clock.now() - t0, fold_s)
        q = list(reply.q)
        q[j] += speed * moving
        turning = clock.now() - t0 < fold_s
        return dataclasses.replace(reply, timestamp_us=int(round(clock.now() * 1e6)), q=tuple(q),
                                   gyro=tuple(gyro) if turning else reply.gyro)
    return hook


def test_a_folding_robot_is_waited_for_until_it_is_at_rest(spec):
    # #15 defect 1: torque on a limp robot that is still folding hands the soft start a moving body.
    clock = FakeClock(100.0)
    rt, drv, pol, clock = make_runtime(spec, clock=clock, hook=real_time_robot(spec, clock, fold_s=1.0))
    s = rt.run()
    assert s["end"] == "duration" and s["safe_stops"] == []
    first_read = min(t for t, kind in drv.times if kind == "GET_STATE")
    torque_on = min(t for t, kind in drv.times if kind == "TORQUE")
    # not before the folding ended; at most one rest window (0.3 s) and a read after it
    assert 1.0 <= torque_on - first_read <= 1.0 + 0.3 + 2 * T, torque_on - first_read


@pytest.mark.parametrize("what, gyro, match", [
    ("joint", (0, 0, 0), r"not at rest after 5 s \(fl_knee moving at 0.30 rad/s \(limit 0.1\)\)"),
    ("body", (0.0, 0.5, 0.0), r"body turning at 0.50 rad/s \(limit 0.06\)"),
])
def test_a_robot_that_keeps_moving_is_refused_after_the_wait(spec, what, gyro, match):
    clock = FakeClock(100.0)
    hook = real_time_robot(spec, clock, fold_s=60.0, speed=0.3 if what == "joint" else 0.0, gyro=gyro)
    rt, drv, pol, clock = make_runtime(spec, clock=clock, hook=hook)
    t0 = clock.now()
    with pytest.raises(StartRefused, match=match):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire] and not drv.commands()
    assert 5.0 <= clock.now() - t0 <= 5.0 + 2 * T


def test_tipping_while_standing_up_stops_before_the_policy(spec):
    # 25 deg during the soft start trips the start limit (20); the policy is never called. The same
    # tilt in the policy phase is below the fall limit (60) and does not stop the run.
    rt, drv, pol, clock = make_runtime(spec, faults=f"tilt_at={at_cycle(8)}:25")
    s = rt.run()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.TILT and "while standing up" in trip["detail"] and pol.calls == 0
    assert trip["cycle"] == 8 + rt.config.safety.tilt_debounce - 1
    assert_safe_stopped(rt, drv, S.TILT)
    rt, drv, pol, clock = make_runtime(spec, faults=f"tilt_at={at_cycle(N_PRE + 2)}:25")
    assert rt.run()["safe_stops"] == [] and pol.calls == 50


def test_faulted_robot_refused_until_cleared(spec):
    rt, drv, pol, clock = make_runtime(spec, faults="device_fault=0:overheat")
    with pytest.raises(StartRefused, match="clear-errors"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]


# --------------------------------------------------------------------------- the log (P4)

def test_every_cycle_and_event_is_logged(spec, tmp_path):
    path = tmp_path / "run.jsonl"
    log = RunLogWriter(path, {"robot": spec.name, "joint_names": spec.joint_names})
    rt, drv, pol, clock = make_runtime(spec, faults=f"tilt_at={at_cycle(N_PRE + 18)}:90", log=log)
    s = rt.run()
    log.close()
    run = read_log(path)
    assert len(run.cycles) == s["cycles"] and not run.truncated
    c = [c for c in run.cycles if c["phase"] == "policy"][0]
    for key in ("t", "k", "state", "obs", "action", "targets", "sent", "timing", "errors", "command"):
        assert key in c, key
    assert {"read", "infer", "send", "work"} <= set(c["timing"])
    assert [e["kind"] for e in run.events][:3] == ["handshake", "at_rest", "torque_on"]
    assert run.events_of("trip")[0]["cause"] == S.TILT
    assert run.summary["cycles"] == s["cycles"]


def test_lost_torque_on_reply_still_gets_a_safe_stop(spec):
    """The TORQUE request may have landed even though its reply did not: refuse, but stop properly."""
    rt, drv, pol, clock = make_runtime(spec)
    real = drv.driver.enable_torque

    def lossy():
        real()
        raise LinkTimeout("no valid STATE reply to TORQUE")

    drv.driver.enable_torque = lossy
    with pytest.raises(StartRefused, match="not confirmed"):
        rt.run()
    assert not drv.commands() and not drv.torque
    kinds = [w for w, _ in drv.wire]
    assert kinds[-3:] == ["DAMP", "TORQUE", "SIM_GET_GROUND_TRUTH"]
    assert rt.latch.latched_by.cause == S.START_REFUSED and rt.stop_result["confirmed"]


def test_robot_folded_past_its_limits_is_brought_in_by_the_soft_start(spec, tmp_path):
    log = RunLogWriter(tmp_path / "fold.jsonl", {"robot": spec.name})
    rt, drv, pol, clock = make_runtime(spec, log=log)
    folded = spec.default_pose.copy()
    folded[1] = spec.joint_min[1] - 0.5                        # fl_knee 0.5 rad past its limit
    drv.robot.sim.reset(pose=folded)
    s = rt.run()
    log.close()
    assert s["safe_stops"] == [] and s["end"] == "duration"
    knee = np.array(drv.commands())[:, 1]
    assert knee[0] < spec.joint_min[1] and np.all(np.diff(knee[:10]) >= -1e-12)   # only ever inward
    assert np.all(knee[N_PRE:] >= spec.joint_min[1])
    assert "fl_knee" in read_log(tmp_path / "fold.jsonl").events_of("start_outside_limits")[0]["detail"]


def test_joint_that_never_comes_inside_is_a_stop_when_the_policy_would_start(spec):
    rt, drv, pol, clock = make_runtime(spec, faults="encoder_slip_at=0:fl_knee:-1.7")     # reads ~0.5 rad below its limit
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.JOINT_LIMIT and "after the soft start" in s["safe_stops"][0]["detail"]
    assert pol.calls == 0 and s["safe_stops"][0]["cycle"] == N_PRE


def test_joint_far_past_its_limit_at_power_up_is_refused(spec):
    rt, drv, pol, clock = make_runtime(spec)
    pose = spec.default_pose.copy()
    pose[1] = spec.joint_min[1] - 1.5
    drv.robot.sim.reset(pose=pose)
    with pytest.raises(StartRefused, match="calibration"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]
