"""Runtime + safety with an in-process simulated robot and a fake clock: faults.md C1-C10, T1, T2, D2, F9, P4.

SimDriver implements the Driver interface over the MuJoCo Simulator in lockstep (one control
period per COMMAND), records everything it was asked to do (the "wire"), and injects faults at
a given read count. With FakeClock, every timing figure is exact and nothing sleeps.
"""
from __future__ import annotations

import math
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest

from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.deploy.clock import FakeClock
from simreal.deploy.driver import DeviceFault, LinkCounters, LinkLost, LinkTimeout
from simreal.deploy.runlog import RunLogWriter, read_log
from simreal.deploy.runtime import Runtime
from simreal.deploy.plan import RuntimeConfig, StartRefused, plan_from_contract
from simreal.deploy.summary import format_summary
from simreal.envs.physics import Simulator
from simreal.robot.observation import builder_for
from simreal.robot.spec import load_robot


@pytest.fixture(scope="module")
def spec():
    return load_robot("quadruped")


_SIMS: dict = {}


def shared_sim(spec) -> Simulator:
    """One compiled model per robot for the whole module (compiling is most of a short test's cost)."""
    sim = _SIMS.get(spec.name)
    if sim is None:
        sim = _SIMS[spec.name] = Simulator(spec)
    sim.configure_servos(1.0)
    sim.reset()
    return sim


