"""Rollouts without a trained policy: the smoke test a person runs first."""
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
