"""Locomotion environments: API checkers, reward bookkeeping, randomization, shared observation."""
import dataclasses
import warnings

import gymnasium as gym
import numpy as np
import pytest

from simreal.envs import rewards
from simreal.envs.locomotion import LocomotionEnv
from simreal.envs.registration import env_id, make_env
from simreal.robot.observation import gravity_in_body


def test_gymnasium_and_sb3_checkers_pass(robot):
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check(gym.make(env_id(robot)).unwrapped, skip_render_check=True)
        sb3_check(LocomotionEnv(robot), warn=True)


def test_registered_ids_make_after_import(robot):
    env = gym.make(env_id(robot))
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert "randomization" in info


def test_gymnasium_module_form_registers_from_a_bare_interpreter():
    """`import simreal` stays light; Gymnasium's "module:id" form imports simreal.envs, which registers."""
    import subprocess
    import sys

    code = ("import sys, gymnasium as gym, simreal\n"
            "assert 'simreal/Quadruped-v0' not in gym.registry and 'mujoco' not in sys.modules\n"
            "env = gym.make('simreal.envs:simreal/Quadruped-v0')\n"
            "obs, _ = env.reset(seed=0)\n"
            "print(obs.shape[0], type(env.unwrapped).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "LocomotionEnv"


def test_mujoco_model_and_data_where_gymnasium_tools_look():
    env = gym.make(env_id("quadruped"))
    env.reset(seed=0)
    u = env.unwrapped
    assert u.model is u.sim.model and u.data is u.sim.data
    before = u.data.qpos.copy()
    for _ in range(5):
        env.step(env.action_space.sample())
    assert not np.allclose(before, u.data.qpos)       # the data the env steps, not a copy


def test_random_rollout_1000_steps_finite_no_warnings(robot):
    env = make_env(robot, seed=3)
    env.reset(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(1000):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            assert np.all(np.isfinite(obs)) and np.isfinite(r)
            if term or trunc:
                env.reset()


def test_reward_terms_sum_to_reward(robot):
    env = LocomotionEnv(robot)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        _, r, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        terms = info["reward_terms"]
        seen |= set(terms)
        assert sum(terms.values()) == pytest.approx(r, abs=1e-9)
        if term or trunc:
            env.reset()
    assert seen == set(env.spec_robot.task.reward_scales)


def _sample(seed: int, **kw) -> dict:
    env = LocomotionEnv("quadruped", **kw)
    _, info = env.reset(seed=seed)
    return info["randomization"]


def test_randomization_same_seed_repeats_different_seeds_differ():
    a, b, c = _sample(7), _sample(7), _sample(8)
    assert a == b
    assert a != c
    assert a["friction"] != c["friction"] and a["kp_scale"] != c["kp_scale"]


def test_randomization_is_applied_to_the_model():
    env = LocomotionEnv("quadruped")
    _, info = env.reset(seed=5)
    m = env.sim.model
    assert m.geom_friction[env.sim.foot_geoms[0], 0] == pytest.approx(info["randomization"]["friction"])
    np.testing.assert_allclose(env.sim.servo.kp, env.spec_robot.servo.kp * np.array(info["randomization"]["kp_scale"]))
    np.testing.assert_allclose(m.actuator_gainprm[env.sim.act_idx, 0], env.sim.servo.kp)
    assert len(env._target_queue) == info["randomization"]["action_latency"] + 1


def test_no_randomize_is_nominal_and_deterministic():
    p = _sample(1, randomize=False)
    assert p["friction"] == 1.0 and p["action_latency"] == 0 and p["terrain_height"] == 0.0
    assert set(p["kp_scale"]) == {1.0}
    envs = [LocomotionEnv("quadruped", randomize=False, command=(0.4, 0.0)) for _ in range(2)]
    obs = [e.reset(seed=s)[0] for e, s in zip(envs, (1, 2))]
    np.testing.assert_array_equal(obs[0], obs[1])  # seed only picks randomization and command


def test_curriculum_scale_shrinks_ranges():
    env = LocomotionEnv("quadruped", randomization_scale=0.0)
    _, info = env.reset(seed=4)
    assert info["randomization"]["friction"] == pytest.approx(1.0)
    assert info["randomization"]["action_latency"] == 0
    env.set_randomization_scale(1.0)
    frictions = {env.reset(seed=s)[1]["randomization"]["friction"] for s in range(5)}
    assert len(frictions) == 5


def test_command_ranges_can_be_overridden_per_env():
    """A training stage may sample other commands than robot.yaml's task (e.g. no turning yet)."""
    default = LocomotionEnv("quadruped", randomize=False)
    lo, hi = default.spec_robot.task.command_vx
    assert all(lo <= default.reset(seed=s)[1]["command"][0] <= hi for s in range(5))
    env = LocomotionEnv("quadruped", randomize=False, command_vx=(0.25, 0.25), command_yaw=[-0.2, -0.2])
    for s in range(3):
        np.testing.assert_allclose(env.reset(seed=s)[1]["command"], [0.25, -0.2])


def test_env_observation_is_the_shared_function():
    """Without noise, the env's observation equals the runtime's builder on the measured state."""
    from simreal.robot.observation import builder_for

    env = LocomotionEnv("quadruped", randomize=False, command=(0.3, 0.1))
    env.reset(seed=0)
    builder = builder_for(env.spec_robot)
    action = np.full(8, 0.2)
    obs, *_ = env.step(action)
    expected = builder(env.sim.measure(), action, np.array([0.3, 0.1]))
    np.testing.assert_array_equal(obs, expected)


def test_gravity_in_body_frame():
    np.testing.assert_allclose(gravity_in_body(np.array([1.0, 0, 0, 0])), [0, 0, -1], atol=1e-12)
    # Rolled +90 deg about x: gravity points along body -y... check with a rotation matrix.
    half = np.pi / 4
    q = np.array([np.cos(half), np.sin(half), 0, 0])
    w, x, y, z = q
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(gravity_in_body(q), rot.T @ [0, 0, -1], atol=1e-12)


def test_falling_terminates_with_fell_and_pays_the_termination_term():
    env = LocomotionEnv("quadruped", randomize=False)
    env.spec_robot.task.reward_scales["termination"] = -50.0   # this env's own spec object
    env.reset(seed=0)
    _, _, term, _, info = env.step(np.zeros(8))
    assert not term and info["reward_terms"]["termination"] == 0.0
    env.sim.data.qpos[3:7] = [np.cos(0.7), np.sin(0.7), 0, 0]  # rolled 80 degrees
    _, _, term, trunc, info = env.step(np.zeros(8))
    assert term and not trunc and info["fell"] and info["reward_terms"]["termination"] == -50.0


def test_servo_speed_is_capped_by_back_emf():
    """Hanging in the air, a full-range target step cannot move a joint faster than v_max."""
    import mujoco

    from simreal.envs.physics import Simulator
    from simreal.robot.spec import load_robot

    spec = load_robot("quadruped")
    sim = Simulator(spec)
    sim.reset(height=1.0)
    sim.model.opt.gravity[:] = 0.0
    target = spec.default_pose.copy()
    target[1] = spec.joint_min[1]
    peak = 0.0
    for _ in range(100):
        sim.step(target, n_substeps=1)
        peak = max(peak, abs(sim.joint_vel()[1]))
    assert 0.5 * spec.servo.velocity_limit < peak <= 1.02 * spec.servo.velocity_limit
    assert mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_ACTUATOR, "fl_knee") == sim.act_idx[1]


def test_encoders_are_quantized():
    env = LocomotionEnv("quadruped", randomize=False)
    env.reset(seed=0)
    q = env.sim.measure().joint_pos
    ticks = q / env.sim.encoder_resolution
    np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-9)