class SimDriver:
    """A robot behind the Driver interface: MuJoCo in lockstep, faults by read count, a recorded wire."""

    def __init__(self, spec, clock: FakeClock, *, rtt_s: float = 0.001, faults: dict | None = None,
                 robot_name: str | None = None, joint_names=None, tilt_deg: float = 0.0, watchdog_ms: int = 500):
        self.spec, self.clock, self.rtt_s = spec, clock, rtt_s
        self.faults = faults or {}
        self.sim = shared_sim(spec)
        self.name = robot_name or spec.name
        self.names = tuple(joint_names or spec.joint_names)
        self.watchdog_ms = watchdog_ms
        self.info = None
        self.counters = LinkCounters()
        self.torque = False
        self.mode = "off"
        self.reads = 0
        self.wire: list[tuple[str, object]] = []      # (request, payload) in order
        self.frozen_ts: int | None = None
        self.start_tilt = tilt_deg
        self.closed = False

    # -- helpers
    def _fault(self, name: str) -> bool:
        at = self.faults.get(name)
        return at is not None and self.reads >= at

    def _tick(self, what: str, payload=None) -> None:
        if self._fault("lose_at"):
            self.counters.link_lost += 1
            raise LinkLost("link to sim lost: mock killed")
        self.wire.append((what, payload))
        self.clock.advance(self.rtt_s)
        if self._fault("timeout_at") and what != "HELLO":
            self.counters.failed += 1
            self.clock.advance(0.008)
            raise LinkTimeout(f"no valid reply to {what}")

    def _state(self) -> P.State:
        m = self.sim.measure()
        q, dq, quat = list(m.joint_pos), list(m.joint_vel), list(m.quat)
        ts = int(round(m.timestamp * 1e6))
        if self.start_tilt:
            a = math.radians(self.start_tilt) / 2
            quat = [math.cos(a), math.sin(a), 0.0, 0.0]
        if self._fault("tilt_at"):
            a = math.radians(self.faults.get("tilt_deg", 90.0)) / 2
            quat = [math.cos(a), math.sin(a), 0.0, 0.0]
        if self._fault("nan_state_at"):
            q[0] = math.nan
        if self._fault("nan_imu_at"):
            quat[0] = math.nan
        if self._fault("beyond_at"):
            q[1] = self.spec.joint_max[1] + 0.5
        if self._fault("stuck_knee_at"):
            q[1] = self.spec.joint_min[1] - 0.5
        if self._fault("freeze_ts_at"):
            self.frozen_ts = ts if self.frozen_ts is None else self.frozen_ts
            ts = self.frozen_ts
        status = P.Status.CALIBRATED | P.Status.SIMULATED | (P.Status.TORQUE_ON if self.torque else 0)
        errors = P.Fault.OVERHEAT if self._fault("device_fault_at") else 0
        st = P.State(ts, int(status), int(errors), 0, tuple(q), tuple(dq), tuple(quat), tuple(m.gyro), tuple(m.accel))
        return st

    def _checked(self) -> P.State:
        st = self._state()
        if st.faulted:
            self.counters.device_faults += 1
            raise DeviceFault("device fault on sim: errors OVERHEAT", st)
        return st

    # -- Driver interface
    def connect(self) -> None:
        pass

    def handshake(self) -> P.Info:
        self._tick("HELLO")
        caps = P.Capability.SIMULATED | P.Capability.GAINS
        self.info = P.Info(self.name, self.names, (1, 0, 0), P.PROTOCOL_VERSION, self.watchdog_ms, caps)
        return self.info

    @property
    def joint_names(self):
        return self.names

    def read_state(self) -> P.State:
        self.reads += 1
        if self.reads in self.faults.get("stall_reads", {}):
            self.clock.advance(self.faults["stall_reads"][self.reads])
        self._tick("GET_STATE")
        return self._checked()

    def send_command(self, q_target, kp_scale=None, kd_scale=None, *, budget_s=None) -> P.State:
        q = tuple(float(v) for v in q_target)
        self._tick("COMMAND", (q, None if kp_scale is None else tuple(kp_scale)))
        if self.torque and self.mode == "pos":
            self.sim.configure_servos(float(np.mean(kp_scale)) if kp_scale is not None else 1.0)
            self.sim.step(np.asarray(q))
        else:
            self.sim.step(self.sim.data.ctrl[self.sim.act_idx].copy())
        return self._checked()

    def enable_torque(self) -> P.State:
        self._tick("TORQUE", True)
        self.torque, self.mode = True, "pos"
        return self._checked()

    def disable_torque(self) -> P.State:
        self._tick("TORQUE", False)
        self.torque, self.mode = False, "off"
        return self._state()

    def damp(self) -> P.State:
        self._tick("DAMP")
        self.mode = "damp"
        return self._state()

    def hold(self) -> P.State:
        self._tick("HOLD")
        return self._state()

    def clear_errors(self) -> P.State:
        self._tick("CLEAR_ERRORS")
        return self._state()

    def heartbeat(self):
        self._tick("HEARTBEAT")
        return P.HeartbeatAck(0, 0, 0)

    def reset(self, q=None, *, seed=0, base_pos=None, base_quat=None):
        raise NotImplementedError

    def ground_truth(self) -> P.SimGroundTruth:
        self._tick("SIM_GET_GROUND_TRUTH")
        s = self.sim
        return P.SimGroundTruth(s.time, tuple(s.base_pos()), tuple(s.base_quat()), tuple(s.base_lin_vel_world()),
                                tuple(s.base_ang_vel_body()), s.tilt() > 1.0)

    def close(self) -> None:
        self.closed = True

    def commands(self) -> list[tuple]:
        return [p[0] for w, p in self.wire if w == "COMMAND"]


class ScriptPolicy:
    """action = fn(call index, obs); targets = default + scale * action (NOT clipped: the safety layer must cope)."""

    def __init__(self, spec, fn=None, clock: FakeClock | None = None, infer_s: float = 0.0):
        self.spec, self.fn, self.clock, self.infer_s = spec, fn, clock, infer_s
        self.calls = 0
        self.inputs: list[np.ndarray] = []

    def infer(self, obs):
        self.inputs.append(np.array(obs))
        a = np.zeros(self.spec.n_joints) if self.fn is None else np.asarray(self.fn(self.calls, obs), float)
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.infer_s)
        return a, self.spec.default_pose + self.spec.control.action_scale * a


def contract_of(spec) -> SimpleNamespace:
    """The contract fields the runtime reads, as export writes them for this robot."""
    return SimpleNamespace(robot=spec.name, joint_names=spec.joint_names, default_pose=spec.default_pose.tolist(),
                           joint_min=spec.joint_min.tolist(), joint_max=spec.joint_max.tolist(),
                           control_period=spec.control.period, max_target_rate=spec.control.max_target_rate,
                           max_tilt_deg=spec.task.max_tilt_deg, command_vx=spec.task.command_vx,
                           command_yaw=spec.task.command_yaw)


