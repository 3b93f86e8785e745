"""Mock robot pieces in-process (no pty): gap profiles, fault specs, and the robot's behaviour."""
from __future__ import annotations

import math

import numpy as np
import pytest

from simreal import protocol as P
from simreal.mock.faults import FaultSchedule, FaultSpecError, corrupt, parse_faults
from simreal.mock.gap import GapError, GapProfile, list_gaps, load_gap
from simreal.mock.robot import MockRobot, RobotOptions
from simreal.robot.spec import load_robot

QUAD = load_robot("quadruped")
LOCKSTEP = RobotOptions(watchdog_s=0.0, lockstep=True)


def make(gap: str | None = None, faults: str | None = None, seed: int = 0, **opts) -> MockRobot:
    return MockRobot(QUAD, load_gap(gap)[1], parse_faults(faults), seed,
                     RobotOptions(**{"watchdog_s": 0.0, "lockstep": True, **opts}))


def ask(robot: MockRobot, msg: P.Message, tag: int = 7) -> P.Message:
    reply = robot.handle(P.Frame(tag, msg), robot.clock)
    P.encode(reply, tag)                # every reply must be encodable as sent
    return reply


def stand(robot: MockRobot, periods: int = 50) -> P.State:
    assert isinstance(ask(robot, P.Torque(True)), P.State)
    for _ in range(periods):
        s = ask(robot, P.Command(tuple(QUAD.default_pose)))
    return s


# ---------------------------------------------------------------- gap profiles

def test_shipped_profiles_load_for_every_robot(robot):
    spec = load_robot(robot)
    names = list_gaps()
    assert {"nominal", "worn", "heavy", "slippery"} <= set(names)
    for name in names:
        label, gap = load_gap(name)
        assert label == name and gap.description
        gap.domain_params(spec.n_joints, 9, source=name)   # scalars broadcast to any robot


def test_gap_changes_the_model_through_randomization_apply():
    nominal, slippery = make(), make("slippery")
    assert np.allclose(nominal.sim.model.geom_friction[:, 0], 1.0)
    assert np.allclose(slippery.sim.model.geom_friction[:, 0], 0.4)
    r = make("heavy,friction=0.7,kp_scale=0.8,noise.gyro=0.1")
    assert np.allclose(r.sim.model.geom_friction[:, 0], 0.7)
    assert np.allclose(r.sim.servo.kp, 0.8 * QUAD.servo.kp)
    assert r.sim.model.body_mass[1:].sum() > 1.1 * nominal.sim.model.body_mass[1:].sum()   # heavy kept
    assert r.params.noise.gyro == 0.1 and r.gap.noise.joint_pos == 0.0


def test_bad_gap_keys_are_named_with_their_source(tmp_path):
    with pytest.raises(GapError, match=r"--gap kp_scalee=0\.8: kp_scalee: unknown key \(did you mean 'kp_scale'\?\)"):
        load_gap("kp_scalee=0.8")
    with pytest.raises(GapError, match=r"noise\.gyr: unknown key \(did you mean 'gyro'\?\)"):
        load_gap("worn,noise.gyr=0.1")
    with pytest.raises(GapError, match=r"friction: .*greater than 0"):
        load_gap("friction=-1")
    bad = tmp_path / "mine.yaml"
    bad.write_text("friction: 0.5\nbacklash_deg: 1\n")
    with pytest.raises(GapError, match=rf"{bad}: backlash_deg: unknown key \(did you mean 'backlash'\?\)"):
        load_gap(str(bad))
    with pytest.raises(GapError, match="unknown gap profile 'icy'.*known: .*slippery"):
        load_gap("icy")
    with pytest.raises(GapError, match="kp_scale: has 3 values, the robot has 8 joints"):
        make("kp_scale=[1,1,1]")


def test_backlash_leaves_the_joint_short_of_the_command_by_the_approach_direction():
    play = 0.1
    results = {}
    for name, gap in (("tight", None), ("loose", f"backlash={play}")):
        r = make(gap)
        stand(r, 30)
        base = QUAD.default_pose.copy()
        up = base.copy()
        up[0] += 0.2
        for target in (up, base):               # approach the default pose from above
            for _ in range(40):
                s = ask(r, P.Command(tuple(target)))
        results[name] = s.q[0]
    assert results["loose"] - results["tight"] == pytest.approx(play / 2, abs=0.015)


