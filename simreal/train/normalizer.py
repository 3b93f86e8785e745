"""Observation (and reward) normalization statistics as plain JSON: no pickle, easy to export.

SB3's VecNormalize keeps running mean/var; the policy sees
    obs_n = clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)
and PPO may also scale rewards by the running std of the discounted return (training only).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "simreal-normalizer/1"


@dataclass(frozen=True)
class Normalizer:
    norm_obs: bool = False
    norm_reward: bool = False
    obs_mean: list[float] = field(default_factory=list)
    obs_var: list[float] = field(default_factory=list)
    obs_count: float = 0.0
    ret_mean: float = 0.0
    ret_var: float = 1.0
    ret_count: float = 0.0
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    gamma: float = 0.99
    epsilon: float = 1e-8

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.norm_obs:
            return np.asarray(obs, dtype=np.float32)
        mean, var = np.asarray(self.obs_mean), np.asarray(self.obs_var)
        out = np.clip((obs - mean) / np.sqrt(var + self.epsilon), -self.clip_obs, self.clip_obs)
        return out.astype(np.float32)

    @classmethod
    def from_vec_normalize(cls, venv: Any) -> "Normalizer":
        if venv is None:
            return cls()
        if isinstance(venv.obs_rms, dict):
            raise ValueError("dict observation spaces are not supported by the normalizer format")
        return cls(norm_obs=bool(venv.norm_obs), norm_reward=bool(venv.norm_reward),
                   obs_mean=venv.obs_rms.mean.tolist(), obs_var=venv.obs_rms.var.tolist(),
                   obs_count=float(venv.obs_rms.count), ret_mean=float(venv.ret_rms.mean),
                   ret_var=float(venv.ret_rms.var), ret_count=float(venv.ret_rms.count),
                   clip_obs=float(venv.clip_obs), clip_reward=float(venv.clip_reward),
                   gamma=float(venv.gamma), epsilon=float(venv.epsilon))

    def apply_to(self, venv: Any) -> None:
        """Restore the statistics into a VecNormalize built from the same config."""
        if venv is None:
            return
        if self.norm_obs:
            shape = venv.obs_rms.mean.shape
            mean = np.asarray(self.obs_mean, dtype=np.float64)
            if mean.shape != shape:
                raise ValueError(f"normalizer obs_mean has shape {mean.shape}, env observations "
                                 f"have shape {shape}")
            venv.obs_rms.mean = mean
            venv.obs_rms.var = np.asarray(self.obs_var, dtype=np.float64)
            venv.obs_rms.count = self.obs_count
        venv.ret_rms.mean = np.float64(self.ret_mean)
        venv.ret_rms.var = np.float64(self.ret_var)
        venv.ret_rms.count = self.ret_count

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "normalizer.json") -> "Normalizer":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}: not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.pop("format", None) != FORMAT:
            raise ValueError(f"{source}: not a {FORMAT} file")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}")
        n = cls(**d)
        if n.norm_obs and (len(n.obs_mean) != len(n.obs_var) or not n.obs_mean):
            raise ValueError(f"{source}: obs_mean and obs_var must be non-empty and equally long")
        if not np.all(np.isfinite(n.obs_mean)) or not np.all(np.isfinite(n.obs_var)):
            raise ValueError(f"{source}: non-finite statistics")
        return n

    @classmethod
    def load(cls, path: Path) -> "Normalizer":
        return cls.from_json(Path(path).read_text(), str(path))
