"""Videos of an environment: frames at a chosen rate, a text overlay, progress while writing.

Knows nothing of policies: whoever plays the episode (train/watch.py for `simreal render`,
train/evaluate.py for `eval --video`) hands each step's env and info to a `FrameRecorder`.
Software OpenGL (EGL on Mesa) costs most of the time, so the defaults are a modest size and
half the 50 Hz control rate: a 10 s clip takes seconds, not minutes (BENCHMARKS.md, Rendering).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simreal.errors import UserError


@dataclass(frozen=True)
class VideoSettings:
    width: int = 480
    height: int = 360
    fps: int = 25               # frames per second of video; every k-th control step is drawn
    overlay: bool = True

    def env_kwargs(self) -> dict:
        """The render size, for LocomotionEnv's constructor."""
        return {"width": self.width, "height": self.height}


def check_output(path: str | Path) -> Path:
    """Refuse, before any work, a video path whose folder does not exist."""
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(f"--out {p}: folder {p.parent} does not exist (create it first)")
    if p.suffix.lower() not in (".mp4", ".gif", ".mkv", ".webm", ".avi"):
        raise UserError(f"--out {p}: give a video file name ending in .mp4")
    return p


def draw_text(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """The lines in white on a dark band at the top left of an RGB frame (a new array)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    line_h = 12
    w = max((draw.textlength(t, font=font) for t in lines), default=0)
    draw.rectangle([0, 0, int(w) + 8, line_h * len(lines) + 6], fill=(0, 0, 0))
    for i, t in enumerate(lines):
        draw.text((4, 3 + i * line_h), t, fill=(255, 255, 255), font=font)
    return np.asarray(img)


def overlay_lines(t: float, info: dict, falls: int) -> list[str]:
    """Time, commanded and measured velocity, falls: what a person watching wants to read."""
    lines = [f"t {t:5.1f} s    falls: {falls}"]
    cmd = info.get("command")
    v = info.get("forward_velocity")
    if cmd is not None:
        c = np.asarray(cmd, dtype=float).reshape(-1)
        lines.append(f"cmd vx {c[0]:+.2f} m/s" + (f"  yaw {c[1]:+.2f} rad/s" if c.size > 1 else ""))
    if v is not None:
        lines.append(f"v   {float(v):+.2f} m/s")
    return lines


class FrameRecorder:
    """Writes every k-th step's frame (k = control rate / fps) with the overlay, showing progress."""

    def __init__(self, path: str | Path, control_dt: float, settings: VideoSettings = VideoSettings(),
                 total_steps: int | None = None, label: str = "rendering"):
        import imageio.v2 as imageio
        from tqdm import tqdm

        self.path = Path(path)
        self.settings = settings
        self.dt = control_dt
        self.every = max(1, int(round(1.0 / (settings.fps * control_dt))))
        fps = 1.0 / (self.every * control_dt)
        self._writer = imageio.get_writer(str(self.path), fps=fps, macro_block_size=8)
        self._bar = tqdm(total=total_steps, desc=label, unit="step", file=sys.stderr, leave=False,
                         dynamic_ncols=True, disable=None)
        self.steps = self.frames = self.falls = 0
        self.t = 0.0

    def add(self, env, info: dict) -> None:
        """After each env.step: counts time and falls, draws a frame when one is due."""
        self.t += self.dt
        if info.get("fell"):
            self.falls += 1
        if self.steps % self.every == 0:
            frame = env.render()
            if self.settings.overlay:
                frame = draw_text(frame, overlay_lines(self.t, info, self.falls))
            self._writer.append_data(frame)
            self.frames += 1
        self.steps += 1
        self._bar.update(1)

    def new_episode(self) -> None:
        self.t = 0.0

    def close(self) -> None:
        self._bar.close()
        self._writer.close()

    def __enter__(self) -> "FrameRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