# ---------------------------------------------------------------- fault specs

def test_fault_spec_parses_every_item():
    s = parse_faults("drop=0.1,corrupt=0.05,late=0.02:3,dup=0.01,stall_at=2:0.5,disconnect_at=9,"
                     "device_fault=3:overheat:fl_knee:1,tilt_at=4:90,nan_at=5:2,freeze_timestamp_at=6,estop_at=7")
    assert (s.drop, s.corrupt, s.late, s.late_factor, s.dup) == (0.1, 0.05, 0.02, 3.0, 0.01)
    kinds = [(f.kind, f.at) for f in s.timed]
    assert kinds == [("stall", 2), ("device_fault", 3), ("tilt", 4), ("nan", 5), ("freeze_timestamp", 6),
                     ("estop", 7), ("disconnect", 9)]
    dev = s.timed[1]
    assert (dev.fault, dev.joint, dev.duration) == ("overheat", "fl_knee", 1.0)
    assert math.isinf(s.timed[4].duration) and s.timed[3].value == 2 and s.timed[2].duration == 1.0


@pytest.mark.parametrize("text, match", [
    ("drop", "'drop': expected key=value"),
    ("drop=1.5", "probability must be <= 1"),
    ("drop=0.6,corrupt=0.6", "add up to 1.2 > 1"),
    ("flood=0.1", "unknown fault 'flood'"),
    ("stall_at=x", "time 'x' is not a number"),
    ("device_fault=1:melted", "KIND one of overheat"),
    ("tilt_at=1", "tilt_at=T:DEG"),
    ("disconnect_at=1:2", "too many ':' fields"),
])
def test_bad_fault_specs_name_the_item(text, match):
    with pytest.raises(FaultSpecError, match=match):
        parse_faults(text)


def test_bad_fault_joint_is_named():
    with pytest.raises(FaultSpecError, match="joint 'tail'"):
        make(faults="device_fault=1:overload:tail")


def test_reply_faults_are_exclusive_and_drawn_at_their_rates():
    s = parse_faults("drop=0.1,corrupt=0.2,late=0.05,dup=0.15")
    rng = np.random.default_rng(3)
    draws = [s.draw(rng) for _ in range(20000)]
    for name, p in (("drop", 0.1), ("corrupt", 0.2), ("late", 0.05), ("dup", 0.15), (None, 0.5)):
        assert draws.count(name) / len(draws) == pytest.approx(p, abs=0.015)
    assert FaultSchedule().draw(rng) is None


def test_corrupt_always_breaks_the_frame_inside_its_delimiters():
    frame = P.encode(P.Heartbeat(), 5)
    rng = np.random.default_rng(0)
    for _ in range(500):
        bad = corrupt(frame, rng)
        assert bad[0] == 0 and bad[-1] == 0 and bad != frame
        items = P.FrameDecoder().feed(bad)
        assert items and not any(isinstance(i, P.Frame) for i in items)


# ---------------------------------------------------------------- robot behaviour (lockstep)

def test_every_robot_answers_in_its_own_joint_order(robot):
    spec = load_robot(robot)
    r = MockRobot(spec, GapProfile(), parse_faults(""), 0, LOCKSTEP)
    info = r.handle(P.Frame(1, P.Hello()), 0.0)
    assert info.robot_name == robot and info.joint_names == tuple(spec.joint_names)
    assert isinstance(r.handle(P.Frame(2, P.Torque(True)), 0.0), P.State)
    s = r.handle(P.Frame(3, P.Command(tuple(spec.default_pose))), 0.0)
    assert len(s.q) == spec.n_joints and s.status & P.Status.TORQUE_ON