def make_runtime(spec, *, faults=None, fn=None, duration=1.0, config=None, log=None, clock=None, drv_kw=None,
                 commands=None, on_cycle=None, infer_s=0.0005, **cfg):
    clock = clock or FakeClock(100.0)
    drv = SimDriver(spec, clock, faults=faults, **(drv_kw or {}))
    pol = ScriptPolicy(spec, fn, clock, infer_s)
    plan = plan_from_contract(contract_of(spec), spec)
    base = dict(duration_s=duration, soft_start_s=0.2, settle_s=0.1, handle_signals=False)
    base.update(cfg)
    rt = Runtime(drv, pol, plan, builder_for(spec), config or RuntimeConfig(**base), log=log, clock=clock,
                 commands=commands, on_cycle=on_cycle)
    return rt, drv, pol, clock


N_PRE = 15   # soft start (0.2 s) + settle (0.1 s) at 50 Hz: cycles before the policy runs


def cycle_of_read(r: int) -> int:
    """Read 1 is the pre-flight check; cycle i does read i + 2."""
    return r - 2


def after_torque_on(drv: SimDriver) -> list[str]:
    kinds = [w for w, _ in drv.wire]
    return kinds[kinds.index("TORQUE"):]


def assert_safe_stopped(rt, drv, cause: str):
    """SAFE latched with `cause`; after the last COMMAND came DAMP, then TORQUE off, confirmed."""
    s = rt.summary()
    assert s["safe_stops"] and s["safe_stops"][0]["cause"] == cause, s["safe_stops"]
    assert s["stop"]["confirmed"] and not drv.torque, s["stop"]
    wire = drv.wire
    last_cmd = max(i for i, (w, _) in enumerate(wire) if w == "COMMAND")
    tail = [(w, p) for w, p in wire[last_cmd + 1:] if w not in ("GET_STATE", "SIM_GET_GROUND_TRUTH")]
    assert tail == [("DAMP", None), ("TORQUE", False)], tail


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
    drv.sim.reset(pose=spec.default_pose + 0.3 * np.array([1, -1] * 4))   # start away from the default pose
    rt.run()
    cmds = [p for w, p in drv.wire if w == "COMMAND"]
    gains = [p[1][0] for p in cmds[:10]]
    assert gains == sorted(gains) and gains[0] < 0.4 and gains[-1] == pytest.approx(1.0)
    assert np.allclose(cmds[9][0], spec.default_pose, atol=1e-6)   # end of the 10-cycle ramp
    first = np.array(cmds[0][0])
    assert np.max(np.abs(first - spec.default_pose)) > 0.2          # starts near the measured pose


# --------------------------------------------------------------------------- C1 / C2 / C3

@pytest.mark.parametrize("fault", ["nan_state_at", "nan_imu_at"])
def test_c1_non_finite_state_never_reaches_the_policy(spec, fault):
    at = N_PRE + 5
    rt, drv, pol, clock = make_runtime(spec, faults={fault: at})
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.NON_FINITE_STATE
    assert pol.calls == cycle_of_read(at) - N_PRE    # cycles before the fault only
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
    assert np.max(np.abs(np.diff(cmds, axis=0))) <= step + 1e-9
    assert s["safe_stops"] == [] or s["safe_stops"][0]["cause"] in (S.TILT, S.JOINT_LIMIT)


# --------------------------------------------------------------------------- C4 / C5 / C6 / C7

def test_c4_stale_timestamp_detected_after_n_cycles(spec):
    at = N_PRE + 10
    rt, drv, pol, clock = make_runtime(spec, faults={"freeze_ts_at": at})
    s = rt.run()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.STALE_STATE
    n = rt.config.safety.stale_cycles
    assert trip["cycle"] - cycle_of_read(at) <= n
    assert_safe_stopped(rt, drv, S.STALE_STATE)


