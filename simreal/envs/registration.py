"""Gymnasium ids for the shipped robots: `simreal/<Robot>-v0` for every folder in robots/."""
from __future__ import annotations

from typing import Any

import gymnasium as gym

ENTRY_POINT = "simreal.envs.locomotion:LocomotionEnv"


def env_id(robot: str) -> str:
    return f"simreal/{robot.capitalize()}-v0"


def register_all() -> None:
    from simreal.robot.registry import list_robots

    for name in list_robots():
        rid = env_id(name)
        if rid not in gym.registry:
            gym.register(id=rid, entry_point=ENTRY_POINT, kwargs={"robot": name},
                         max_episode_steps=None, disable_env_checker=True)


def make_env(robot_or_id: str, *, randomize: bool = True, seed: int | None = None,
             **kwargs: Any) -> gym.Env:
    """One factory for robots (by folder name) and any registered Gymnasium id (`Walker2d-v5`).

    Robot envs take `randomize` and extra LocomotionEnv kwargs; foreign ids ignore `randomize`.
    """
    from simreal.robot.registry import list_robots

    if robot_or_id in list_robots():
        env = gym.make(env_id(robot_or_id), randomize=randomize, **kwargs)
    else:
        env = gym.make(robot_or_id, **kwargs)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