def test_handshake_identity_and_lockstep_clock():
    r = make()
    info = ask(r, P.Hello())
    assert info.robot_name == "quadruped" and info.joint_names == tuple(QUAD.joint_names)
    assert info.simulated and info.capabilities & P.Capability.GAINS and info.watchdog_ms == 0
    s0 = ask(r, P.GetState())
    assert not s0.status & P.Status.TORQUE_ON and s0.status & P.Status.SIMULATED
    s1 = ask(r, P.Command(tuple(QUAD.default_pose)))
    s2 = ask(r, P.Command(tuple(QUAD.default_pose)))
    assert s2.timestamp_us - s1.timestamp_us == round(QUAD.control.period * 1e6)
    assert ask(r, P.GetState()).timestamp_us == s2.timestamp_us      # only COMMAND advances time


def test_stands_and_modes_and_ground_truth():
    r = make()
    s = stand(r, 60)
    assert s.status & P.Status.TORQUE_ON and not s.status & (P.Status.HOLDING | P.Status.DAMPING)
    assert np.allclose(s.q, QUAD.default_pose, atol=0.05)
    gt = ask(r, P.SimGetGroundTruth())
    assert gt.base_pos[2] > 0.12 and not gt.fallen and gt.sim_time_s == pytest.approx(r.sim.time)
    assert ask(r, P.Hold()).status & P.Status.HOLDING
    assert not ask(r, P.Command(tuple(QUAD.default_pose))).status & P.Status.HOLDING
    damp = ask(r, P.Damp())
    assert damp.status & P.Status.DAMPING and damp.status & P.Status.TORQUE_ON
    limp = make()
    stand(limp, 61)
    assert not ask(limp, P.Torque(False)).status & (P.Status.TORQUE_ON | P.Status.DAMPING)
    for _ in range(25):                         # DAMP ignores targets: the robot sags, slower than limp
        ask(r, P.Command(tuple(QUAD.default_pose)))
        ask(limp, P.Command(tuple(QUAD.default_pose)))
    sag = {k: gt.base_pos[2] - ask(x, P.SimGetGroundTruth()).base_pos[2] for k, x in (("damp", r), ("off", limp))}
    assert 0.001 < sag["damp"] < 0.9 * sag["off"], sag     # back-EMF damps even a limp servo
    assert not ask(r, P.Torque(False)).status & (P.Status.TORQUE_ON | P.Status.DAMPING)


def test_bad_requests_get_typed_errors():
    r = make()
    n = QUAD.n_joints
    e = ask(r, P.Command((0.0,) * (n - 1)))
    assert isinstance(e, P.Error) and e.code == P.ErrorCode.JOINT_COUNT
    q = list(QUAD.default_pose)
    q[3] = math.nan
    e = ask(r, P.Command(tuple(q)))
    assert e.code == P.ErrorCode.BAD_REQUEST and "fr_knee" in e.detail
    e = ask(r, P.Command(tuple(QUAD.default_pose), (1.0,) * n, (-1.0,) * n))
    assert e.code == P.ErrorCode.BAD_REQUEST and "kd_scale" in e.detail
    for scale in (2.5, 1e30):                   # gain scales lie in [0, MAX_GAIN_SCALE]
        e = ask(r, P.Command(tuple(QUAD.default_pose), (scale,) * n, (1.0,) * n))
        assert e.code == P.ErrorCode.BAD_REQUEST and "kp_scale" in e.detail
    assert isinstance(ask(r, P.Command(tuple(QUAD.default_pose), (P.MAX_GAIN_SCALE,) * n, (0.0,) * n)), P.State)
    e = ask(r, P.State(0, 0, 0, 0, (), (), (1, 0, 0, 0), (0, 0, 0), (0, 0, 0)))
    assert e.code == P.ErrorCode.UNKNOWN_TYPE
    assert isinstance(ask(r, P.Torque(True)), P.State)
    e = r.handle(P.Frame(0, P.Torque(False)), 0.0)             # tag 0 is the robot's, never executed
    assert e.code == P.ErrorCode.BAD_REQUEST and "tag 0" in e.detail and r.mode != "off"
    e = make(calibrated=False).handle(P.Frame(1, P.Torque(True)), 0.0)
    assert e.code == P.ErrorCode.REFUSED and "calibrated" in e.detail


def test_targets_are_clamped_to_the_robots_limits():
    r = make()
    stand(r, 20)
    q = QUAD.default_pose.copy()
    q[1] = 5.0                                  # knee max is 0.0
    for _ in range(60):
        s = ask(r, P.Command(tuple(q)))
    assert s.q[1] <= QUAD.joint_max[1] + 0.05


