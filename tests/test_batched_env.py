"""The batched env is n single envs: on the same seeds and actions it matches them step for step
(observations, rewards and their terms, terminations, truncations, resets, randomized parameters),
for both robots, with and without randomization, on one thread and on several.

Physics state, ends and resets are bit-identical. Rewards and observations may differ in the last
bit (rtol 1e-12; float32 observations 1e-6): numpy evaluates exp/cos/arccos over an array with SIMD
kernels whose last bit can differ from the scalar libm call the single env makes."""
from __future__ import annotations

import numpy as np
import pytest

from simreal.envs.batched import ENDS, LocomotionBatch
from simreal.envs.locomotion import LocomotionEnv


def close(a: np.ndarray, b: np.ndarray, where: str) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=where)


def run_side_by_side(robot: str, n: int, steps: int, threads: int, randomize: bool = True, seed: int = 3,
                     **kwargs) -> dict:
    batch = LocomotionBatch(n, robot, randomize=randomize, threads=threads, **kwargs)
    singles = [LocomotionEnv(robot, randomize=randomize, **kwargs) for _ in range(n)]
    seeds = [seed + i for i in range(n)]
    obs_b = batch.reset(seeds)
    obs_s = np.stack([env.reset(seed=s)[0] for env, s in zip(singles, seeds)])
    close(obs_b, obs_s, "reset")
    rng = np.random.default_rng(seed)
    ends, worst, held = 0, 0.0, 0.0
    for t in range(steps):
        action = np.clip(rng.normal(0.0, 0.6, (n, batch.spec.n_joints)), -1.2, 1.2)   # some beyond the box
        out = batch.step(action)
        for i, env in enumerate(singles):
            o, r, term, trunc, info = env.step(action[i])
            assert (term, trunc) == (bool(out.terminated[i]), bool(out.truncated[i])), (t, i)
            assert info.get("end", "") == ENDS[out.end[i]]
            close(out.terminal_obs[i], o, f"step {t} env {i}")
            assert out.terms.keys() == info["reward_terms"].keys()
            for k, v in out.terms.items():
                assert v[i] == pytest.approx(info["reward_terms"][k], rel=1e-12, abs=1e-15), (t, i, k)
            assert out.reward[i] == pytest.approx(r, rel=1e-12, abs=1e-15), (t, i)
            assert out.forward_velocity[i] == info["forward_velocity"]
            np.testing.assert_array_equal(out.command[i], info["command"])
            np.testing.assert_array_equal(out.base_position[i], info["base_position"])
            if term or trunc:
                ends += 1
                o, reset_info = env.reset()
                assert batch.envs[i].params.to_info() == reset_info["randomization"]
                np.testing.assert_array_equal(batch.command[i], reset_info["command"])
            close(out.obs[i], o, f"step {t} env {i} (after a reset: {term or trunc})")
            worst = max(worst, float(np.abs(batch.qpos[i] - env.sim.data.qpos).max()))
            np.testing.assert_array_equal(batch.observed_command[i], env.observed_command)
            held = max(held, float(np.abs(env.observed_command - env.command).max()))
    batch.close()
    return {"ends": ends, "worst_qpos": worst, "held": held}


@pytest.mark.parametrize("robot", ["quadruped", "biped"])
def test_batch_matches_single_envs_step_for_step(robot):
    # 1.5 s episodes so several end (falls from the random actions, time limits) and reset mid-run
    res = run_side_by_side(robot, n=3, steps=160, threads=2, episode_seconds=1.5)
    assert res["ends"] >= 3 and res["worst_qpos"] == 0.0


def test_batch_matches_with_heading_hold():
    # the biped's trained yaw range is +-0.3 rad/s, so the hold acts; random actions turn the robot
    res = run_side_by_side("biped", n=2, steps=80, threads=2, episode_seconds=1.0, heading_hold=2.0)
    assert res["ends"] >= 2 and res["worst_qpos"] == 0.0 and res["held"] > 0.01