def test_c5_one_stall_is_counted_and_skipped_not_a_stop(spec):
    stall_at = N_PRE + 10
    rt, drv, pol, clock = make_runtime(spec, faults={"stall_reads": {stall_at: 0.035}})
    s = rt.run()
    assert s["safe_stops"] == []
    assert s["overruns"] == 1 and s["missed_deadlines"] == 1
    assert s["period_ms"]["max"] == pytest.approx(40.0)      # the stalled cycle, then back on the grid
    starts = np.array(rt.stats.starts) - rt.stats.starts[0]
    assert np.allclose(starts / 0.02, np.round(starts / 0.02), atol=1e-6)   # never off the deadline grid


def test_c5_ten_percent_slow_cycles_counted_not_a_stop(spec):
    stalls = {r: 0.03 for r in range(N_PRE + 1, N_PRE + 50, 10)}   # 1.5x the 20 ms budget
    rt, drv, pol, clock = make_runtime(spec, faults={"stall_reads": stalls})
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
    at = N_PRE + 5
    rt, drv, pol, clock = make_runtime(spec, faults={"tilt_at": at, "tilt_deg": deg})
    s = rt.run()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.TILT
    d = rt.config.safety.tilt_debounce
    assert trip["cycle"] == cycle_of_read(at) + d - 1     # D tilted cycles
    assert_safe_stopped(rt, drv, S.TILT)


def test_c7_joint_beyond_limit_is_a_safe_stop(spec):
    rt, drv, pol, clock = make_runtime(spec, faults={"beyond_at": N_PRE + 3})
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
    rt, drv, pol, clock = make_runtime(spec, faults={"tilt_at": N_PRE + 2})
    rt.run()
    assert rt.latch.safe
    del drv.faults["tilt_at"]                                   # the cause is gone ...
    n_wire = len(drv.wire)
    with pytest.raises(StartRefused, match="latched"):
        rt.run()                                                # ... but nothing moves
    assert len(drv.wire) == n_wire
    rt.reset("operator checked the robot")
    rt2_summary = rt.run()
    assert len(drv.commands()) > 0 and rt2_summary["end"] == "duration"


# --------------------------------------------------------------------------- link: T1 / T2 / D2 / F9

def test_t1_link_lost_is_a_safe_stop_within_one_cycle(spec, tmp_path):
    at = N_PRE + 7
    log = RunLogWriter(tmp_path / "t1.jsonl", {"robot": spec.name})
    rt, drv, pol, clock = make_runtime(spec, faults={"lose_at": at}, log=log)
    s = rt.run()
    log.close()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.LINK_LOST and trip["cycle"] == cycle_of_read(at)
    assert not s["stop"]["confirmed"] and "watchdog (500 ms)" in s["stop"]["note"]
    run = read_log(tmp_path / "t1.jsonl")
    assert run.events_of("trip")[0]["cause"] == S.LINK_LOST and run.events_of("safe_stop")


def test_t2_d2_failing_link_is_a_safe_stop_after_k_cycles(spec):
    at = N_PRE + 7
    rt, drv, pol, clock = make_runtime(spec, faults={"timeout_at": at})
    s = rt.run()
    trip = s["safe_stops"][0]
    k = rt.config.safety.max_failed_cycles
    assert trip["cause"] == S.LINK_FAILED and trip["cycle"] == cycle_of_read(at) + k - 1
    assert s["failed_cycles"] == k and s["errors"]["LinkTimeout"] == k
    assert not s["stop"]["confirmed"]
    assert [w for w, _ in drv.wire].count("TORQUE") <= 1 + rt.config.stop_timeout_s / 0.02 + 1   # no retry storm
    # T2: SAFE <= K*period + timeout after the first failure (fake clock: exact)
    assert trip["t"] - (rt.stats.starts[cycle_of_read(at)] - rt.t0) <= k * 0.02 + 0.008 + 1e-9


