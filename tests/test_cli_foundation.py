"""The one CLI: help lists the subcommands; robots, rollout, render behave as documented."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from simreal.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("robots", "rollout", "view", "render"):
        assert cmd in out


def test_each_subcommand_has_help(capsys):
    for cmd in ("robots", "rollout", "view", "render"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_robots_list_and_show(capsys):
    assert main(["robots", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"quadruped", "biped"}
    assert main(["robots", "show", "biped", "--json"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert [j["name"] for j in spec["joints"]][:2] == ["l_hip_yaw", "l_hip_roll"]
    assert len(spec["spec_hash"]) == 64


def test_rollout_prints_summary(capsys):
    assert main(["rollout", "quadruped", "--steps", "120", "--seed", "2", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["steps"] == 120 and s["nonfinite"] == 0
    assert set(s["mean_terms"]) >= {"tracking_lin_vel", "alive"}
    assert "friction" in s["first_randomization"]


def test_wheel_ships_robots(tmp_path):
    """`pip install .` must find the robots: they are package data inside the wheel."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("simreal-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for robot in ("quadruped", "biped"):
        assert f"simreal/_robots/{robot}/robot.yaml" in names
        assert f"simreal/_robots/{robot}/scene.xml" in names
