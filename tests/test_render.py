"""Headless rendering: one backend chooser, policy videos with an overlay, clear refusals.

These run with MUJOCO_GL unset and no libosmesa6 (EGL renders on the CPU with no install); the
"no backend" message is checked with a backend that cannot exist, not with what a machine lacks.
"""
from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from conftest import ROOT, assert_clean_error, run_simreal
from simreal.envs import gl
from simreal.envs.video import draw_text, overlay_lines
from simreal.errors import MissingDependency

BUNDLE = str(ROOT / "assets" / "policies" / "quadruped")


def _frames(path) -> list[np.ndarray]:
    return [f for f in imageio.get_reader(str(path))]


def test_render_plays_the_shipped_bundle_with_an_overlay(tmp_path):
    clip, bare, still = tmp_path / "clip.mp4", tmp_path / "bare.mp4", tmp_path / "still.mp4"
    args = ["--seconds", "0.4", "--width", "160", "--height", "120", "--command", "vx=0.4"]
    r = run_simreal("render", BUNDLE, "--out", str(clip), *args)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "(egl)" in r.stderr or "(osmesa)" in r.stderr
    frames = _frames(clip)
    assert len(frames) == 10 and frames[0].shape == (120, 160, 3)     # 0.4 s at 25 fps
    assert run_simreal("render", BUNDLE, "--out", str(bare), "--no-overlay", *args).returncode == 0
    top_left = (slice(0, 30), slice(0, 80))
    assert np.abs(frames[-1][top_left].astype(int) - _frames(bare)[-1][top_left].astype(int)).mean() > 5
    # the policy plays: its robot moves away from where the zero action keeps it
    assert run_simreal("render", "quadruped", "--out", str(still), "--no-overlay", *args).returncode == 0
    assert np.abs(_frames(still)[-1].astype(int) - _frames(bare)[-1].astype(int)).mean() > 1


@pytest.mark.parametrize("argv,env,code,needles", [
    (["render", BUNDLE, "--out", "{tmp}/clip.mp4", "--seconds", "0.1"], {"MUJOCO_GL": "nonexistent"}, 3,
     ["no OpenGL backend", "libosmesa6", "libegl1", "nonexistent"]),
    (["render", BUNDLE, "--out", "{tmp}/missing/clip.mp4"], {}, 2, ["missing", "does not exist"]),
    (["render", "quadrupd", "--out", "{tmp}/clip.mp4"], {}, 2, ["unknown robot 'quadrupd'"]),
    (["render", BUNDLE, "--out", "{tmp}/clip.mp4", "--seconds", "nan"], {}, 2, ["--seconds"]),
    (["render", "{tmp}", "--out", "{tmp}/clip.mp4"], {}, 2, ["neither a run directory"]),
    (["view", BUNDLE], {}, 3, ["needs a display", "simreal render"]),
    (["eval", BUNDLE, "--video", "{tmp}/missing/e.mp4", "--episodes", "1"], {}, 2, ["missing"]),
    (["eval", BUNDLE, "--video", "{tmp}/e.mp4", "--episodes", "1"], {"MUJOCO_GL": "nonexistent"}, 3,
     ["no OpenGL backend"]),
], ids=["no-backend", "out-folder-missing", "robot-typo", "seconds-nan", "not-a-policy", "view-no-display",
        "eval-video-folder-missing", "eval-video-no-backend"])
def test_render_mistakes(tmp_path, argv, env, code, needles):
    r = run_simreal(*[a.replace("{tmp}", str(tmp_path)) for a in argv], env=env)
    assert_clean_error(r, code, *needles)
    assert not list(tmp_path.rglob("*.mp4"))


def test_eval_video_of_a_bundle(tmp_path):
    clip = tmp_path / "e.mp4"
    r = run_simreal("eval", BUNDLE, "--episodes", "1", "--video", str(clip), "--command", "vx=0.3",
                    timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"video: {clip}" in r.stdout and len(_frames(clip)) > 100


def test_backend_order():
    tried = []

    def fake(ok):
        def try_backend(b):
            tried.append(b)
            return None if b in ok else f"{b} broken"
        return try_backend

    env: dict[str, str] = {}
    assert gl.choose_gl_backend(fake({"osmesa"}), env) == "osmesa" and tried == ["egl", "osmesa"]
    assert env["MUJOCO_GL"] == "osmesa"
    tried.clear()
    env = {"MUJOCO_GL": "osmesa"}                      # the user's choice is the only one tried
    assert gl.choose_gl_backend(fake({"osmesa", "egl"}), env) == "osmesa" and tried == ["osmesa"]
    assert gl.candidates({"DISPLAY": ":0"}) == ["glfw"]
    with pytest.raises(MissingDependency, match="libosmesa6"):
        gl.choose_gl_backend(fake(set()), {})


def test_overlay_says_time_command_velocity_and_falls():
    lines = overlay_lines(3.25, {"command": [0.4, 0.1], "forward_velocity": 0.31}, 2)
    assert lines == ["t   3.2 s    falls: 2", "cmd vx +0.40 m/s  yaw +0.10 rad/s", "v   +0.31 m/s"]
    frame = np.full((60, 200, 3), 128, np.uint8)
    out = draw_text(frame, lines)
    assert out.shape == frame.shape and (out[:40, :150] != 128).any() and (out[50:] == 128).all()
