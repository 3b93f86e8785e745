"""The run log (faults.md P4), the plots drawn from it, and the deploy CLI's small pieces."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simreal.deploy.runlog import RunLogWriter, read_log
from simreal.deploy.plan import StartRefused, contract_problems, parse_command, plan_from_contract
from simreal import protocol as P

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- reader / writer

def test_reader_tolerates_a_cut_last_line_only(tmp_path):
    path = tmp_path / "log.jsonl"
    with RunLogWriter(path, {"robot": "quadruped"}) as log:
        for k in range(3):
            log.cycle({"k": k, "t": k * 0.02, "sent": np.arange(2.0), "x": np.float32(1.5)})
        log.event("trip", cause="tilt", detail="fell", t=0.05)
    text = path.read_text()
    run = read_log(path)
    assert len(run.cycles) == 3 and run.events[0]["cause"] == "tilt" and not run.truncated
    assert run.cycles[1]["sent"] == [0.0, 1.0] and run.cycles[0]["x"] == 1.5
    path.write_text(text + '{"type":"cycle","k":3,"t":0.0')          # died mid-write
    run = read_log(path)
    assert run.truncated and len(run.cycles) == 3
    path.write_text(text.replace('"k":1', '"k":1,,'))                   # damage in the middle
    with pytest.raises(ValueError, match="line 3"):
        read_log(path)
    path.write_text('{"type":"cycle","k":0}\n')
    with pytest.raises(ValueError, match="no header"):
        read_log(path)


def test_non_finite_values_are_logged_as_they_were(tmp_path):
    path = tmp_path / "nan.jsonl"
    with RunLogWriter(path, {"robot": "x"}) as log:
        log.cycle({"k": 0, "t": 0.0, "action": np.array([math.nan, math.inf, 0.0])})
    a = read_log(path).cycles[0]["action"]
    assert math.isnan(a[0]) and a[1] == math.inf


@pytest.mark.parametrize("when", ["mid_run", "during_safe_stop"])
def test_p4_log_survives_sigkill(tmp_path, when):
    """SIGKILL while cycling, and while the safe stop is under way: every record written is readable.

    The child (simreal.faults.persistence.LOG_CHILD) runs in real time and reports each cycle and
    event once its log call returned; `simreal faults` runs the same drill."""
    from simreal.faults.persistence import log_kill

    path = tmp_path / "killed.jsonl"
    k = log_kill(path, when, 38 if when == "during_safe_stop" else 25)
    assert k.in_order and k.cycles_lost == 0 and k.events_lost == 0     # nothing reported done is lost
    assert k.cycles_logged - k.cycles_reported <= 1                    # at most the cycle under way beyond it
    run = read_log(path)
    if when == "during_safe_stop":
        assert run.events_of("trip")[0]["cause"] == "tilt"
        assert run.events_of("stopping")[0]["cause"] == "tilt"   # fsync'ed before the kill
        assert not run.events_of("safe_stop") and run.summary is None
    else:
        assert k.cycles_reported >= 26 and not run.events_of("trip")


# --------------------------------------------------------------------------- plots

def test_log_plot_draws_every_figure_with_events(tmp_path):
    pytest.importorskip("matplotlib")
    from simreal.deploy.cli import run_log_plot

    path = tmp_path / "plot.jsonl"
    n = 2
    with RunLogWriter(path, {"robot": "toy", "joint_names": ["a", "b"], "period": 0.02, "joint_min": [-1, -1],
                             "joint_max": [1, 1], "max_tilt_deg": 60}) as log:
        for k in range(50):
            t = 0.02 * k
            roll = math.radians(2 * k)
            log.cycle({"k": k, "t": t, "phase": "policy",
                       "state": {"q": [0.1 * math.sin(t)] * n, "quat": [math.cos(roll / 2), math.sin(roll / 2), 0, 0],
                                 "gyro": [0.0, 0.1, 0.0]},
                       "sent": [0.1] * n, "command": [0.4, 0.0], "tilt_deg": 2 * k,
                       "truth": {"pos": [0.01 * k, 0, 0.15], "vel": [0.4, 0, 0]} if k % 5 == 0 else None,
                       "timing": {"read": 0.002, "send": 0.003, "work": 0.006, **({"period": 0.02} if k else {})}})
        log.event("trip", t=0.9, cause="tilt", detail="tilt 62 deg")
        log.event("safe_stop", t=0.95, cause="tilt")
    out = tmp_path / "plots"
    assert run_log_plot(SimpleNamespace(log=str(path), out=str(out))) == 0
    for name in ("joints", "attitude", "velocity", "timing"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name


# --------------------------------------------------------------------------- plan, contract check, CLI

def contract(**kw):
    base = dict(robot="quadruped", joint_names=["a", "b"], default_pose=[0.1, -0.1], joint_min=[-1, -2],
                joint_max=[1, 2], control_period=0.02, max_target_rate=8.0, max_tilt_deg=60.0,
                command_vx=(0.2, 0.6), command_yaw=(0.0, 0.0))
    base.update(kw)
    return SimpleNamespace(**base)


def test_plan_takes_the_tighter_of_bundle_and_robot_spec():
    spec = SimpleNamespace(joint_names=["a", "b"], joint_min=np.array([-0.5, -3.0]), joint_max=np.array([2.0, 1.5]),
                           control=SimpleNamespace(max_target_rate=4.0), task=SimpleNamespace(max_tilt_deg=45.0))
    plan = plan_from_contract(contract(), spec)
    assert list(plan.joint_min) == [-0.5, -2.0] and list(plan.joint_max) == [1.0, 1.5]
    assert plan.max_target_rate == 4.0 and plan.max_tilt_deg == 45.0
    assert plan.max_step(0.02) == pytest.approx(0.08)
    assert plan.default_command == (0.4, 0.0)
    with pytest.raises(StartRefused, match="default_pose"):
        plan_from_contract(contract(default_pose=[0.0]))


def test_contract_problems_name_the_field():
    plan = plan_from_contract(contract())
    ok = P.Info("quadruped", ("b", "a"))                 # order differs: mapped by name, fine
    assert contract_problems(plan, ok) == []
    bad = P.Info("biped", ("a", "c"))
    problems = contract_problems(plan, bad)
    assert problems[0].startswith("robot:") and problems[1].startswith("joint_names:") and "'c'" in problems[1]


def test_parse_command():
    plan = plan_from_contract(contract())
    assert parse_command(None, plan) == (0.4, 0.0)
    assert parse_command("vx=0.3", plan) == (0.3, 0.0)
    assert parse_command("yaw=0.1, vx=0.5", plan) == (0.5, 0.1)
    for bad in ("speed=1", "vx", "vx=fast", "vx=nan"):
        with pytest.raises(ValueError, match="--command"):
            parse_command(bad, plan)


def test_exit_codes():
    from simreal.deploy.cli import exit_code

    assert exit_code({"safe_stops": []}) == 0
    assert exit_code({"safe_stops": [{"cause": "tilt"}]}) == 1
    assert exit_code({"safe_stops": [{"cause": "signal"}]}) == 130


def test_deploy_refuses_a_bad_bundle_before_opening_the_port(tmp_path, capsys):
    from simreal.cli import main

    (tmp_path / "policy.json").write_text(json.dumps({"format": "simreal-policy/1", "robot": "quadruped"}))
    rc = main(["deploy", str(tmp_path), "--port", "/dev/does-not-exist"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "policy.json" in err and "/dev/does-not-exist" not in err
