"""Every mistake a new user makes gets one clear line and the documented exit code (no traceback).

Table-driven: each row is a command line (in a subprocess, as a user runs it), the exit code it
must end with, and the words its message must contain (the file, field, port or argument).
Deploy's rows are in test_deploy_cli.py, rendering's in test_render.py.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, assert_clean_error, run_simreal


def _robot_copy(tmp: Path, name: str, edit) -> Path:
    """robots/quadruped copied as robot NAME with robot.yaml passed through edit(dict) -> dict."""
    d = tmp / "robots" / name
    shutil.copytree(ROOT / "robots" / "quadruped", d)
    raw = yaml.safe_load((d / "robot.yaml").read_text())
    raw["name"] = name
    (d / "robot.yaml").write_text(yaml.safe_dump(edit(raw), sort_keys=False))
    return d


def _set(path: str, value):
    def edit(raw: dict) -> dict:
        node = raw
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
        return raw
    return edit


def _drop(key: str):
    def edit(raw: dict) -> dict:
        raw.pop(key)
        return raw
    return edit


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A robot path with broken robots beside the shipped ones, and broken config/gap files."""
    tmp = tmp_path_factory.mktemp("mistakes")
    _robot_copy(tmp, "infperiod", _set("control.period", float("inf")))
    _robot_copy(tmp, "nanreward", _set("task.reward_scales.alive", float("nan")))
    _robot_copy(tmp, "nojoints", _drop("joints"))
    (tmp / "nan_lr.yaml").write_text("hyperparams:\n  learning_rate: .nan\n")
    (tmp / "inf_clip.yaml").write_text("hyperparams:\n  clip_range: .inf\n")
    (tmp / "nan_gap.yaml").write_text("friction: .nan\n")
    (tmp / "bad.yaml").write_text("hyperparams: [unclosed\n")
    return {"tmp": tmp, "env": {"SIMREAL_ROBOT_PATH": str(tmp / "robots")}}


