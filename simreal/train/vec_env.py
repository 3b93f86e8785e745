"""stable-baselines3 VecEnv over simreal.envs.batched.LocomotionBatch: the default training env.

It behaves as `DummyVecEnv([EpisodeStatsWrapper(LocomotionEnv)] * n)` does: `seed(s)` seeds env
i with s + i at the next reset; an ended env is reset at once, its last observation in
`info["terminal_observation"]` and `"TimeLimit.truncated"` set for a time limit; on an episode's
last step `info` carries the EpisodeStats (`episode_stats`), `end` and `fell`, summed over the
episode in arrays rather than in a wrapper per env. Per-step infos are otherwise empty (the
training callbacks read only the episode's figures); `full_info=True` adds the single env's
per-step keys for tools that want them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from simreal.envs.batched import ENDS, LocomotionBatch
from simreal.train.episode import INFO_KEY, EpisodeStats


class BatchedVecEnv(VecEnv):
    def __init__(self, n_envs: int, robot: str, *, randomize: bool = True, threads: int | None = None,
                 full_info: bool = False, **env_kwargs: Any):
        self.batch = LocomotionBatch(n_envs, robot, randomize=randomize, threads=threads, **env_kwargs)
        super().__init__(n_envs, self.batch.observation_space, self.batch.action_space)
        self.full_info = full_info
        self._terms = tuple(self.batch.spec.task.reward_scales)
        self._clear_sums(np.arange(n_envs))
        self._actions: np.ndarray | None = None

    @property
    def envs(self):
        """The LocomotionEnvs the batch steps (for get_attr / env_method and inspection)."""
        return self.batch.envs

    def _clear_sums(self, rows: np.ndarray) -> None:
        if not hasattr(self, "_ret"):
            n = self.num_envs
            self._ret, self._len = np.zeros(n), np.zeros(n, int)
            self._v_sum, self._err_sum = np.zeros(n), np.zeros(n)
            self._term_sums = np.zeros((n, len(self._terms)))
        self._ret[rows] = self._len[rows] = self._v_sum[rows] = self._err_sum[rows] = 0
        self._term_sums[rows] = 0.0

    def reset(self) -> np.ndarray:
        obs = self.batch.reset(list(self._seeds))
        self.reset_infos = [{"randomization": env.params.to_info(), "command": env.command.copy()}
                            for env in self.batch.envs]
        self._reset_seeds()
        self._reset_options()
        self._clear_sums(np.arange(self.num_envs))
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        out = self.batch.step(self._actions)
        v = out.forward_velocity
        self._ret += out.reward
        self._len += 1
        self._v_sum += v
        self._err_sum += np.abs(v - out.command[:, 0])
        for k, name in enumerate(self._terms):
            self._term_sums[:, k] += out.terms[name]
        dones = out.end > 0
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if self.full_info:
            for i, info in enumerate(infos):
                info.update(reward_terms={k: float(t[i]) for k, t in out.terms.items()},
                            forward_velocity=float(v[i]), command=out.command[i].copy(),
                            fell=bool(out.terminated[i]), base_position=out.base_position[i].copy())
        done_rows = np.flatnonzero(dones)
        for i in done_rows.tolist():
            length = int(self._len[i])
            stats = EpisodeStats(ret=float(self._ret[i]), length=length, fell=bool(out.terminated[i]),
                                 forward_velocity=float(self._v_sum[i]) / length if length else math.nan,
                                 tracking_error=float(self._err_sum[i]) / length if length else math.nan,
                                 reward_terms={name: float(self._term_sums[i, k]) for k, name in enumerate(self._terms)},
                                 end=ENDS[out.end[i]])
            infos[i].update({INFO_KEY: stats, "end": stats.end, "fell": stats.fell,
                             "terminal_observation": out.terminal_obs[i],
                             "TimeLimit.truncated": bool(out.truncated[i])})
            self.reset_infos[i] = {"randomization": self.batch.envs[i].params.to_info(),
                                   "command": self.batch.envs[i].command.copy()}
        self._clear_sums(done_rows)
        return out.obs, out.reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.batch.close()

    # --- attribute access, as DummyVecEnv gives it ------------------------------------------------
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        for i in self._get_indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.envs[i], method_name)(*method_args, **method_kwargs) for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self):
        return [None for _ in range(self.num_envs)]
