"""Environments for training and evaluation, built the same way from a TrainConfig."""
from __future__ import annotations

import functools
import signal
from typing import Any

import gymnasium as gym

from simreal.train.config import TrainConfig
from simreal.train.episode import EpisodeStatsWrapper


CURRICULUM_KEYS = ("randomization_scale", "curriculum_steps")


def eval_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Env kwargs for evaluation and export: the full randomization ranges a curriculum ends at.

    A curriculum's start scale applies to a fresh env, so an evaluation env built with the
    training kwargs would judge the policy on the easy start, not on what it was trained for.
    """
    out = {k: v for k, v in env_kwargs.items() if k not in CURRICULUM_KEYS}
    if "curriculum_steps" not in env_kwargs and "randomization_scale" in env_kwargs:
        out["randomization_scale"] = env_kwargs["randomization_scale"]   # a fixed scale stays
    return out


def make_single(robot: str, randomize: bool, env_kwargs: dict[str, Any],
                render_mode: str | None = None) -> gym.Env:
    from simreal.envs.registration import make_env

    kwargs = dict(env_kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return EpisodeStatsWrapper(make_env(robot, randomize=randomize, **kwargs))


def _make_monitored(robot: str, randomize: bool, env_kwargs: dict[str, Any],
                    worker: bool = False) -> gym.Env:
    from stable_baselines3.common.monitor import Monitor

    if worker:
        # Ctrl-C reaches the whole process group; the main process handles it (stop and save),
        # so a worker that died of it would break that final step.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return Monitor(make_single(robot, randomize, env_kwargs))


def vec_env_kind(cfg: TrainConfig) -> str:
    """The VecEnv `make_vec` builds: env.vec_env with "auto" resolved."""
    from simreal.robot.registry import list_robots

    robot = cfg.robot in list_robots()
    kind = cfg.env.vec_env
    if kind == "auto":
        return "batched" if robot else "dummy"
    if kind == "batched" and not robot:
        raise ValueError(f"env.vec_env: batched steps the robots in robots/; {cfg.robot!r} is a "
                         f"Gymnasium id (use dummy or subproc)")
    return kind


def make_vec(cfg: TrainConfig, seed: int, n_envs: int | None = None, *, randomize: bool | None = None):
    """(vec_env, vec_normalize or None): K seeded envs (seed, seed+1, ...), normalized as configured."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor, VecNormalize

    n = n_envs or cfg.n_envs
    rand = cfg.env.randomize if randomize is None else randomize
    factory = functools.partial(_make_monitored, cfg.robot, rand, dict(cfg.env.kwargs))
    kind = vec_env_kind(cfg)
    if kind == "batched":
        from simreal.train.vec_env import BatchedVecEnv

        venv = VecMonitor(BatchedVecEnv(n, cfg.robot, randomize=rand, threads=cfg.env.threads, **cfg.env.kwargs))
    elif kind == "subproc" and n > 1:
        venv = SubprocVecEnv([functools.partial(factory, worker=True)] * n)
    else:
        venv = DummyVecEnv([factory] * n)
    venv.seed(seed)
    venv.action_space.seed(seed)
    norm = cfg.normalize
    if not (norm.obs or norm.reward):
        return venv, None
    gamma = getattr(cfg.hyperparams, "gamma", 0.99)
    vn = VecNormalize(venv, norm_obs=norm.obs, norm_reward=norm.reward, clip_obs=norm.clip_obs,
                      clip_reward=norm.clip_reward, gamma=gamma)
    return vn, vn
