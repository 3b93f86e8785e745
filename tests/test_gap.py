"""Issue 14, measure the gap: `simreal gap BUNDLE --port PORT` runs the shipped policy on the
lockstep mock and in simulation and compares them; the metrics it reports, checked by hand."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from simreal.mock.process import spawn
from simreal.sysid import gap_metrics as M

BUNDLE = "assets/policies/quadruped"


def _gap(port: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simreal.cli", "gap", BUNDLE, "--port", port,
                           "--duration", "3", *args], capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def nominal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gap") / "nominal"
    with spawn("quadruped", gap="nominal", lockstep=True) as m:
        p = _gap(m.port, "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    return out, p.stdout


def test_gap_against_the_nominal_mock_reports_no_lag_difference(nominal):
    out, printed = nominal
    rep = json.loads((out / "gap.json").read_text())
    # 150 policy cycles; a loaded host may skip a deadline (faults.md C5), and the lockstep mock
    # does not move in a skipped one, so a cycle or two fewer is the host's, not the gap's
    assert 145 <= rep["compared_cycles"] <= 150 and not rep["robot"]["fell"] and not rep["sim"]["fell"]
    lags = [j["lag_difference"] for j in rep["joints"]]
    assert len(lags) == 8 and max(abs(x) for x in lags) < 0.5, lags        # < half a control cycle
    assert all(j["lag_robot"] > 1 for j in rep["joints"])                   # but the joints do lag
    assert 0.9 < rep["velocity_ratio"] < 1.1 and rep["robot"]["privileged"]
    assert rep["observation"]["mean_w1_over_sim_std"] < 0.2
    assert abs(rep["robot"]["heading_drift_deg_15s"] - rep["sim"]["heading_drift_deg_15s"]) < 10
    assert rep["heading_hold"] == 1.0 and "heading hold gain 1 on both" in printed   # as the bundle was trained
    assert {p.name for p in out.iterdir()} == {"gap.json", "robot.jsonl", "sim.npz", "joints.png"}
    assert (out / "joints.png").stat().st_size > 20_000
    assert not out.with_name("nominal.partial").exists()
    assert "velocity ratio robot/sim" in printed and "fl_hip" in printed


def test_gap_sees_softer_servos_as_lag_and_tracking_error(nominal):
    base = json.loads((nominal[0] / "gap.json").read_text())
    with spawn("quadruped", gap="kp_scale=0.5", lockstep=True) as m:
        p = _gap(m.port, "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    rep = json.loads(p.stdout)
    diff = np.mean([j["lag_difference"] for j in rep["joints"]])
    nominal_diff = np.mean([j["lag_difference"] for j in base["joints"]])
    assert diff > nominal_diff + 0.5, (diff, nominal_diff)        # half kp: the robot follows later
    # and walks slower than commanded (a policy may shorten its steps, so the joints' own rms
    # tracking error need not grow)
    assert rep["robot"]["tracking_error"] > base["robot"]["tracking_error"] + 0.05, (rep["robot"], base["robot"])
    assert rep["observation"]["mean_w1_over_sim_std"] > base["observation"]["mean_w1_over_sim_std"]


def test_gap_refuses_bad_arguments_before_torque(tmp_path):
    (tmp_path / "taken").mkdir()
    p = _gap("/dev/null-no-such", "--out", str(tmp_path / "taken"))
    assert p.returncode == 2 and "already exists" in p.stderr and "Traceback" not in p.stderr
    p = _gap("/dev/null-no-such", "--out", str(tmp_path / "new"))
    assert p.returncode == 2 and "/dev/null-no-such" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()


def test_a_safe_stop_before_the_policy_is_one_line_and_exit_1(tmp_path):
    with spawn("quadruped", gap="nominal", faults="estop_at=0.2", lockstep=True) as m:
        p = _gap(m.port, "--out", str(tmp_path / "g"))
    assert p.returncode == 1 and "ran no policy cycle" in p.stderr and "safe stop" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and not (tmp_path / "g").exists()
    assert not (tmp_path / "g.partial").exists()


def test_lag_is_found_to_a_fraction_of_a_cycle():
    t = np.arange(400)
    target = np.sin(2 * np.pi * t / 37) + 0.5 * np.sin(2 * np.pi * t / 11)
    for delay in (0.0, 2.0, 3.5):
        q = np.interp(t - delay, t, target)          # the target, `delay` cycles later
        assert M.lag_cycles(target, q) == pytest.approx(delay, abs=0.25)
    assert math.isnan(M.lag_cycles(np.zeros(400), np.zeros(400)))          # a joint that never moved


def test_wasserstein_of_a_shifted_sample_is_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert M.wasserstein_1d(a, a + 0.3) == pytest.approx(0.3, abs=1e-9)
    assert M.wasserstein_1d(a, a) == 0.0
    d = M.observation_distance(np.c_[a, a + 2.0], np.c_[a, a], ["x", "y"])
    assert d["largest"][0]["entry"] == "y" and d["largest"][0]["w1_over_sim_std"] == pytest.approx(2.0, rel=0.05)


def test_walking_figures_by_hand():
    T, period = 750, 0.02                                   # 15 s
    heading = np.linspace(0.0, math.radians(30), T)         # turned 30 degrees
    tr = M.Trace("robot", period, (0.3, 0.0), np.zeros((T, 1)), np.zeros((T, 1)), np.zeros((T, 2)), heading,
                 np.full(T, 0.25), np.c_[np.linspace(0, 3, T), np.zeros(T)], False)
    w = M.walking(tr)
    assert w["heading_drift_deg_15s"] == pytest.approx(30.0, abs=0.1)
    assert w["forward_velocity"] == 0.25 and w["tracking_error"] == pytest.approx(0.05)
    assert w["progress_velocity"] == pytest.approx(3 / 15, rel=0.01)
    blind = M.Trace("robot", period, (0.3, 0.1), tr.q, tr.sent, tr.obs, heading, None, None, False)
    w = M.walking(blind)          # hardware without a velocity source: nothing guessed
    assert w["forward_velocity"] is None and w["progress_velocity"] is None
    assert w["heading_drift_deg_15s"] == pytest.approx(30.0 - math.degrees(0.1 * 15.0), abs=0.1)
