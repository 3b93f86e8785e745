"""Issue 14, measure and identify: `simreal sysid record` on the lockstep mock robot, hoisted (its
base held in the air), then `simreal sysid fit` on that recording."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from simreal.mock.process import spawn
from simreal.sysid.excitation import Excitation
from simreal.sysid.record import LOG_FILE, META_FILE

SHORT = Excitation(amplitude=0.2, step_s=0.3, chirp_s=0.6)     # 1.35 s per joint


def test_excitation_is_bounded_one_joint_at_a_time():
    ex = Excitation()
    t = np.arange(0, ex.duration(8), 0.02)
    offs = np.array([ex.offset(x, 8) for x in t])
    assert np.abs(offs).max() == pytest.approx(ex.amplitude)
    assert (np.count_nonzero(offs, axis=1) <= 1).all()
    assert set(np.flatnonzero(np.abs(offs).max(axis=0) > 0)) == set(range(8))      # every joint moves
    for bad in (dict(amplitude=0.6), dict(step_s=float("nan")), dict(f0=5.0, f1=1.0)):
        with pytest.raises(ValueError):
            Excitation(**bad)


def _run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simreal.cli", "sysid", "record", *args],
                          capture_output=True, text=True, timeout=timeout)


TRUE = {"kp_scale": 0.8, "kd_scale": 1.3}        # the mock's servos: softer, more damped than nominal


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    out = tmp_path_factory.mktemp("sysid") / "rec"
    gap = ",".join(f"{k}={v}" for k, v in TRUE.items())
    with spawn("quadruped", gap=gap, lockstep=True, extra_args=["--hoisted"]) as m:
        p = _run("quadruped", "--port", m.port, "--out", str(out), "--step-s", "0.3", "--chirp-s", "0.6")
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def test_record_on_the_hoisted_mock_logs_commands_and_states_that_follow_them(recording):
    out = recording
    meta = json.loads((out / META_FILE).read_text())
    assert meta["stance"] == "hoisted" and meta["safe_stops"] == [] and meta["excitation"]["step_s"] == 0.3
    rows = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    assert rows[0]["type"] == "header" and rows[0]["excitation"]["amplitude"] == 0.2
    cycles = [r for r in rows if r.get("type") == "cycle" and r.get("phase") == "policy" and "state" in r]
    assert len(cycles) >= 0.9 * SHORT.duration(8) / 0.02
    sent = np.array([r["sent"] for r in cycles])
    q = np.array([r["state"]["q"] for r in cycles])
    default = np.array(rows[0]["default_pose"])
    for j in range(8):                          # each joint follows its own excitation, a few cycles late
        c = max(np.corrcoef(sent[:len(sent) - k, j] - default[j], q[k:, j] - default[j])[0, 1] for k in range(10))
        assert c > 0.8, (j, c)
    quat = np.array([r["state"]["quat"] for r in cycles])
    assert np.abs(quat - quat[0]).max() < 0.02              # hoisted: the base does not rock (IMU noise only)
    assert not (out.parent / "rec.partial").exists()


def test_record_refuses_bad_arguments_before_anything_moves(tmp_path):
    (tmp_path / "taken").mkdir()
    p = _run("quadruped", "--port", "/dev/null-no-such", "--out", str(tmp_path / "taken"))
    assert p.returncode == 2 and "--out" in p.stderr and "already exists" in p.stderr and "Traceback" not in p.stderr
    p = _run("quadruped", "--port", "/dev/null-no-such", "--out", str(tmp_path / "r"), "--amplitude", "0.9")
    assert p.returncode == 2 and "amplitude" in p.stderr and not (tmp_path / "r").exists()
    p = _run("quadruped", "--port", "/dev/null-no-such", "--out", str(tmp_path / "r"))
    assert p.returncode == 2 and "/dev/null-no-such" in p.stderr and not (tmp_path / "r").exists()
    assert not (tmp_path / "r.partial").exists()


def _fit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simreal.cli", "sysid", "fit", *args],
                          capture_output=True, text=True, timeout=300)


def _robot_copy(tmp_path):
    import shutil

    from simreal.robot.spec import load_robot

    robot = tmp_path / "quadruped"
    shutil.copytree(load_robot("quadruped").root, robot)
    return robot


def test_fit_recovers_the_mocks_servo_gains_and_its_link_delay(recording, tmp_path):
    # Tolerances (docs/sim_to_real.md): 10% for gains; the delay exact. The mock runs in lockstep
    # (it applies each COMMAND at once, then advances one period), so host load cannot matter.
    robot = _robot_copy(tmp_path)
    before = (robot / "robot.yaml").read_text()
    p = _fit(str(recording), "--robot", str(robot), "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    for name, truth in TRUE.items():
        est = r["estimates"][name]
        assert est["value"] == pytest.approx(truth, rel=0.10), (name, est)
        assert 0 < est["ci95"] < 0.1 * truth, (name, est)
    assert r["action_latency_steps"] == 0 and r["delay_physics_steps"] == 0
    assert r["rms_rad"] < 0.5 * r["rms_nominal_rad"]              # the fit explains the recording better
    lo, hi = r["ranges"]["kp_scale"]
    assert lo < TRUE["kp_scale"] < hi and hi - lo < 0.5 and r["written"] is False
    assert (robot / "robot.yaml").read_text() == before                 # without --write, nothing written


def test_fit_recovers_an_injected_whole_cycle_action_delay(tmp_path):
    # The mock applies each COMMAND's targets one frame late (gap action_delay=1): the fit must
    # find one control step (4 physics steps) and the nominal gains within 10%.
    out = tmp_path / "rec"
    with spawn("quadruped", gap="action_delay=1", lockstep=True, extra_args=["--hoisted"]) as m:
        p = _run("quadruped", "--port", m.port, "--out", str(out), "--step-s", "0.3", "--chirp-s", "0.6")
    assert p.returncode == 0, p.stderr[-2000:]
    p = _fit(str(out), "--robot", "quadruped", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["action_latency_steps"] == 1 and abs(r["delay_physics_steps"] - 4) <= 1, r["rms_by_delay"]
    for name in ("kp_scale", "kd_scale"):
        assert r["estimates"][name]["value"] == pytest.approx(1.0, rel=0.10), r["estimates"]


def test_fit_writes_the_ranges_with_write_and_shows_the_diff(recording, tmp_path):
    from simreal.robot.spec import load_robot

    robot = _robot_copy(tmp_path)
    before = (robot / "robot.yaml").read_text()
    p = _fit(str(recording), "--robot", str(robot), "--write")
    assert p.returncode == 0, p.stderr
    assert "-  kp_scale: [0.8, 1.3]" in p.stdout and "+  kp_scale: [" in p.stdout, p.stdout
    after = (robot / "robot.yaml").read_text()
    assert "# m, +- per axis" in after and after.count("\n") == before.count("\n")   # comments and lines kept
    lo, hi = load_robot(str(robot)).randomization.kp_scale
    assert lo < TRUE["kp_scale"] < hi and (lo, hi) != (0.8, 1.3)


@pytest.mark.parametrize("damage, says", [
    (lambda lines: lines[: len(lines) // 2] + [lines[len(lines) // 2][:40]], "not JSON"),
    (lambda lines: [line.replace('"q":[', '"q":[NaN,', 1) if '"phase":"policy"' in line else line
                    for line in lines], "has 9 values"),
    (lambda lines: lines[:3], "need >= 50"),
])
def test_a_malformed_or_truncated_recording_is_refused_naming_file_and_line(recording, tmp_path, damage, says):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(recording, bad)
    log = bad / LOG_FILE
    log.write_text("\n".join(damage(log.read_text().splitlines())) + "\n")
    p = _fit(str(bad), "--robot", "quadruped")
    assert p.returncode == 2 and str(log) in p.stderr and says in p.stderr and "Traceback" not in p.stderr, p.stderr
    if says != "need >= 50":
        assert " line " in p.stderr


def test_fitted_ranges_replace_only_their_lines_and_a_missing_line_is_named():
    from simreal.robot.spec import load_robot
    from simreal.sysid.ranges import updated_yaml

    text = (load_robot("quadruped").root / "robot.yaml").read_text()
    new = updated_yaml(text, {"kp_scale": [0.75, 0.85], "action_latency_steps": [0, 1]})
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert changed == [("  kp_scale: [0.8, 1.3]", "  kp_scale: [0.75, 0.85]"),
                       ("  action_latency_steps: [0, 2]", "  action_latency_steps: [0, 1]")]
    with pytest.raises(ValueError, match="no \\[lo, hi\\] line for kp_scale"):
        updated_yaml(text.replace("  kp_scale: [0.8, 1.3]\n", ""), {"kp_scale": [0.7, 0.9]})


def test_a_parameter_the_recording_does_not_pin_keeps_its_range():
    """kd 0.49 +- 0.31 (seen fitting the `beyond` mock) would have given kd_scale [-0.44, 1.43]:
    a negative damping scale in training. Only identified parameters get fitted ranges."""
    from simreal.sysid.fit import Estimate, Fit
    from simreal.sysid.ranges import fitted_ranges

    result = Fit((Estimate("kp_scale", 0.646, 0.041), Estimate("kd_scale", 0.494, 0.310)), 12, 4, 0.012,
                 (0.012,), 0.028, 0.005)
    ranges = fitted_ranges(result)
    assert ranges == {"kp_scale": [0.523, 0.769], "action_latency_steps": [2, 4]}
    assert all(lo > 0 for lo, _ in ranges.values() if isinstance(lo, float))
