"""Deterministic evaluation: N seeded episodes -> return, forward velocity, tracking error, falls.

Each episode i starts from env.reset(seed=seed + i), so two evaluations with the same seed see
the same randomized robots and commands; the periodic evaluations during training are therefore
comparable with each other.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from simreal.train.episode import INFO_KEY, EpisodeStats, nanmean
from simreal.train.normalizer import Normalizer

EVAL_SEED_OFFSET = 10_000   # evaluation episodes never share seeds with training envs


@dataclass(frozen=True)
class EvalResult:
    episodes: int
    mean_return: float
    std_return: float
    mean_forward_velocity: float      # m/s (NaN if the env does not report a velocity)
    mean_tracking_error: float        # mean |v - v_cmd| in m/s (NaN without a command)
    fall_rate: float                  # fraction of episodes that ended in a fall
    mean_length: float                # steps
    returns: tuple[float, ...] = ()
    mean_progress_velocity: float = math.nan   # m/s in the world, along the starting heading
    heading_drift_deg_15s: float = math.nan    # mean |heading drift| per 15 s of episode
    max_heading_drift_deg_15s: float = math.nan
    ends: tuple[tuple[str, int], ...] = ()   # why episodes ended: (("fall", 1), ("time_limit", 9))
    heading_hold: float = math.nan    # gain of the heading hold the episodes ran with (0 off; NaN: not a robot env)

    @classmethod
    def from_episodes(cls, eps: list[EpisodeStats], dt: float = math.nan,
                      heading_hold: float = math.nan) -> "EvalResult":
        rets = [e.ret for e in eps]
        drift = [abs(e.heading_drift_deg) * 15.0 / (e.length * dt) for e in eps
                 if not math.isnan(e.heading_drift_deg) and e.length]
        return cls(episodes=len(eps), mean_return=float(np.mean(rets)), std_return=float(np.std(rets)),
                   mean_forward_velocity=nanmean([e.forward_velocity for e in eps]),
                   mean_tracking_error=nanmean([e.tracking_error for e in eps]),
                   fall_rate=sum(e.fell for e in eps) / len(eps),
                   mean_length=float(np.mean([e.length for e in eps])), returns=tuple(rets),
                   mean_progress_velocity=nanmean([e.progress_velocity for e in eps]),
                   heading_drift_deg_15s=nanmean(drift), max_heading_drift_deg_15s=max(drift, default=math.nan),
                   ends=tuple(sorted(Counter(e.end or "unknown" for e in eps).items())),
                   heading_hold=heading_hold)

    def to_dict(self) -> dict:
        """JSON-safe: NaN (figure not reported by the env) becomes null."""
        out = {k: (None if isinstance(v, float) and math.isnan(v) else
                   list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        out["ends"] = dict(self.ends)
        return out

    def line(self) -> str:
        """Velocity and falls first: a robot that stands still still earns most of a walker's return."""
        parts = []
        if not math.isnan(self.mean_forward_velocity):
            parts.append(f"v {self.mean_forward_velocity:.2f} m/s")
        if not math.isnan(self.mean_tracking_error):
            parts.append(f"err {self.mean_tracking_error:.2f}")
        if not math.isnan(self.mean_progress_velocity):
            parts.append(f"world {self.mean_progress_velocity:.2f} m/s")
        if not math.isnan(self.heading_drift_deg_15s):
            parts.append(f"heading drift {self.heading_drift_deg_15s:.0f} deg/15 s (max {self.max_heading_drift_deg_15s:.0f})")
        falls = round(self.fall_rate * self.episodes)
        parts += [f"falls {falls}/{self.episodes} ({self.fall_rate:.0%})",
                  f"return {self.mean_return:.1f} ± {self.std_return:.1f}", f"len {self.mean_length:.0f}"]
        if self.ends:
            parts.append("ended by " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in self.ends))
        if self.heading_hold > 0:
            parts.append(f"heading hold {self.heading_hold:g}")
        return " · ".join(parts)


Act = Callable[[np.ndarray], np.ndarray]


def run_episodes(act: Act, env, normalizer: Normalizer, episodes: int, seed: int,
                 video: Path | None = None) -> EvalResult:
    """Roll out `act` (normalized obs -> action) in `env` (an EpisodeStatsWrapper).

    With `video`, the env must render rgb_array frames (see `video_env_kwargs`); frames, overlay
    and progress come from simreal.envs.video, the same recorder `simreal render` uses.
    """
    recorder = None
    if video is not None:
        from simreal.envs.video import FrameRecorder

        recorder = FrameRecorder(video, control_dt(env), label=f"eval video ({episodes} episodes)")
    stats: list[EpisodeStats] = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            if recorder is not None:
                recorder.new_episode()
            while True:
                action = act(normalizer.normalize_obs(obs))
                obs, _, terminated, truncated, info = env.step(action)
                if recorder is not None:
                    recorder.add(env, info)
                if terminated or truncated:
                    stats.append(info[INFO_KEY])
                    break
    finally:
        if recorder is not None:
            recorder.close()
    hold = getattr(env.unwrapped, "heading_hold", None)
    return EvalResult.from_episodes(stats, control_dt(env),
                                    math.nan if hold is None else hold.gain if hold.active else 0.0)


def control_dt(env) -> float:
    """Seconds per env step (robot envs and Gymnasium's MuJoCo envs both have `dt`)."""
    dt = getattr(env.unwrapped, "dt", None)
    return float(dt) if dt else 1.0 / float(env.metadata.get("render_fps", 30))


