"""Per-episode figures, computed once for training logs and evaluation alike.

Robot envs report `forward_velocity`, `command` ([vx, yaw_rate]), `reward_terms`, `fell`, and
the world-frame `base_position` and `heading` (also at reset) in `info`; Gymnasium's MuJoCo walkers report `x_velocity`. For envs without `fell`, a termination
before the time limit counts as a fall (true for the Gymnasium walkers: they end when unhealthy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from simreal.robot.heading import wrap_angle

INFO_KEY = "episode_stats"


@dataclass
class EpisodeStats:
    ret: float = 0.0
    length: int = 0
    fell: bool = False
    forward_velocity: float = math.nan     # mean over steps; NaN if the env does not report it
    tracking_error: float = math.nan       # mean |v - v_cmd|; NaN without a command
    # World frame (the robot-frame velocity above cannot show a robot walking in circles):
    progress_velocity: float = math.nan    # m/s along the heading it started with
    heading_drift_deg: float = math.nan    # heading change minus the commanded yaw rate's integral
    reward_terms: dict[str, float] = field(default_factory=dict)   # per-episode sums
    end: str = ""      # why it ended: fall, time_limit, terrain_edge (robot envs), or terminated / truncated


def forward_velocity(info: dict[str, Any]) -> float | None:
    v = info.get("forward_velocity", info.get("x_velocity"))
    return None if v is None else float(v)


class EpisodeStatsWrapper(gym.Wrapper):
    """Accumulates an episode's figures; puts an EpisodeStats in info[INFO_KEY] on its last step."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.last_stats: EpisodeStats | None = None
        self._start: tuple[np.ndarray, float] | None = None
        self._reset_sums()

    def _reset_sums(self) -> None:
        self._ret, self._len = 0.0, 0
        self._v_sum, self._v_n, self._err_sum, self._err_n = 0.0, 0, 0.0, 0
        self._terms: dict[str, float] = {}

    def reset(self, **kwargs):
        self._reset_sums()
        obs, info = self.env.reset(**kwargs)
        self._start = (np.asarray(info["base_position"], float), float(info["heading"])) \
            if "heading" in info and "base_position" in info else None
        self._turned = self._commanded_turn = 0.0
        self._heading = self._start[1] if self._start else 0.0
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._ret += float(reward)
        self._len += 1
        v = forward_velocity(info)
        if v is not None:
            self._v_sum += v
            self._v_n += 1
            cmd = info.get("command")
            if cmd is not None:
                self._err_sum += abs(v - float(np.asarray(cmd).reshape(-1)[0]))
                self._err_n += 1
        if self._start is not None and "heading" in info:
            dt = float(getattr(self.env.unwrapped, "dt", 0.0))
            h = float(info["heading"])
            self._turned += float(wrap_angle(h - self._heading))     # unwrapped
            self._heading = h
            self._commanded_turn += float(np.asarray(info.get("command", [0.0, 0.0])).reshape(-1)[1]) * dt
        for name, value in (info.get("reward_terms") or {}).items():
            self._terms[name] = self._terms.get(name, 0.0) + float(value)
        if terminated or truncated:
            fell = info.get("fell", terminated and not truncated)
            end = info.get("end") or ("fall" if fell else "time_limit" if truncated else "terminated")
            self.last_stats = EpisodeStats(
                ret=self._ret, length=self._len, fell=bool(fell),
                forward_velocity=self._v_sum / self._v_n if self._v_n else math.nan,
                tracking_error=self._err_sum / self._err_n if self._err_n else math.nan,
                reward_terms=dict(self._terms), end=end, **self._world(info))
            info = {**info, INFO_KEY: self.last_stats}
        return obs, reward, terminated, truncated, info


    def _world(self, info: dict[str, Any]) -> dict[str, float]:
        if self._start is None or "base_position" not in info:
            return {}
        p0, h0 = self._start
        seconds = self._len * float(getattr(self.env.unwrapped, "dt", math.nan))
        along = float(np.dot(np.asarray(info["base_position"], float)[:2] - p0[:2], [math.cos(h0), math.sin(h0)]))
        return {"progress_velocity": along / seconds if seconds > 0 else math.nan,
                "heading_drift_deg": math.degrees(self._turned - self._commanded_turn)}


def nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN (silently) when there are none."""
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else math.nan
