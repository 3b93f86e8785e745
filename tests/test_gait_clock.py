"""The optional gait clock (robot.yaml `gait:`): validated, in the shared observation, in the
reward, and carried by a bundle so the runtime counts the same phase as the simulator."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from simreal.envs import rewards
from simreal.envs.locomotion import LocomotionEnv
from simreal.robot.observation import ObservationLayout, RobotState, builder_for, layout_for
from simreal.robot.spec import RobotSpecError, load_robot

PLAIN_BIPED = Path(__file__).resolve().parents[1] / "robots" / "biped"
GAIT = {"period": 0.5, "offsets": [0.0, 0.5], "stance": 0.55}


def biped_with(tmp_path: Path, gait: dict | None, **scales: float) -> Path:
    """A copy of the biped under tmp_path/biped with a gait section and extra reward scales."""
    dst = tmp_path / "biped"
    shutil.copytree(PLAIN_BIPED, dst)
    path = dst / "robot.yaml"
    data = yaml.safe_load(path.read_text())
    if gait is not None:
        data["gait"] = gait
    data["task"]["reward_scales"].update(scales)
    path.write_text(yaml.safe_dump(data))
    return dst


@pytest.fixture
def gait_biped(tmp_path, monkeypatch):
    """The clocked biped, found by name (SIMREAL_ROBOT_PATH comes first)."""
    biped_with(tmp_path, GAIT, gait_phase=1.0)
    monkeypatch.setenv("SIMREAL_ROBOT_PATH", str(tmp_path))
    return load_robot("biped")


def _error(folder: Path) -> str:
    with pytest.raises(RobotSpecError) as err:
        load_robot(folder)
    return str(err.value)


def test_gait_section_is_validated(tmp_path):
    msg = _error(biped_with(tmp_path / "a", {**GAIT, "offsets": [0.0]}))
    assert "robot.yaml" in msg and "gait.offsets" in msg and "2 feet" in msg
    msg = _error(biped_with(tmp_path / "b", {**GAIT, "offsets": [0.0, 1.5]}))
    assert "gait.offsets" in msg and "[1.5]" in msg
    msg = _error(biped_with(tmp_path / "c", None, gait_phase=1.0))
    assert "task.reward_scales.gait_phase" in msg and "gait:" in msg


def test_layout_gains_a_phase_term_only_with_a_clock(gait_biped):
    plain, clocked = layout_for(load_robot(PLAIN_BIPED)), layout_for(gait_biped)
    assert "phase" not in [t.name for t in plain.terms] and plain.gait_period is None
    assert [t.name for t in clocked.terms][-1] == "phase"
    assert clocked.size == plain.size + 2 and clocked.gait_period == 0.5
    assert ObservationLayout.from_dict(clocked.to_dict()) == clocked
    assert ObservationLayout.from_dict({k: v for k, v in plain.to_dict().items()
                                        if k != "gait_period"}) == plain   # bundles made before


def test_builder_counts_control_steps_and_restarts_on_reset(gait_biped):
    build = builder_for(gait_biped)              # period 0.5 s, 20 ms steps: 25 steps a cycle
    n = gait_biped.n_joints
    state = RobotState(np.zeros(n), np.zeros(n), np.array([1.0, 0, 0, 0]), np.zeros(3))
    phases = [build(state, np.zeros(n), np.zeros(2))[-2:] for _ in range(27)]
    np.testing.assert_allclose(phases[0], [0.0, 1.0], atol=1e-12)                    # sin, cos
    np.testing.assert_allclose(phases[25], phases[0], atol=1e-6)
    np.testing.assert_allclose(phases[5], [np.sin(0.4 * np.pi), np.cos(0.4 * np.pi)], atol=1e-6)
    assert build.phase == pytest.approx(26 * 0.02 / 0.5 % 1.0)
    build.reset()
    np.testing.assert_allclose(build(state, np.zeros(n), np.zeros(2))[-2:], [0.0, 1.0], atol=1e-12)


def test_stance_schedule_alternates_the_feet():
    offsets = np.array([0.0, 0.5])
    assert rewards.stance_expected(0.1, offsets, 0.55).tolist() == [True, False]
    assert rewards.stance_expected(0.52, offsets, 0.55).tolist() == [True, True]    # double support
    assert rewards.stance_expected(0.7, offsets, 0.55).tolist() == [False, True]


def test_gait_phase_term_pays_matching_contacts_while_moving():
    base = dict(lin_vel_body=np.zeros(3), ang_vel_body=np.zeros(3), up_z=1.0, torque=np.zeros(2),
                action=np.zeros(2), last_action=np.zeros(2), foot_speed=np.zeros(2),
                foot_touchdown=np.zeros(2, bool), foot_air_time=np.zeros(2),
                posture_error=np.zeros(0), fell=False, stance_expected=np.array([True, False]))
    term = rewards.TERMS["gait_phase"]
    walk = np.array([0.3, 0.0])
    assert term(rewards.StepQuantities(foot_contact=np.array([True, False]), command=walk, **base)) == 1.0
    assert term(rewards.StepQuantities(foot_contact=np.array([True, True]), command=walk, **base)) == 0.5
    assert term(rewards.StepQuantities(foot_contact=np.array([False, True]), command=walk, **base)) == 0.0
    assert term(rewards.StepQuantities(foot_contact=np.array([True, False]), command=np.zeros(2),
                                       **base)) == 0.0


def test_env_observes_the_clock_and_pays_by_it(gait_biped):
    env = LocomotionEnv(gait_biped, randomize=False, command=(0.3, 0.0))
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (layout_for(gait_biped).size,)
    np.testing.assert_allclose(obs[-2:], [0.0, 1.0], atol=1e-6)
    paid = []
    for k in range(1, 10):
        acted_on = env.obs_builder.phase          # the reward judges the phase the policy saw
        obs, _, _, _, info = env.step(np.zeros(gait_biped.n_joints))
        assert env.obs_builder.phase == pytest.approx(k * 0.02 / 0.5)
        np.testing.assert_allclose(obs[-2:], [np.sin(2 * np.pi * k / 25), np.cos(2 * np.pi * k / 25)],
                                   atol=1e-6)
        want = rewards.stance_expected(acted_on, np.array(GAIT["offsets"]), GAIT["stance"])
        paid.append(info["reward_terms"]["gait_phase"])
        assert paid[-1] == pytest.approx(np.mean(env.sim.foot_contacts() == want))
    assert paid[0] == 1.0 and min(paid) < 1.0   # both feet down at phase 0; standing still misses
    env.reset(seed=1)
    assert env.obs_builder.phase == 0.0


def test_bundle_carries_the_clock_to_the_runtime(gait_biped, tmp_path):
    from test_policy import make_bundle

    from simreal.deploy import Policy

    bundle = make_bundle(tmp_path / "bundle", gait_biped)
    policy = Policy.load(bundle)
    assert policy.layout == layout_for(gait_biped)
    runtime_build, sim_build = policy.observation_builder(), builder_for(gait_biped)
    n = gait_biped.n_joints
    state = RobotState(np.full(n, 0.1), np.zeros(n), np.array([1.0, 0, 0, 0]), np.zeros(3))
    for _ in range(30):
        np.testing.assert_array_equal(runtime_build(state, np.zeros(n), np.array([0.3, 0.0])),
                                      sim_build(state, np.zeros(n), np.array([0.3, 0.0])))