def test_batch_matches_without_randomization_on_one_thread():
    res = run_side_by_side("quadruped", n=2, steps=60, threads=1, randomize=False, episode_seconds=0.5)
    assert res["ends"] >= 2


# --------------------------------------------------------------------------- the SB3 VecEnv


def vec(kind: str, n: int = 3, **kwargs):
    from simreal.train.config import TrainConfig
    from simreal.train.envs import make_vec

    cfg = TrainConfig(robot="quadruped", algo="ppo", n_envs=n, normalize={"obs": False, "reward": False},
                      env={"vec_env": kind, "kwargs": {"episode_seconds": 0.6, **kwargs}})
    venv, norm = make_vec(cfg, seed=11)
    assert norm is None
    return venv


def test_vec_env_matches_dummy_vec_env_of_single_envs():
    from simreal.train.episode import INFO_KEY

    batched, dummy = vec("batched"), vec("dummy")
    assert type(batched.unwrapped).__name__ == "BatchedVecEnv"
    close(batched.reset(), dummy.reset(), "reset")
    rng = np.random.default_rng(0)
    episodes = 0
    for t in range(70):
        action = rng.uniform(-1, 1, (3, 8)).astype(np.float32)
        ob, rb, db, ib = batched.step(action)
        od, rd, dd, id_ = dummy.step(action)
        close(ob, od, f"step {t}")
        np.testing.assert_allclose(rb, rd, rtol=1e-6)
        np.testing.assert_array_equal(db, dd)
        for b, d in zip(ib, id_):
            assert (INFO_KEY in b) == (INFO_KEY in d)
            if INFO_KEY in d:
                episodes += 1
                close(b["terminal_observation"], d["terminal_observation"], f"terminal {t}")
                assert b["TimeLimit.truncated"] == d["TimeLimit.truncated"]
                sb, sd = b[INFO_KEY], d[INFO_KEY]
                assert (sb.length, sb.fell, sb.end) == (sd.length, sd.fell, sd.end)
                for name in ("ret", "forward_velocity", "tracking_error"):
                    assert getattr(sb, name) == pytest.approx(getattr(sd, name), rel=1e-9)
                assert sb.reward_terms == pytest.approx(sd.reward_terms, rel=1e-9)
                assert b["episode"]["l"] == d["episode"]["l"]            # VecMonitor / Monitor
                assert b["episode"]["r"] == pytest.approx(d["episode"]["r"], rel=1e-5)
    assert episodes >= 6                       # 30-step episodes: every env ended twice
    batched.close(), dummy.close()


def test_vec_env_api_seeding_and_ppo():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    a, b = vec("batched", n=2), vec("batched", n=2)
    a.seed(5), b.seed(5)
    np.testing.assert_array_equal(a.reset(), b.reset())          # same seeds, same episodes
    b.seed(6)
    assert not np.array_equal(a.reset(), b.reset())
    assert a.get_attr("randomization_scale") == [1.0, 1.0]
    a.env_method("set_randomization_scale", 0.25, indices=[1])
    assert a.get_attr("randomization_scale") == [1.0, 0.25]
    assert a.observation_space.contains(a.reset()[0]) and a.reset().dtype == np.float32
    venv = VecNormalize(a)
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(128)
    assert model.num_timesteps == 128 and len(model.ep_info_buffer) > 0      # episodes reached SB3's logger
    venv.close(), b.close()


def test_batched_needs_a_robot_not_a_gymnasium_id():
    from simreal.train.config import TrainConfig
    from simreal.train.envs import vec_env_kind

    assert vec_env_kind(TrainConfig(robot="Pendulum-v1", algo="ppo")) == "dummy"
    assert vec_env_kind(TrainConfig(robot="quadruped", algo="ppo")) == "batched"
    with pytest.raises(ValueError, match="env.vec_env: batched steps the robots"):
        vec_env_kind(TrainConfig(robot="Pendulum-v1", algo="ppo", env={"vec_env": "batched"}))