def video_env_kwargs(video: Path | None) -> dict:
    """Env kwargs for a recorded evaluation: rgb_array frames at the video's size (nothing without)."""
    if video is None:
        return {}
    from simreal.envs.gl import choose_gl_backend
    from simreal.envs.video import VideoSettings, check_output

    check_output(video)
    choose_gl_backend()
    return {"render_mode": "rgb_array", **VideoSettings().env_kwargs()}


def predictor(model, deterministic: bool = True) -> Act:
    """SB3 models return (action, state); our agents return the action."""
    def act(obs: np.ndarray) -> np.ndarray:
        out = model.predict(obs, deterministic=deterministic)
        return out[0] if isinstance(out, tuple) else out
    return act


def evaluate_run(run_dir: Path, *, episodes: int = 10, randomize: bool | None = None,
                 video: Path | None = None, checkpoint: str = "auto", seed: int | None = None,
                 trust: bool = False, command: tuple[float, float] | None = None,
                 heading_hold: float | None = None) -> tuple[EvalResult, dict]:
    """Evaluate a run directory's policy; returns the result and where the policy came from.

    `command` fixes the velocity command of a robot env (otherwise sampled per episode);
    `heading_hold` sets the env's heading-hold gain (otherwise the training config's).
    """
    from simreal.train.envs import eval_kwargs, make_single
    from simreal.train.snapshot import load_run

    render = video_env_kwargs(video)
    loaded = load_run(Path(run_dir), checkpoint=checkpoint, trust=trust)
    cfg = loaded.config
    rand = (cfg.eval.randomize if cfg.eval.randomize is not None else cfg.env.randomize) \
        if randomize is None else randomize
    from simreal.robot.registry import list_robots

    robot_env = cfg.robot in list_robots()      # the heading hold is a robot env's; Gymnasium ids have none
    env_kwargs = eval_kwargs(cfg.env.kwargs) | _overrides(command, heading_hold if robot_env else None)
    env = make_single(cfg.robot, rand, env_kwargs | render)
    try:
        result = run_episodes(predictor(loaded.model, cfg.eval.deterministic), env,
                              loaded.normalizer, episodes,
                              (cfg.seed + EVAL_SEED_OFFSET) if seed is None else seed, video=video)
    finally:
        env.close()
    source = {"run_dir": str(run_dir), "checkpoint": str(loaded.source), "step": loaded.step,
              "robot": cfg.robot, "algo": cfg.algo, "randomize": rand}
    return result, source


def evaluate_path(path: Path, *, episodes: int = 10, randomize: bool | None = None,
                  video: Path | None = None, checkpoint: str = "auto", seed: int | None = None,
                  trust: bool = False, command: tuple[float, float] | None = None,
                  heading_hold: float | None = None) -> tuple[EvalResult, dict]:
    """A run directory (config.yaml), or an exported policy bundle (policy.json), evaluated alike."""
    path = Path(path)
    if not (path / "config.yaml").is_file() and (path / "policy.json").is_file():

        return evaluate_bundle(path, episodes=episodes, seed=seed, video=video,
                               randomize=True if randomize is None else randomize,
                               env_kwargs=_overrides(command, heading_hold))
    return evaluate_run(path, episodes=episodes, randomize=randomize, video=video,
                        checkpoint=checkpoint, seed=seed, trust=trust, command=command, heading_hold=heading_hold)


def _overrides(command: tuple[float, float] | None, heading_hold: float | None) -> dict:
    return ({"command": command} if command is not None else {}) | \
        ({"heading_hold": heading_hold} if heading_hold is not None else {})


def to_json(result: EvalResult, source: dict) -> str:
    return json.dumps({**result.to_dict(), **source}, indent=1)


def evaluate_policy(policy, *, episodes: int, randomize: bool, seed: int,
                    env_kwargs: dict | None = None, video: Path | None = None):
    """This module's protocol (seeded episodes, same figures) run on a loaded bundle:
    the raw observation goes into the graph, whose normalizer is inside."""
    from simreal.train.envs import make_single

    render = video_env_kwargs(video)
    env = make_single(policy.contract.robot, randomize, dict(env_kwargs or {}) | render)
    try:
        return run_episodes(lambda o: policy.infer(o)[0], env, Normalizer(), episodes, seed,
                            video=video)
    finally:
        env.close()


def evaluate_bundle(bundle_dir: str | Path, *, episodes: int = 10, randomize: bool = True,
                    seed: int | None = None, backend: str = "auto", video: Path | None = None,
                    env_kwargs: dict | None = None, allow_hash_mismatch: bool = False):
    """(EvalResult, source) for a bundle, as `evaluate_run` gives for a run directory; the
    default seed is the one the training run evaluated with."""
    from simreal.bundle.policy import Policy

    policy = Policy.load(bundle_dir, backend=backend, allow_hash_mismatch=allow_hash_mismatch)
    c = policy.contract
    seed = c.training.seed + EVAL_SEED_OFFSET if seed is None else seed
    result = evaluate_policy(policy, episodes=episodes, randomize=randomize, seed=seed,
                             env_kwargs=c.command_kwargs() | (env_kwargs or {}), video=video)
    source = {"bundle": str(bundle_dir), "backend": policy.backend_name, "step": c.training.timesteps,
              "robot": c.robot, "algo": c.training.algo, "randomize": randomize, "seed": seed}
    return result, source
