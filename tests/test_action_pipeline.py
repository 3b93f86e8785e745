"""Issue 14: train what you deploy. One action pipeline (simreal.robot.action) from policy output
to the targets on the wire, run by the training envs and by the runtime's SafetyLayer; the
bundle's contract says which change limit it was trained with; every randomized parameter acts."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simreal.deploy import safety as S
from simreal.deploy.plan import pipeline_problem, plan_for_robot
from simreal.envs import randomization
from simreal.envs.batched import LocomotionBatch
from simreal.envs.locomotion import LocomotionEnv
from simreal.robot.action import ActionPipeline, action_to_targets
from simreal.robot.spec import NoiseSpec, load_robot


def jumpy_actions(n_joints: int, steps: int, seed: int) -> np.ndarray:
    """Full-scale jumps, out-of-range values and quiet stretches: every stage of the pipeline acts."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.5, 1.5, (steps, n_joints))
    a[steps // 3: steps // 2] = 0.05 * rng.standard_normal((steps // 2 - steps // 3, n_joints))
    return a


@pytest.mark.parametrize("robot", ["quadruped", "biped"])
def test_the_training_env_sends_what_the_runtime_sends_for_the_same_actions(robot):
    spec = load_robot(robot)
    env = LocomotionEnv(spec, randomize=False)
    env.reset(seed=0)
    sim = env.sim
    layer = S.SafetyLayer(spec.joint_min, spec.joint_max, spec.control.max_target_rate * spec.control.period)
    layer.start_from(spec.default_pose)             # after soft start: the default pose was the last target
    limited = 0
    for a in jumpy_actions(spec.n_joints, 150, seed=1):
        # the bundle's joint_targets output is the first stage (scale and offset of the clipped action)
        filt = layer.filter(action_to_targets(a, spec.default_pose, spec.control.action_scale))
        env.step(a)
        np.testing.assert_array_equal(sim.data.ctrl[sim.act_idx] + sim.encoder_offset, filt.sent)
        limited += bool(filt.rate_limited)
        if env.sim.base_height() < 0.05:
            break
    assert limited > 20                            # the change limit really acted


def test_the_change_limit_holds_in_the_batched_env_too():
    spec = load_robot("quadruped")
    env = LocomotionBatch(2, "quadruped", randomize=False, threads=1)
    env.reset(seeds=[0, 1])
    pipe = ActionPipeline.for_robot(spec)
    prev = env._sent.copy()
    for a in jumpy_actions(spec.n_joints, 20, seed=2):
        env.step(np.stack([a, -a]))
        assert np.all(np.abs(env._sent - prev) <= pipe.max_step + 1e-12)
        assert np.all(env._sent >= spec.joint_min) and np.all(env._sent <= spec.joint_max)
        prev = env._sent.copy()


def test_a_big_jump_moves_the_targets_by_one_max_step():
    spec = load_robot("quadruped")
    pipe = ActionPipeline.for_robot(spec)
    out = pipe.targets(np.ones(spec.n_joints), spec.default_pose)
    np.testing.assert_allclose(out - spec.default_pose, pipe.max_step)
    assert pipe.max_step == pytest.approx(8.0 * 0.02)


def test_deploy_accepts_the_pipeline_it_was_trained_with_and_names_any_other():
    spec = load_robot("quadruped")
    plan = plan_for_robot(spec)
    assert pipeline_problem(plan, spec.control.period) is None
    other = pipeline_problem(plan, 0.01)                       # --rate 100 halves the change per cycle
    assert other and "action_pipeline.max_step" in other and "0.16" in other and "0.08" in other
    old = pipeline_problem(dataclasses.replace(plan, trained_pipeline=None), spec.control.period)
    assert old and "action_pipeline: missing" in old
    other_kind = pipeline_problem(dataclasses.replace(plan, trained_pipeline=("filtered/1", 0.16)), spec.control.period)
    assert other_kind and "action_pipeline.kind" in other_kind


def test_deploy_refuses_a_bundle_trained_without_the_change_limit(tmp_path):
    import json
    import shutil

    from simreal.bundle.shipped import shipped_bundle
    from simreal.deploy.plan import StartRefused
    from simreal.deploy.session import deploy

    b = tmp_path / "old"
    shutil.copytree(shipped_bundle("quadruped"), b, ignore=shutil.ignore_patterns("run"))
    contract = json.loads((b / "policy.json").read_text())
    assert contract["action_pipeline"]["max_step"] == pytest.approx(0.16)      # the shipped one has it
    del contract["action_pipeline"]
    (b / "policy.json").write_text(json.dumps(contract))
    with pytest.raises(StartRefused, match="action_pipeline: missing.*--allow-pipeline-mismatch"):
        deploy(str(b), "/dev/null-not-opened", duration_s=1.0)


# ---- every randomized parameter changes what the robot does or what it senses -------------------
PERTURB = {
    "friction": 0.4, "mass_scale": 1.1, "torso_added_mass": 0.1, "com_offset": 0.02, "kp_scale": 0.7,
    "kd_scale": 1.5, "torque_scale": 0.5, "velocity_limit_scale": 0.5, "damping_scale": 2.0,
    "frictionloss_scale": 3.0, "armature_scale": 2.0, "joint_offset": 0.03, "action_latency": 2,
    "imu_latency": 1, "noise": NoiseSpec(joint_pos=0.01, joint_vel=0.5, gyro=0.1, gravity=0.03),
    "imu_bias": 0.02, "push_velocity": 0.6, "push_interval": 0.3, "terrain_height": 0.02,
}


def _rollout(robot: str, params, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    monkeypatch.setattr(randomization, "sample", lambda *a, **k: params)
    env = LocomotionEnv(robot, randomize=True)
    obs0, _ = env.reset(seed=0)
    qs, obs = [], [obs0]
    t = np.arange(60) * env.dt
    for k in range(60):
        o, *_ = env.step(0.6 * np.sin(2 * np.pi * 1.5 * t[k] + np.arange(env.spec_robot.n_joints)))
        qs.append(env.sim.data.qpos.copy())
        obs.append(o)
    return np.array(qs), np.array(obs)


@pytest.mark.parametrize("robot", ["quadruped", "biped"])
def test_every_randomized_parameter_has_an_effect(robot, monkeypatch):
    # Regression (issue 14): a CoM offset used to be ignored (MuJoCo's body_sameframe).
    spec = load_robot(robot)
    sim_nbody = LocomotionEnv(spec, randomize=False).sim.model.nbody - 1
    # one push at 0.7 s in the base rollout (1.2 s), so that its size and its timing can both act
    base = dataclasses.replace(randomization.nominal(spec.n_joints, sim_nbody), push_velocity=0.3, push_interval=0.7)
    assert set(PERTURB) == {f.name for f in dataclasses.fields(base)}, "a new parameter needs a case here"
    q0, o0 = _rollout(robot, base, monkeypatch)
    dead = []
    for name, value in PERTURB.items():
        old = getattr(base, name)
        new = value if not isinstance(old, np.ndarray) else np.full(old.shape, value)
        p = dataclasses.replace(base, **{name: new})
        q, o = _rollout(robot, p, monkeypatch)
        if np.array_equal(q, q0) and np.array_equal(o, o0):
            dead.append(name)
    assert not dead, f"randomizing {dead} changes neither the trajectory nor the observations"


def test_eval_reports_world_progress_and_heading_drift_against_the_yaw_command():
    # A robot that stands still while told to turn at 0.2 rad/s has drifted -0.2 * T from its command,
    # and made no progress in the world, whatever its robot-frame velocity says.
    from simreal.train.episode import INFO_KEY, EpisodeStatsWrapper

    env = EpisodeStatsWrapper(LocomotionEnv("quadruped", randomize=False, command=(0.3, 0.2), episode_seconds=2.0))
    env.reset(seed=0)
    while True:
        _, _, term, trunc, info = env.step(np.zeros(8))
        if term or trunc:
            break
    st = info[INFO_KEY]
    seconds = st.length * env.unwrapped.dt
    assert st.heading_drift_deg == pytest.approx(-np.degrees(0.2 * seconds), abs=2.0)
    assert abs(st.progress_velocity) < 0.02