def test_perturb_quat_is_a_small_rotation():
    from simreal.envs.sensors import perturb_quat as _perturb_quat

    q = np.array([np.cos(0.3), 0.0, np.sin(0.3), 0.0])
    out = _perturb_quat(q, np.array([0.0, 0.0, 0.0]))
    np.testing.assert_array_equal(out, q)
    out = _perturb_quat(q, np.array([0.02, -0.01, 0.03]))
    assert np.linalg.norm(out) == pytest.approx(1.0)
    angle = 2 * np.arccos(min(1.0, abs(float(out @ q))))
    assert angle == pytest.approx(np.linalg.norm([0.02, -0.01, 0.03]), rel=1e-6)


def test_curriculum_widens_randomization_with_steps():
    env = LocomotionEnv("quadruped", randomization_scale=0.0, curriculum_steps=100, episode_seconds=1.0)
    env.reset(seed=0)
    assert env.randomization_scale == 0.0
    scales = []
    for _ in range(3):
        for _ in range(50):
            _, _, term, trunc, _ = env.step(np.zeros(8))
            if term or trunc:
                break
        env.reset()
        scales.append(env.randomization_scale)
    assert scales[0] == pytest.approx(0.5) and scales[-1] == 1.0


def test_air_time_is_paid_at_touchdown_only():
    """A foot seen airborne for k steps reports k * dt of air time on the step it lands."""
    from simreal.envs.locomotion import track_air_time

    dt = 0.02
    down, up = np.array([True, True]), np.array([True, False])
    seq = [down, up, up, up, up, up, down, down]
    timer, last, got = np.zeros(2), np.ones(2, dtype=bool), []
    for c in seq:
        touchdown, air, timer = track_air_time(timer, last, c, dt)
        last = c
        got.append((touchdown, air))
    touchdowns = [bool(t[1]) for t, _ in got]
    assert touchdowns == [False] * 6 + [True, False]
    assert got[6][1][1] == pytest.approx(5 * dt)   # airborne in steps 1..5
    assert not got[6][0][0] and got[6][1][0] == 0.0


