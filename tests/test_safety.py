"""Each safety check on its own (faults.md C1-C8, C10), with no robot, link or clock."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from simreal.deploy import safety as S

LO = np.array([-0.6, -2.4, -0.6, -2.4])
HI = np.array([1.8, 0.0, 1.8, 0.0])

nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])


def quat_roll(deg: float) -> tuple[float, float, float, float]:
    a = math.radians(deg) / 2
    return (math.cos(a), math.sin(a), 0.0, 0.0)


# --------------------------------------------------------------------------- C1 / C2

@given(bad=nonfinite, j=st.integers(0, 3))
def test_non_finite_values_are_named_and_refused_before_any_clamp(bad, j):
    t = np.zeros(4)
    t[j] = bad
    assert S.non_finite_fields(a=np.ones(3), targets=t, ts=1.0) == ["targets"]
    with pytest.raises(S.NonFiniteError, match="targets"):
        S.clamp_to_limits(t, LO, HI)          # np.clip would have made a NaN into a bound or kept it
    layer = S.SafetyLayer(LO, HI, 0.1)
    layer.start_from(np.zeros(4))
    before = layer.previous.copy()
    with pytest.raises(S.NonFiniteError):
        layer.filter(t)
    assert np.array_equal(layer.previous, before)   # nothing derived from it is remembered either


def test_state_problem_names_the_field():
    from simreal.robot.observation import RobotState
    ok = RobotState(np.zeros(4), np.zeros(4), np.array([1.0, 0, 0, 0]), np.zeros(3))
    assert S.state_problem(ok) is None
    bad = RobotState(np.zeros(4), np.array([0, math.inf, 0, 0]), np.array([1.0, 0, 0, 0]), np.zeros(3))
    assert "joint_vel" in S.state_problem(bad)
    assert S.non_finite_fields(x="not a number") == ["x"]


# --------------------------------------------------------------------------- C3

@settings(max_examples=60, deadline=None)
@given(seq=st.lists(st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=4), min_size=1, max_size=12),
       start=st.lists(st.floats(-4, 4), min_size=4, max_size=4), step=st.floats(0.001, 1.0))
def test_filtered_targets_change_at_most_step_and_never_move_further_out(seq, start, step):
    layer = S.SafetyLayer(LO, HI, step)
    layer.start_from(start)
    prev = np.asarray(start)
    outside = lambda x: np.maximum(LO - x, 0) + np.maximum(x - HI, 0)   # noqa: E731
    for targets in seq:
        out = layer.filter(targets)
        assert np.max(np.abs(out.sent - prev)) <= step + 1e-9
        assert np.all(outside(out.sent) <= outside(prev) + 1e-12)      # inside stays inside; outside only comes in
        want = np.asarray(targets)
        lo, hi = np.minimum(LO, prev), np.maximum(HI, prev)
        clamped = np.clip(want, lo, hi)
        assert set(out.clamped) == set(np.flatnonzero(clamped != want).tolist())
        assert set(out.rate_limited) == set(np.flatnonzero(out.sent != clamped).tolist())
        prev = out.sent
    inside = np.all((np.asarray(start) >= LO) & (np.asarray(start) <= HI))
    if inside:
        assert np.all(prev >= LO) and np.all(prev <= HI)


def test_a_start_outside_the_limits_is_brought_in_then_held_in():
    layer = S.SafetyLayer(LO, HI, 0.2)
    layer.start_from([0.5, -3.0, 0.5, -1.0])                 # a limp knee folded past -2.4
    sent = [layer.filter([0.5, -1.0, 0.5, -1.0]).sent[1] for _ in range(12)]
    assert sent[:3] == pytest.approx([-2.8, -2.6, -2.4]) and sent[-1] == pytest.approx(-1.0)
    assert layer.filter([0.5, -5.0, 0.5, -1.0]).sent[1] == pytest.approx(-1.2)
    assert min(layer.filter([0.5, -5.0, 0.5, -1.0]).sent[1] for _ in range(20)) == pytest.approx(-2.4)


def test_targets_inside_limits_and_step_pass_unchanged():
    layer = S.SafetyLayer(LO, HI, 0.5)
    layer.start_from([0.5, -1.0, 0.5, -1.0])
    out = layer.filter([0.6, -1.1, 0.4, -0.9])
    assert np.allclose(out.sent, [0.6, -1.1, 0.4, -0.9]) and out.clamped == [] and out.rate_limited == []
    out = layer.filter([5.0, -1.1, 0.4, -0.9])         # a jump: clamped to 1.8, then limited to +0.5
    assert out.sent[0] == pytest.approx(1.1) and out.clamped == [0] and out.rate_limited == [0]


def test_limit_step_and_layer_refuse_bad_shapes_and_configs():
    with pytest.raises(ValueError):
        S.SafetyLayer(HI, LO, 0.1)
    with pytest.raises(ValueError):
        S.SafetyLayer(LO, HI, 0.0)
    layer = S.SafetyLayer(LO, HI, 0.1)
    with pytest.raises(ValueError, match="shape"):
        layer.filter([0.0, 0.0])
    assert np.allclose(S.limit_step(np.array([1.0, -1.0]), np.zeros(2), 0.25), [0.25, -0.25])


# --------------------------------------------------------------------------- C6

@pytest.mark.parametrize("deg", [0.0, 30.0, 60.0, 90.0, 120.0, 180.0])
def test_tilt_angle_of_a_roll(deg):
    assert S.tilt_deg(quat_roll(deg)) == pytest.approx(deg, abs=1e-6)
    # Scale does not matter (the IMU quaternion may be slightly off unit length); yaw does not tilt.
    assert S.tilt_deg([2 * v for v in quat_roll(deg)]) == pytest.approx(deg, abs=1e-6)
    c, s = math.cos(0.7), math.sin(0.7)
    yawed = (c * quat_roll(deg)[0], c * quat_roll(deg)[1], s * quat_roll(deg)[1], s * quat_roll(deg)[0])
    assert S.tilt_deg(yawed) == pytest.approx(deg, abs=1e-6)


def test_tilt_monitor_is_debounced_and_resets():
    m = S.TiltMonitor(60.0, debounce=3)
    assert m.update(quat_roll(90)) is None and m.update(quat_roll(90)) is None
    assert m.update(quat_roll(10)) is None            # a level reading resets the count
    assert m.update(quat_roll(90)) is None and m.update(quat_roll(90)) is None
    assert "tilt 90.0" in m.update(quat_roll(90))


@pytest.mark.parametrize("quat", [(math.nan, 0, 0, 0), (1, math.inf, 0, 0), (0, 0, 0, 0)])
def test_non_finite_imu_is_a_fall_at_once_not_level(quat):
    m = S.TiltMonitor(60.0, debounce=5)
    assert math.isnan(S.tilt_deg(quat))
    assert "not finite" in m.update(quat)


# --------------------------------------------------------------------------- C4 / C5 / C7 / T2

def test_stale_monitor_counts_cycles_without_an_advancing_timestamp():
    m = S.StaleMonitor(3)
    assert all(m.update(t) is None for t in (0.00, 0.02, 0.04))
    assert m.update(0.04) is None and m.update(0.04) is None
    assert "stuck at 0.040000 s for 3 cycles" in m.update(0.03)   # going backwards is stale too
    assert m.update(0.06) is None and m.count == 0


def test_failure_monitor_needs_k_in_a_row():
    m = S.FailureMonitor(3)
    assert m.failed("a") is None and m.failed("b") is None
    m.ok()
    assert m.failed("c") is None and m.failed("d") is None
    assert "3 consecutive failed cycles (last: e)" in m.failed("e")


def test_overrun_monitor_tolerates_a_stall_and_10_percent_but_not_persistence():
    m = S.OverrunMonitor(consecutive=5, window=50, fraction=0.5)
    pattern = [k % 10 == 0 for k in range(500)]       # 10% of cycles over budget
    pattern[100:102] = [True, True]                    # and one 2-cycle stall
    assert all(m.update(o) is None for o in pattern)
    m = S.OverrunMonitor(consecutive=5, window=50, fraction=0.5)
    assert [m.update(True) for _ in range(5)][-1] == "5 consecutive overruns"
    m = S.OverrunMonitor(consecutive=100, window=10, fraction=0.5)
    out = [m.update(k % 3 != 0) for k in range(10)]   # 6 of 10
    assert out[-1] == "6 overruns in the last 10 cycles"


def test_joint_limit_problem_names_the_joint():
    q = np.array([0.5, -1.0, 0.5, -1.0])
    assert S.joint_limit_problem(q, LO, HI, 0.1) is None
    q[1] = 0.05                                         # past the limit but within the margin
    assert S.joint_limit_problem(q, LO, HI, 0.1) is None
    q[1] = 0.2
    assert "knee_l at +0.200" in S.joint_limit_problem(q, LO, HI, 0.1, ["hip_l", "knee_l", "hip_r", "knee_r"])
    assert S.joint_limit_problem(q, LO, HI, 0.1, joints=[0, 2, 3]) is None


def test_joint_limit_monitor_watches_a_joint_once_it_is_inside():
    m = S.JointLimitMonitor(LO, HI, 0.1, ["hip_l", "knee_l", "hip_r", "knee_r"])
    folded = np.array([0.5, -3.0, 0.5, -1.0])
    assert m.update(folded) is None and m.unarmed() == ["knee_l"]      # powered up outside: not a fault yet
    assert m.update(np.array([0.5, -2.45, 0.5, -1.0])) is None and m.unarmed() == []
    assert m.update(np.array([0.5, -2.45, 0.5, -2.6])) is not None    # armed joints may not leave
    assert "knee_l" in m.update(folded)


# --------------------------------------------------------------------------- C8

def test_command_watch_zero_after_timeout_and_fixed_commands_never_expire():
    w = S.CommandWatch((0.4, 0.0), timeout_s=0.5, now=10.0)
    assert list(w.current(10.5)) == [0.4, 0.0] and not w.timed_out
    assert list(w.current(10.51)) == [0.0, 0.0] and w.timed_out
    w.update((0.3, 0.1), 11.0)
    assert list(w.current(11.2)) == [0.3, 0.1] and not w.timed_out
    with pytest.raises(S.NonFiniteError):
        w.update((math.nan, 0.0), 11.3)
    assert list(w.current(11.3)) == [0.3, 0.1]
    fixed = S.CommandWatch((0.4, 0.0), timeout_s=None)
    assert list(fixed.current(1e9)) == [0.4, 0.0]


def test_clamp_command_to_trained_range():
    assert list(S.clamp_command((2.0, -1.0), [(0.2, 0.6), (0.0, 0.0)])) == [0.6, 0.0]
    with pytest.raises(S.NonFiniteError):
        S.clamp_command((math.nan, 0.0), [(0.2, 0.6), (0.0, 0.0)])


# --------------------------------------------------------------------------- C10

def test_latch_stays_safe_until_an_explicit_reset():
    latch = S.SafetyLatch()
    assert not latch.safe
    assert latch.trip(S.TILT, "fell", 1.0, 10) is True
    assert latch.trip(S.LINK_LOST, "later", 1.1, 11) is False      # recorded, but the first cause stays
    assert latch.safe and latch.latched_by.cause == S.TILT and len(latch.trips) == 2
    with pytest.raises(ValueError):
        latch.reset("")
    assert latch.safe
    latch.reset("operator")
    assert not latch.safe and latch.resets == ["operator"]
    assert latch.trip(S.OVERRUN, "again") is True and latch.latched_by.cause == S.OVERRUN


def test_safety_config_rejects_nonsense():
    with pytest.raises(ValueError, match="tilt_debounce"):
        S.SafetyConfig(tilt_debounce=0)
    with pytest.raises(ValueError, match="max_tilt_deg"):
        S.SafetyConfig(max_tilt_deg=0)


# --------------------------------------------------------------------------- the ordered table

def test_docs_safety_table_is_the_checks_table():
    """docs/safety.md section 2 lists the checks in the order safety.CHECKS runs them, row for row."""
    from conftest import ROOT

    section = (ROOT / "docs" / "safety.md").read_text().split("## 2.")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and not line.startswith(("| order", "|---"))]
    assert [(r[0], r[2]) for r in rows] == [(c.order, c.rows) for c in S.CHECKS]


def test_state_checks_run_in_table_order_and_the_first_failure_names_the_stop():
    from simreal.robot.observation import RobotState

    checks = S.StateChecks(LO, HI, ["a", "b", "c", "d"], S.SafetyConfig(tilt_debounce=1, stale_cycles=1),
                           max_tilt_deg=60.0)
    state_rows = [c.cause for c in S.CHECKS if c.order.startswith("state")]
    assert [cause for cause, _ in checks.pipeline] == state_rows
    level = np.array(quat_roll(0.0))
    assert checks.first_problem(RobotState(np.zeros(4), np.zeros(4), level, np.zeros(3), timestamp=1.0)) is None
    # beyond a joint limit AND fallen over AND a stuck clock: the joint limit (state 2) is the one reported
    q = np.array([0.0, 0.0, 2.5, 0.0])
    got = checks.first_problem(RobotState(q, np.zeros(4), np.array(quat_roll(90.0)), np.zeros(3), timestamp=1.0))
    assert got[0] == S.JOINT_LIMIT and "c at" in got[1]
    # a NaN in the state outranks everything (state 1)
    nan_q = np.array([math.nan, 0.0, 2.5, 0.0])
    assert checks.first_problem(RobotState(nan_q, np.zeros(4), level, np.zeros(3), timestamp=1.0))[0] == \
        S.NON_FINITE_STATE


# --------------------------------------------------------------------------- at rest before torque on (#15 defect 1)

NAMES8 = [f"j{i}" for i in range(8)]


def rest_reads(speed=0.0, gyro=(0.0, 0.0, 0.0), pos_noise=0.0, gyro_noise=0.0, seed=0, n=16, period=0.02):
    rng = np.random.default_rng(seed)
    t = np.arange(n) * period
    q = np.outer(t, np.r_[speed, np.zeros(7)]) + (rng.normal(0, pos_noise, (n, 8)) if pos_noise else 0.0)
    g = np.asarray(gyro) + (rng.normal(0, gyro_noise, (n, 3)) if gyro_noise else 0.0)
    return t, q, np.broadcast_to(g, (n, 3))


def test_rest_problem_names_the_moving_joint_and_the_turning_body():
    cfg = S.SafetyConfig()
    check = lambda *a, **k: S.rest_problem(*rest_reads(*a, **k), NAMES8, cfg.rest_joint_speed, cfg.rest_gyro)
    assert check() is None
    assert check(speed=0.2) == "j0 moving at 0.20 rad/s (limit 0.1)"     # a limp leg folding (measured ~0.2)
    assert check(gyro=(0.0, 0.1, 0.0)) == "body turning at 0.10 rad/s (limit 0.06)"
    assert S.rest_problem([1.0, 1.0], np.zeros((2, 8)), np.zeros((2, 3)), NAMES8, 0.1, 0.06) == \
        "no time passed between the reads"


def test_a_robot_at_rest_under_worn_sensor_noise_is_at_rest():
    # configs/gap/worn.yaml: joint_pos noise 0.005 rad, gyro noise 0.05 rad/s plus a 0.019 rad/s bias.
    # 200 seeds: the fitted speed and the mean rate must not read noise as motion.
    cfg = S.SafetyConfig()
    bias = (0.015, -0.01, 0.005)
    for seed in range(200):
        t, q, g = rest_reads(gyro=bias, pos_noise=0.005, gyro_noise=0.05, seed=seed)
        assert S.rest_problem(t, q, g, NAMES8, cfg.rest_joint_speed, cfg.rest_gyro) is None, seed


def test_rest_and_start_tilt_settings_are_validated():
    with pytest.raises(ValueError, match="start_max_tilt_deg"):
        S.SafetyConfig(start_max_tilt_deg=70.0)
    with pytest.raises(ValueError, match="rest_wait_s"):
        S.SafetyConfig(rest_wait_s=0.0)