def test_device_fault_latches_until_its_cause_is_gone():
    r = make(faults="device_fault=0.11:overheat:fr_knee:0.2")
    stand(r, 10)                                # 0.2 s: the fault fired at 0.11 s
    s = ask(r, P.GetState())
    assert s.errors == P.Fault.OVERHEAT and s.fault_joints == 1 << QUAD.joint_names.index("fr_knee")
    e = ask(r, P.ClearErrors())
    assert e.code == P.ErrorCode.REFUSED and "OVERHEAT" in e.detail
    assert ask(r, P.Torque(True)).code == P.ErrorCode.REFUSED
    for _ in range(10):                         # cause gone at 0.31 s; the bits stay latched
        s = ask(r, P.Command(tuple(QUAD.default_pose)))
    assert s.errors == P.Fault.OVERHEAT
    s = ask(r, P.ClearErrors())
    assert isinstance(s, P.State) and s.errors == 0 and s.fault_joints == 0
    assert r.injected.device_fault == 1


def test_estop_cuts_torque_ignores_commands_and_latches():
    r = make(faults="estop_at=0.11:0.2")
    stand(r, 10)
    s = ask(r, P.Command(tuple(QUAD.default_pose)))
    assert s.status & P.Status.ESTOP and not s.status & P.Status.TORQUE_ON
    assert ask(r, P.ClearErrors()).code == P.ErrorCode.REFUSED       # button still pressed
    for _ in range(10):
        ask(r, P.Command(tuple(QUAD.default_pose)))
    assert ask(r, P.GetState()).status & P.Status.ESTOP             # released, still latched
    assert not ask(r, P.ClearErrors()).status & P.Status.ESTOP
    assert ask(r, P.Torque(True)).status & P.Status.TORQUE_ON


def test_tilt_nan_and_frozen_timestamp_are_injected_on_schedule():
    # Off the 20 ms command grid, so each event lands inside one known command.
    r = make(faults="tilt_at=0.41:90:0.5,nan_at=0.21:2,freeze_timestamp_at=0.61:0.2")
    stand(r, 10)                                # t = 0.2 s
    s = [ask(r, P.Command(tuple(QUAD.default_pose))) for _ in range(3)]
    assert [math.isnan(x.gyro[0]) for x in s] == [True, True, False]
    for _ in range(10):                         # t = 0.46 s: held at 90 degrees since 0.41 s
        s = ask(r, P.Command(tuple(QUAD.default_pose)))
    w, x = s.quat[0], s.quat[1]
    assert math.degrees(2 * math.atan2(abs(x), abs(w))) == pytest.approx(90, abs=5)
    assert ask(r, P.SimGetGroundTruth()).fallen and r.falls == 1
    stamps = [ask(r, P.Command(tuple(QUAD.default_pose))).timestamp_us for _ in range(20)]   # 0.48 .. 0.86 s
    assert stamps.count(610_000) == 10                          # 0.62 .. 0.80 s report 0.61 s
    assert stamps[:7] == sorted(set(stamps[:7])) and stamps[-3:] == [820_000, 840_000, 860_000]
    assert (r.injected.tilt, r.injected.nan, r.injected.freeze_timestamp) == (1, 2, 1)


def test_reset_to_a_pose_and_reseeded_noise_repeats():
    r = make("worn")
    pose = tuple(QUAD.default_pose + 0.1)
    s = ask(r, P.SimReset(5, pose, (0.0, 0.0, 0.3), (1.0, 0.0, 0.0, 0.0)))
    assert np.allclose(s.q, pose, atol=0.05)    # worn adds noise and 0.02 rad offset, encoders read q
    assert ask(r, P.SimGetGroundTruth()).base_pos[2] == pytest.approx(0.3, abs=1e-6)
    again = ask(r, P.SimReset(5, pose, (0.0, 0.0, 0.3), (1.0, 0.0, 0.0, 0.0)))
    assert again.q == s.q and again.timestamp_us == s.timestamp_us
    assert ask(r, P.SimReset(0, pose[:3])).code == P.ErrorCode.JOINT_COUNT