def test_gait_and_posture_terms_by_hand():
    q = rewards.StepQuantities(
        lin_vel_body=np.zeros(3), ang_vel_body=np.zeros(3), up_z=1.0, torque=np.zeros(2),
        action=np.zeros(2), last_action=np.zeros(2), foot_contact=np.array([True, False]),
        foot_speed=np.zeros(2), command=np.array([0.3, 0.0]),
        foot_touchdown=np.array([True, False]), foot_air_time=np.array([0.3, 0.0]),
        posture_error=np.array([0.1, -0.2]), fell=False)
    _, terms = rewards.compute(q, {"feet_air_time": 2.0, "single_support": 1.0, "posture": -1.0})
    assert terms["feet_air_time"] == pytest.approx(2.0 * (0.3 - rewards.AIR_TIME_TARGET))
    assert terms["single_support"] == 1.0
    assert terms["posture"] == pytest.approx(-0.05)
    standing = dataclasses.replace(q, command=np.array([0.0, 0.0]))
    _, terms = rewards.compute(standing, {"feet_air_time": 2.0, "single_support": 1.0})
    assert terms == {"feet_air_time": 0.0, "single_support": 0.0}


def test_randomization_groups_cover_every_parameter_once_and_restrict_an_env():
    from dataclasses import fields

    from simreal.envs import randomization
    from simreal.envs.randomization import GROUPS, DomainParams

    named = [f for g in GROUPS.values() for f in g]
    assert sorted(named) == sorted(f.name for f in fields(DomainParams))      # each exactly once
    full = LocomotionEnv("quadruped", randomize=True)
    act = LocomotionEnv("quadruped", randomize=True, randomize_groups=["actuators"])
    full.reset(seed=3)
    act.reset(seed=3)
    assert act.params.friction == 1.0 and act.params.action_latency == 0 and not act.params.com_offset.any()
    np.testing.assert_array_equal(act.params.kp_scale, full.params.kp_scale)   # the same draws, kept
    assert full.params.friction != 1.0 and (act.params.kp_scale != 1.0).any()
    with pytest.raises(ValueError, match="unknown group"):
        LocomotionEnv("quadruped", randomize_groups=["gravity"])
    assert randomization.check_groups(("terrain",)) == ("terrain",)
