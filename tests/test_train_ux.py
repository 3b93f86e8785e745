"""What a person sees of training: the first line, a readable bar, runs that never block --out,
`simreal runs`, and evaluations that say why episodes ended."""
from __future__ import annotations

import io
import json
import re
import time

import numpy as np
import pytest
from rich.console import Console

from simreal.cli import main
from simreal.train import run as run_mod
from simreal.train.callbacks import Progress, short_count
from simreal.train.config import parse_set, resolve
from simreal.train.evaluate import EvalResult
from simreal.train.episode import EpisodeStats
from simreal.train.layout import RunPaths
from simreal.train.run import RunError, train

TINY = ["torch_threads=1", "eval.episodes=1", "env.kwargs.max_episode_steps=50", "n_envs=1",
        "hyperparams.n_steps=32", "hyperparams.batch_size=32", "hyperparams.n_epochs=1",
        "policy.net_arch=[8,8]", "timesteps=64", "eval.every=64", "checkpoint.every=32"]


def tiny_cfg(extra: list[str] = ()):
    return resolve("Pendulum-v1", "ppo", [("--set", parse_set(TINY + list(extra)))])


class _Rolling:
    def rolling(self):
        return {"return": 123.4, "velocity": 0.31, "falls": 0.05}


def test_progress_bar_keeps_steps_elapsed_and_eta_at_80_columns():
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    bar = Progress(3_000_000, 0, _Rolling(), "quadruped ppo", console=console)
    time.sleep(0.05)
    bar.update(1_234_567, force=True)
    bar._bar.refresh()
    bar.close()
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", ln) for ln in buf.getvalue().replace("\r", "\n").splitlines()]
    last = [ln for ln in lines if "1.23M" in ln][-1]
    assert "1.23M/3.00M" in last and "eta" in last
    assert re.search(r"\d:\d\d:\d\d", last), last       # elapsed time whole, not '1…'
    assert len(last.rstrip()) <= 80


def test_short_count():
    assert [short_count(n) for n in (12, 1234, 45_678, 3_000_000)] == ["12", "1.2k", "46k", "3.00M"]


def test_first_line_comes_before_any_environment_is_built(tmp_path, capsys, monkeypatch):
    """The run announces itself at once; workers and torch come after (they take seconds)."""
    seen = []

    def check(cfg):
        seen.append(capsys.readouterr().err)
        raise RunError("stop here")

    monkeypatch.setattr(run_mod, "check_environment", check)
    with pytest.raises(RunError):
        train(tiny_cfg(), tmp_path / "run", progress=False)
    assert seen and seen[0].startswith("simreal train: Pendulum-v1 · ppo · 64 steps")
    assert not (tmp_path / "run").exists()          # checks come before the run directory


def test_interrupted_before_the_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "_execute", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(), out, progress=False)
    assert not out.exists()
    # a folder the user made is kept, emptied of what the run wrote
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(), mine, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    summary = train(tiny_cfg(), out, progress=False)      # --out is reusable
    assert summary.timesteps >= 64


def test_a_run_left_without_checkpoint_says_delete_it(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    RunPaths(out).config.write_text("robot: Pendulum-v1\n")
    with pytest.raises(RunError, match=r"never saved a checkpoint.*rm -r"):
        train(tiny_cfg(), out, progress=False)


def test_runs_lists_runs_with_status_and_last_evaluation(tmp_path, capsys):
    done = tmp_path / "a-done"
    train(tiny_cfg(), done, progress=False)
    stopped = tmp_path / "b-stopped"
    train(tiny_cfg(["timesteps=32", "eval.every=0"]), stopped, progress=False)
    cfg = RunPaths(stopped).config
    cfg.write_text(cfg.read_text().replace("timesteps: 32", "timesteps: 1000"))   # asks for more
    empty = tmp_path / "c-empty"
    empty.mkdir()
    RunPaths(empty).config.write_text("robot: quadruped\nalgo: sac\ntimesteps: 10\n")
    assert main(["runs", str(tmp_path), "--json"]) == 0
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["a-done"]["status"] == "done" and rows["a-done"]["steps"] >= 64
    assert rows["a-done"]["last_eval"] is not None and rows["a-done"]["algo"] == "ppo"
    assert rows["b-stopped"]["status"] == "stopped"
    assert rows["c-empty"]["status"] == "no checkpoint" and rows["c-empty"]["steps"] is None
    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "eval" in lines[0] and "Pendulum-v1" in lines[0]


def test_eval_line_leads_with_velocity_and_falls_and_says_why_episodes_ended():
    eps = [EpisodeStats(ret=100.0, length=50, fell=True, forward_velocity=0.1, end="fall"),
           EpisodeStats(ret=300.0, length=1000, fell=False, forward_velocity=0.4, end="time_limit"),
           EpisodeStats(ret=310.0, length=900, fell=False, forward_velocity=0.5, end="terrain_edge")]
    r = EvalResult.from_episodes(eps)
    line = r.line()
    assert line.startswith("v 0.33 m/s") and "falls 1/3" in line
    assert line.index("falls") < line.index("return")
    assert "ended by fall 1, terrain edge 1, time limit 1" in line
    assert r.to_dict()["ends"] == {"fall": 1, "terrain_edge": 1, "time_limit": 1}


def test_robot_env_reports_how_an_episode_ended():
    from simreal.envs.locomotion import LocomotionEnv

    env = LocomotionEnv("quadruped", randomize=False, episode_seconds=0.1)
    env.reset(seed=0)
    info, done = {}, False
    while not done:
        _, _, term, trunc, info = env.step(np.zeros(env.action_space.shape, np.float32))
        done = term or trunc
    assert info["end"] == "time_limit"
    env.close()
