"""`simreal render` and `simreal view`: watch a trained policy (run directory or bundle) walk.

A run directory plays its checkpoint through its normalizer, a bundle through its ONNX graph
(normalizer inside), exactly as `simreal eval` does; a plain robot name plays the zero or random
action. One playback loop serves the video and the interactive viewer.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from simreal.errors import MissingDependency, UserError

Act = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Player:
    """What plays: raw observation -> action, on which robot env, described for the user."""
    robot: str
    act: Act
    env_kwargs: dict
    label: str


def load_player(target: str, *, policy: str = "zero", seed: int = 0, checkpoint: str = "auto") -> Player:
    """A run directory, a bundle folder, or a robot name (zero / random actions)."""
    path = Path(target)
    if (path / "policy.json").is_file() and not (path / "config.yaml").is_file():
        from simreal.bundle.policy import Policy

        pol = Policy.load(path)
        return Player(pol.contract.robot, lambda o: pol.infer(o)[0], {}, f"bundle {path}")
    if (path / "config.yaml").is_file():
        from simreal.train.envs import eval_kwargs
        from simreal.train.evaluate import predictor
        from simreal.train.snapshot import load_run

        run = load_run(path, checkpoint=checkpoint)
        act = predictor(run.model, run.config.eval.deterministic)
        norm = run.normalizer
        return Player(run.config.robot, lambda o: act(norm.normalize_obs(o)),
                      eval_kwargs(run.config.env.kwargs), f"run {path} (step {run.step:,})")
    if os.sep in target or path.exists():
        raise UserError(f"{target}: neither a run directory (config.yaml) nor a policy bundle (policy.json)")
    from simreal.robot.spec import load_robot

    spec = load_robot(target)                   # an unknown name is one clear error
    rng = np.random.default_rng(seed)
    zero = np.zeros(spec.n_joints, np.float32)
    act = (lambda o: rng.uniform(-1, 1, spec.n_joints).astype(np.float32)) if policy == "random" \
        else (lambda o: zero)
    return Player(spec.name, act, {}, f"robot {spec.name} ({policy} actions)")


def play(player: Player, env, steps: int | None, seed: int, on_step: Callable[[object, dict], bool]) -> int:
    """Step `player` in `env` (resetting after each episode) until `steps` or on_step says stop."""
    obs, _ = env.reset(seed=seed)
    episode, n = 0, 0
    while steps is None or n < steps:
        obs, _, terminated, truncated, info = env.step(player.act(obs))
        n += 1
        if not on_step(env, info):
            break
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    return n


def _env(player: Player, command: tuple[float, float] | None, randomize: bool, **render):
    from simreal.train.envs import make_single

    kwargs = dict(player.env_kwargs) | ({"command": command} if command is not None else {}) | render
    return make_single(player.robot, randomize, kwargs)


def render_clip(target: str, out: str, *, seconds: float = 10.0, seed: int = 0, policy: str = "zero",
                command: tuple[float, float] | None = None, randomize: bool = False,
                width: int | None = None, height: int | None = None, fps: int | None = None,
                overlay: bool = True, shadows: bool = False) -> dict:
    """Write `seconds` of the target playing to `out`; returns what was written."""
    from simreal.envs.gl import choose_gl_backend
    from simreal.envs.video import FrameRecorder, VideoSettings, check_output

    path = check_output(out)
    d = VideoSettings()
    settings = VideoSettings(width or d.width, height or d.height, fps or d.fps, overlay)
    backend = choose_gl_backend()
    player = load_player(target, policy=policy, seed=seed)
    env = _env(player, command, randomize, render_mode="rgb_array", render_shadows=shadows,
               **settings.env_kwargs())
    t0 = time.monotonic()
    steps = int(round(seconds / env.unwrapped.dt))
    print(f"rendering {seconds:g} s of {player.label} at {settings.width}x{settings.height}, "
          f"{settings.fps} fps ({backend}) -> {path}", file=sys.stderr, flush=True)
    try:
        with FrameRecorder(path, env.unwrapped.dt, settings, total_steps=steps) as rec:
            def record(e, info) -> bool:
                rec.add(e, info)
                if info.get("fell") or info.get("end"):
                    rec.new_episode()
                return True

            play(player, env, steps, seed, record)
    finally:
        env.close()
    return {"out": str(path), "frames": rec.frames, "falls": rec.falls, "seconds": seconds,
            "wall_s": round(time.monotonic() - t0, 2), "backend": backend}


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform == "darwin"


def view(target: str, *, seed: int = 0, policy: str = "zero", command: tuple[float, float] | None = None,
         randomize: bool = False, seconds: float | None = None) -> int:
    """The interactive MuJoCo viewer, the policy stepping in real time until the window closes."""
    if not has_display():
        raise MissingDependency("simreal view needs a display (no DISPLAY is set); for a video without "
                                "one: simreal render TARGET --out clip.mp4")
    import mujoco.viewer

    player = load_player(target, policy=policy, seed=seed)
    env = _env(player, command, randomize)
    env.reset(seed=seed)
    dt = env.unwrapped.dt
    with mujoco.viewer.launch_passive(env.unwrapped.model, env.unwrapped.data) as viewer:
        start = time.monotonic()
        ticks = [0]

        def sync(_env, _info) -> bool:
            viewer.sync()
            ticks[0] += 1
            time.sleep(max(0.0, start + ticks[0] * dt - time.monotonic()))   # real time
            return viewer.is_running()

        play(player, env, None if seconds is None else int(seconds / dt), seed, sync)
    env.close()
    return 0
