"""Issue 14, measure: `simreal sysid record` on the mock robot, hoisted (its base held in the air)."""
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


def test_record_on_the_hoisted_mock_logs_commands_and_states_that_follow_them(tmp_path):
    out = tmp_path / "rec"
    with spawn("quadruped", extra_args=["--hoisted"]) as m:
        p = _run("quadruped", "--port", m.port, "--out", str(out), "--step-s", "0.3", "--chirp-s", "0.6")
    assert p.returncode == 0, p.stderr[-2000:]
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
