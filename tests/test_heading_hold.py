"""Issue 14, heading: simreal.robot.heading's hold turns heading error into the observed yaw command,
one function for the training env, the batched env (tests/test_batched_env.py), eval, gap and the
deploy runtime; checked here by hand against the formula on each side."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from simreal.bundle.contract import trained_commands
from simreal.bundle.policy import Policy
from simreal.bundle.shipped import shipped_bundle
from simreal.deploy.plan import RuntimeConfig, StartRefused
from simreal.deploy.runlog import read_log
from simreal.deploy.session import check_arguments, deploy
from simreal.deploy.summary import format_summary
from simreal.envs.locomotion import LocomotionEnv
from simreal.envs.rewards import YAW_SIGMA
from simreal.mock.faults import parse_faults
from simreal.mock.gap import load_gap
from simreal.mock.robot import MockRobot, RobotOptions
from simreal.mock.threaded import ThreadedMock
from simreal.robot.heading import START, HeadingHold, wrap_angle
from simreal.robot.observation import heading_of
from simreal.robot.spec import load_robot

HOLD = HeadingHold(gain=1.0, yaw_range=(-0.3, 0.3), period=0.02)


def test_wrap_angle_maps_onto_minus_pi_to_pi():
    np.testing.assert_allclose(wrap_angle([0.0, 3 * math.pi / 2, -3 * math.pi / 2, 2 * math.pi + 0.1]),
                               [0.0, -math.pi / 2, math.pi / 2, 0.1], atol=1e-12)


def test_the_hold_adds_gain_times_heading_error_inside_the_trained_range():
    cmd, ref = HOLD.command(np.array([0.3, 0.0]), START, 0.7)        # first cycle: the reference starts here
    assert cmd.tolist() == [0.3, 0.0] and ref == pytest.approx(0.7)
    cmd, ref = HOLD.command(np.array([0.3, 0.1]), 0.7, 0.6)          # turned 0.1 rad right of the reference
    assert cmd[1] == pytest.approx(0.1 + 1.0 * 0.1) and ref == pytest.approx(0.7 + 0.1 * 0.02)
    assert HOLD.command(np.array([0.3, 0.0]), 0.0, 1.0)[0][1] == -0.3   # clipped to the trained range
    # across the +-pi seam the error is the short way round
    assert HOLD.command(np.array([0.3, 0.0]), math.pi - 0.05, -math.pi + 0.05)[0][1] == pytest.approx(-0.1)
    batch, _ = HOLD.command(np.zeros((3, 2)), np.array([START, 0.0, 0.0]), np.array([0.2, 0.1, -0.2]))
    np.testing.assert_allclose(batch[:, 1], [0.0, -0.1, 0.2])


def test_the_hold_is_off_at_gain_zero_or_for_a_policy_trained_without_turning():
    for hold in (HeadingHold(0.0, (-0.3, 0.3), 0.02), HeadingHold(1.0, (0.0, 0.0), 0.02)):
        assert not hold.active
        assert hold.command(np.array([0.3, 0.0]), 0.0, 1.0)[0].tolist() == [0.3, 0.0]
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="heading hold gain"):
            HeadingHold(bad, (-0.3, 0.3), 0.02)


def test_the_env_observes_the_held_command_and_rewards_tracking_it():
    env = LocomotionEnv("biped", randomize=False, command=(0.3, 0.0), heading_hold=1.0)
    obs, info = env.reset(seed=0)
    h0 = info["heading"]
    rng = np.random.default_rng(0)
    layout = env.obs_builder.layout
    at = [layout.entry_names().index(f"command[{i}]") for i in range(2)]     # the newest frame's
    scale = next(t.scale for t in layout.terms if t.name == "command")
    yaws = []
    yaw_scale = env.spec_robot.task.reward_scales["tracking_yaw"]
    for _ in range(60):
        asked = env.observed_command[1]                # what the policy is shown before it acts
        obs, _, term, trunc, info = env.step(rng.normal(0, 0.5, env.action_space.shape))
        yaw_rate = env.sim.base_ang_vel_body()[2]
        assert info["reward_terms"]["tracking_yaw"] == pytest.approx(
            yaw_scale * math.exp(-(yaw_rate - asked) ** 2 / YAW_SIGMA), rel=1e-9)   # rewarded for the held command
        # nominal robot: no IMU noise or bias, so the hold saw the true heading
        want = float(np.clip(wrap_angle(h0 - info["heading"]), -0.3, 0.3))
        assert env.observed_command[1] == pytest.approx(want, abs=1e-9)
        assert info["command"].tolist() == [0.3, 0.0]                  # the episode's command is unchanged
        yaws.append(env.observed_command[1])
        np.testing.assert_allclose(obs[at], env.observed_command * scale, rtol=1e-6, atol=1e-7)
        if term or trunc:
            break
    assert max(abs(y) for y in yaws) > 0.01          # random actions turned it, and the hold answered


def mock(robot: str) -> MockRobot:
    return MockRobot(load_robot(robot), load_gap("nominal")[1], parse_faults(None), 0,
                     RobotOptions(lockstep=True, watchdog_s=0))


@pytest.mark.parametrize("gain", [1.0, 0.0])
def test_the_runtime_holds_the_heading_from_the_imu(tmp_path, gain):
    log = tmp_path / "run.jsonl"
    with ThreadedMock(mock("biped")) as m:
        summary, _ = deploy(str(shipped_bundle("biped")), m.url, duration_s=1.0, command="vx=0.3,yaw=0.1",
                            log_path=str(log), config=RuntimeConfig(heading_hold=gain, handle_signals=False),
                            confirm=lambda info: True)
    assert summary["heading_hold"] == gain
    assert ("heading hold: gain 1 " if gain else "heading hold: off") in format_summary(summary)
    cyc = [c for c in read_log(log).cycles if c.get("phase") == "policy" and "command" in c]
    assert len(cyc) >= 40
    heading = heading_of(np.array([c["state"]["quat"] for c in cyc]))
    ref = heading[0] + 0.1 * 0.02 * np.arange(len(cyc))          # the reference turns at the commanded rate
    want = np.clip(0.1 + gain * wrap_angle(ref - heading), -0.3, 0.3)
    np.testing.assert_allclose([c["command"][1] for c in cyc], want, atol=1e-9)
    assert all(c["command"][0] == 0.3 for c in cyc)


def _open_loop_copy(tmp_path) -> Path:
    """The shipped quadruped as a bundle exported before policy.json recorded the hold (trained open loop)."""
    bundle = tmp_path / "open_loop"
    shutil.copytree(shipped_bundle("quadruped"), bundle)
    doc = json.loads((bundle / "policy.json").read_text())
    del doc["heading_hold"]
    (bundle / "policy.json").write_text(json.dumps(doc))
    return bundle


@pytest.mark.parametrize("which, trained", [("shipped", 1.0), ("open loop", 0.0)])
def test_the_runtime_defaults_to_the_gain_the_bundle_was_trained_with(tmp_path, which, trained):
    bundle = shipped_bundle("quadruped") if which == "shipped" else _open_loop_copy(tmp_path)
    assert Policy.load(bundle).contract.heading_hold == trained
    with ThreadedMock(mock("quadruped")) as m:
        summary, _ = deploy(str(bundle), m.url, duration_s=0.2, log_path=str(tmp_path / "r.jsonl"),
                            config=RuntimeConfig(handle_signals=False), confirm=lambda info: True)
    assert summary["heading_hold"] == trained


def test_a_bad_gain_is_refused_naming_the_flag():
    with pytest.raises(StartRefused, match="--heading-hold"):
        check_arguments(1.0, None, RuntimeConfig(heading_hold=math.nan))


def test_the_contract_carries_the_command_ranges_trained_on():
    spec = load_robot("quadruped")
    assert trained_commands(spec, {}) == {"command_vx": list(spec.task.command_vx),
                                          "command_yaw": list(spec.task.command_yaw), "heading_hold": 0.0}
    got = trained_commands(spec, {"command_yaw": (-0.3, 0.3), "heading_hold": 1.0, "episode_seconds": 5})
    assert got == {"command_vx": list(spec.task.command_vx), "command_yaw": [-0.3, 0.3], "heading_hold": 1.0}