# (id, argv with {tmp} placeholders, exit code, needles). Every row runs with the broken robots
# on SIMREAL_ROBOT_PATH, so a broken neighbour must never break a command about a good robot.
CASES = [
    ("robots-show-typo", ["robots", "show", "quadrupd"], 2, ["unknown robot 'quadrupd'", "quadruped"]),
    ("rollout-typo", ["rollout", "quadrupd", "--steps", "2"], 2, ["unknown robot 'quadrupd'"]),
    ("train-typo", ["train", "quadrupd", "--algo", "ppo", "--out", "{tmp}/r-typo"], 2, ["'quadrupd'"]),
    ("robots-show-missing-field", ["robots", "show", "nojoints"], 2, ["nojoints/robot.yaml", "field joints"]),
    ("rollout-broken-yaml", ["rollout", "nojoints", "--steps", "2"], 2, ["robot.yaml", "field joints"]),
    ("robots-show-inf-period", ["robots", "show", "infperiod"], 2,
     ["infperiod/robot.yaml", "control.period", "finite"]),
    ("mock-robot-inf-period", ["mock-robot", "infperiod"], 2, ["control.period", "finite"]),
    ("train-nan-reward-scale", ["train", "nanreward", "--algo", "ppo", "--out", "{tmp}/r-nan"], 2,
     ["nanreward/robot.yaml", "task.reward_scales.alive", "finite"]),
    ("train-broken-robot", ["train", "nojoints", "--algo", "ppo", "--out", "{tmp}/r-broken"], 2,
     ["robot.yaml", "field joints"]),
    ("train-config-nan-lr", ["train", "quadruped", "--algo", "ppo", "--config", "{tmp}/nan_lr.yaml",
                             "--out", "{tmp}/r-lr"], 2, ["nan_lr.yaml", "hyperparams.learning_rate", "finite"]),
    ("train-config-inf-clip", ["train", "quadruped", "--algo", "ppo", "--config", "{tmp}/inf_clip.yaml",
                               "--out", "{tmp}/r-clip"], 2, ["inf_clip.yaml", "hyperparams.clip_range"]),
    ("train-set-nan", ["train", "quadruped", "--algo", "ppo", "--set", "hyperparams.gamma=.nan",
                       "--out", "{tmp}/r-set"], 2, ["hyperparams.gamma=.nan", "finite"]),
    ("train-config-not-yaml", ["train", "quadruped", "--algo", "ppo", "--config", "{tmp}/bad.yaml"], 2,
     ["bad.yaml", "not valid YAML"]),
    ("train-config-missing", ["train", "quadruped", "--algo", "ppo", "--config", "{tmp}/nope.yaml"], 2,
     ["nope.yaml", "no such file"]),
    ("train-init-from-missing", ["train", "quadruped", "--algo", "ppo", "--init-from", "{tmp}/nothing",
                                 "--out", "{tmp}/r-init"], 2, ["--init-from", "nothing"]),
    ("train-bad-steps", ["train", "quadruped", "--algo", "ppo", "--timesteps", "nan"], 2, ["--timesteps"]),
    ("mock-robot-nan-gap", ["mock-robot", "quadruped", "--gap", "{tmp}/nan_gap.yaml"], 2,
     ["nan_gap.yaml", "friction", "finite"]),
    ("mock-robot-gap-override-inf", ["mock-robot", "quadruped", "--gap", "friction=.inf"], 2,
     ["friction", "finite"]),
    ("eval-missing-run", ["eval", "{tmp}/no-such-run"], 2, ["no-such-run"]),
    ("train-bad-heading-hold-kwarg", ["train", "quadruped", "--algo", "ppo", "--timesteps", "100",
                                      "--set", "env.kwargs.heading_hold=-1", "--out", "{tmp}/r-hold"], 2,
     ["env.kwargs", "heading hold gain"]),
    ("eval-nan-heading-hold", ["eval", "assets/policies/quadruped", "--heading-hold", "nan"], 2,
     ["--heading-hold", "finite"]),
    ("deploy-negative-heading-hold", ["deploy", "assets/policies/quadruped", "--port", "/dev/null",
                                      "--heading-hold", "-1"], 2, ["--heading-hold", ">= 0"]),
    ("runs-missing-dir", ["runs", "{tmp}/no-such-dir"], 2, ["no-such-dir"]),
]


@pytest.mark.parametrize("argv,code,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_gets_one_clear_line(world, argv, code, needles):
    tmp = world["tmp"]
    args = [a.replace("{tmp}", str(tmp)) for a in argv]
    r = run_simreal(*args, env=world["env"], timeout=120)
    assert_clean_error(r, code, *needles)
    # a refused train writes no run directory
    for a in args:
        if a.startswith(f"{tmp}/r-"):
            assert not Path(a).exists(), f"{a} was written by a refused run"


def test_debug_shows_the_traceback(world):
    r = run_simreal("--debug", "robots", "show", "quadrupd", env=world["env"])
    assert r.returncode == 2 and "Traceback" in r.stderr
    r = run_simreal("robots", "show", "quadrupd", env=world["env"] | {"SIMREAL_DEBUG": "1"})
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_one_broken_robot_does_not_hide_the_others(world):
    r = run_simreal("robots", env=world["env"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    names = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "joints" in names["quadruped"] and "joints" in names["biped"]
    assert "BROKEN" in names["nojoints"] and "field joints" in names["nojoints"]
    assert "BROKEN" in names["infperiod"]


def test_help_states_the_exit_codes():
    for argv in (["--help"], ["train", "--help"], ["robots", "--help"]):
        r = run_simreal(*argv)
        assert r.returncode == 0
        text = " ".join(r.stdout.split())
        assert "exit codes: 0 done, 1 a safety stop" in text and "130 interrupted" in text


def test_non_finite_learning_rate_string_is_refused():
    """'nan' as a YAML string is parsed as a number by the schedule parser: refused there too."""
    from simreal.train.config import ConfigError, parse_set, resolve

    for value in ("nan", "lin_inf", "inf"):
        with pytest.raises(ConfigError, match="learning_rate"):
            resolve("quadruped", "ppo", [("--set", parse_set([f"hyperparams.learning_rate={value}"]))])