def test_f9_device_fault_is_a_safe_stop_within_one_cycle(spec):
    at = N_PRE + 4
    rt, drv, pol, clock = make_runtime(spec, faults={"device_fault_at": at})
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.DEVICE_FAULT and s["safe_stops"][0]["cycle"] == cycle_of_read(at)
    assert s["stop"]["confirmed"] and not drv.torque


# --------------------------------------------------------------------------- refusing to start

def test_contract_mismatch_refused_before_torque(spec):
    rt, drv, pol, clock = make_runtime(spec, drv_kw={"robot_name": "biped"})
    with pytest.raises(StartRefused, match="robot: the bundle is for 'quadruped'"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire] and not drv.commands()


def test_joint_name_mismatch_refused_before_torque(spec):
    names = list(spec.joint_names)
    names[2] = "fr_hip_yaw"
    rt, drv, pol, clock = make_runtime(spec, drv_kw={"joint_names": names})
    with pytest.raises(StartRefused, match="joint_names"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]


def test_tilted_robot_refused_before_torque(spec):
    rt, drv, pol, clock = make_runtime(spec, drv_kw={"tilt_deg": 80.0})
    with pytest.raises(StartRefused, match="tilted"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]


def test_faulted_robot_refused_until_cleared(spec):
    rt, drv, pol, clock = make_runtime(spec, faults={"device_fault_at": 0})
    with pytest.raises(StartRefused, match="clear-errors"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]


# --------------------------------------------------------------------------- the log (P4)

def test_every_cycle_and_event_is_logged(spec, tmp_path):
    path = tmp_path / "run.jsonl"
    log = RunLogWriter(path, {"robot": spec.name, "joint_names": spec.joint_names})
    rt, drv, pol, clock = make_runtime(spec, faults={"tilt_at": N_PRE + 20}, log=log)
    s = rt.run()
    log.close()
    run = read_log(path)
    assert len(run.cycles) == s["cycles"] and not run.truncated
    c = [c for c in run.cycles if c["phase"] == "policy"][0]
    for key in ("t", "k", "state", "obs", "action", "targets", "sent", "timing", "errors", "command"):
        assert key in c, key
    assert {"read", "infer", "send", "work"} <= set(c["timing"])
    assert [e["kind"] for e in run.events][:2] == ["handshake", "torque_on"]
    assert run.events_of("trip")[0]["cause"] == S.TILT
    assert run.summary["cycles"] == s["cycles"]


def test_lost_torque_on_reply_still_gets_a_safe_stop(spec):
    """The TORQUE request may have landed even though its reply did not: refuse, but stop properly."""
    rt, drv, pol, clock = make_runtime(spec)
    real = drv.enable_torque

    def lossy():
        real()
        raise LinkTimeout("no valid STATE reply to TORQUE")

    drv.enable_torque = lossy
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
    drv.sim.reset(pose=folded)
    s = rt.run()
    log.close()
    assert s["safe_stops"] == [] and s["end"] == "duration"
    knee = np.array(drv.commands())[:, 1]
    assert knee[0] < spec.joint_min[1] and np.all(np.diff(knee[:10]) >= -1e-12)   # only ever inward
    assert np.all(knee[N_PRE:] >= spec.joint_min[1])
    assert "fl_knee" in read_log(tmp_path / "fold.jsonl").events_of("start_outside_limits")[0]["detail"]


def test_joint_that_never_comes_inside_is_a_stop_when_the_policy_would_start(spec):
    rt, drv, pol, clock = make_runtime(spec, faults={"stuck_knee_at": 0})
    s = rt.run()
    assert s["safe_stops"][0]["cause"] == S.JOINT_LIMIT and "after the soft start" in s["safe_stops"][0]["detail"]
    assert pol.calls == 0 and s["safe_stops"][0]["cycle"] == N_PRE


def test_joint_far_past_its_limit_at_power_up_is_refused(spec):
    rt, drv, pol, clock = make_runtime(spec)
    pose = spec.default_pose.copy()
    pose[1] = spec.joint_min[1] - 1.5
    drv.sim.reset(pose=pose)
    with pytest.raises(StartRefused, match="calibration"):
        rt.run()
    assert "TORQUE" not in [w for w, _ in drv.wire]
