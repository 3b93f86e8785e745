"""Rollouts without a trained policy: the smoke test a person runs first, and short videos."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from simreal.envs.locomotion import LocomotionEnv


def _actions(env: LocomotionEnv, policy: str):
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    return (lambda: env.action_space.sample()) if policy == "random" else (lambda: zero)


def rollout(robot: str, steps: int = 1000, seed: int = 0, randomize: bool = True,
            policy: str = "random") -> dict:
    """Run `steps` control steps, resetting on episode end; summarize what happened."""
    env = LocomotionEnv(robot, randomize=randomize)
    env.action_space.seed(seed)
    act = _actions(env, policy)
    _, info = env.reset(seed=seed)
    first = info["randomization"]
    episodes, falls, nonfinite = 1, 0, 0
    vel, rew, terms = [], [], defaultdict(float)
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(act())
        nonfinite += int(not np.all(np.isfinite(obs)) or not np.isfinite(r))
        vel.append(info["forward_velocity"])
        rew.append(r)
        for k, v in info["reward_terms"].items():
            terms[k] += v
        if term or trunc:
            falls += int(info["fell"])
            env.reset()
            episodes += 1
    env.close()
    return {"robot": robot, "steps": steps, "episodes": episodes, "falls": falls,
            "mean_forward_velocity": float(np.mean(vel)), "mean_reward": float(np.mean(rew)),
            "mean_terms": {k: v / steps for k, v in terms.items()}, "nonfinite": nonfinite,
            "first_randomization": first}


def render_video(robot: str, out: str, seconds: float = 4.0, seed: int = 0, policy: str = "zero",
                 act_fn=None) -> int:
    """Write an mp4 offscreen; act_fn(obs) -> action overrides the built-in policies."""
    import imageio.v2 as imageio

    env = LocomotionEnv(robot, randomize=False, render_mode="rgb_array")
    act = _actions(env, policy)
    obs, _ = env.reset(seed=seed)
    n = int(seconds / env.dt)
    with imageio.get_writer(out, fps=int(round(1 / env.dt)), macro_block_size=8) as writer:
        for _ in range(n):
            writer.append_data(env.render())
            obs, _, term, trunc, _ = env.step(act_fn(obs) if act_fn else act())
            if term or trunc:
                obs, _ = env.reset()
    env.close()
    return n
