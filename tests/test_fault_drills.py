"""`simreal faults` and its drills (docs/faults.md): codec mutants, safety stops with times, the report.

The link drills' exact identities are tests/test_link_drills.py; the P4 kill is tests/test_runtime_log.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from simreal import protocol as P
from simreal.faults import codec, stops
from simreal.faults.bench import T

ROOT = Path(__file__).resolve().parents[1]


def test_codec_drill_covers_every_message_type_and_accepts_nothing_damaged():
    assert {type(m).TYPE for m, _ in codec.samples()} == set(P.MESSAGES)
    sizes = [len(P.encode(m, t)) for m, t in codec.samples()]
    assert min(sizes) <= 13 and max(sizes) >= 480
    runs = codec.run(scale=0.01, seed=1)
    assert {r.cls.split()[0] for r in runs} == {"F1", "F2", "F3", "F4", "F5", "F6", "F7"}
    for r in runs:
        assert r.passed and r.mutants > 0 and r.rejected == r.mutants, r


def test_codec_tally_counts_a_false_accept_and_an_untyped_exception(monkeypatch):
    # A whole valid frame among the mutants is a false accept; a decoder raising anything but a
    # protocol error is untyped: the drill can fail both ways.
    run = codec._tally("x", iter([P.encode(P.Hello(), 5), b"\x00\x05\x00"]))
    assert run.mutants == 2 and run.false_accepts == 1 and run.rejected == 1 and run.passed is False

    def broken(self, data):
        raise IndexError("decoder bug")
    monkeypatch.setattr(P.FrameDecoder, "feed", broken)
    run = codec._tally("x", iter([b"\x00\x01\x00"]))
    assert run.untyped == 1 and not run.passed


def test_every_safety_drill_stops_right_and_confirms_a_safe_mode_within_a_period():
    runs = stops.run(trials=2)
    assert {r.row for r in runs} >= {"C1", "C2", "C4", "C5", "C6", "C7", "C9", "F9", "T1", "T2"}
    for r in runs:
        assert r.detected == r.trials and r.non_finite_commands == 0 and r.passed, r
        assert r.detect_ms["max"] >= 0
        if r.confirmable:
            assert r.confirmed == r.trials and r.safe_ms["max"] <= T * 1e3
            assert 200 <= r.off_ms["max"] <= 200 + 2 * T * 1e3     # damp_s (0.2 s), then TORQUE 0
        else:
            assert r.confirmed == 0 and not r.safe_ms              # link gone: nothing can confirm
    by = {r.name: r for r in runs}
    assert by["NaN action"].detect_ms["max"] < T * 1e3            # caught in the cycle it happens
    assert by["fall (tilt 90 deg)"].detect_ms["max"] >= 2 * T * 1e3   # debounced over several cycles


def test_a_drill_that_latches_the_wrong_cause_fails():
    wrong = stops.Drill("C6", "tilt, expected as a joint limit", stops.S.JOINT_LIMIT,
                        lambda c, n: {"faults": f"tilt_at={stops.at_cycle(c)}:90"})
    spec = __import__("simreal.robot.spec", fromlist=["load_robot"]).load_robot("quadruped")
    t = stops.trial(spec, wrong, stops.N_PRE + 3)
    assert t.cause == stops.S.TILT != wrong.cause


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "simreal.cli", "faults", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_simreal_faults_quick_meets_every_target_and_reports_json():
    # CI's run of the fault matrix: every drill at reduced counts (the full figures: BENCHMARKS.md).
    p = run_cli("--quick", "--json")
    assert p.returncode == 0, p.stderr[-3000:] + p.stdout[-3000:]
    r = json.loads(p.stdout)
    assert r["quick"] and all(t["met"] for t in r["targets"]), r["targets"]
    assert sum(c["mutants"] for c in r["codec"]) > 30_000
    assert all(x["passed"] for x in r["link"]) and r["slow_link"]["failed"] == 0
    assert r["slow"] is None                                        # real time: only the full run
    assert r["train_kills"]["kills"] == 2 and r["train_kills"]["corrupted_latest"] == 0
    assert r["train_kills"]["landed_in_save"] >= 1                   # the kills really hit a save
    assert r["slow_link"]["rtt_p50_s"] >= 0.5 * r["slow_link"]["timeout_s"]


def test_simreal_faults_bad_seed_is_one_line_exit_2():
    p = run_cli("--seed", "-1", timeout=60)
    assert p.returncode == 2 and "--seed" in p.stderr and "Traceback" not in p.stderr
