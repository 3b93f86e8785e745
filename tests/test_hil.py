"""Hardware-in-the-loop: `simreal deploy`'s runtime against `simreal mock-robot` over a real pseudo-terminal.

The mock runs in --lockstep (each COMMAND advances one control period), so physics does not depend
on how busy the test machine is; the link, protocol, driver, runtime, safety layer and bundle are
the real ones. Transaction budgets are generous for the same reason (timing is benchmarked in
scripts/bench_loop.py, not asserted here).
"""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from conftest import tiny_bundle

from simreal.deploy import safety as S
from simreal.deploy.driver import LinkConfig
from simreal.deploy.runlog import read_log
from simreal.deploy.plan import RuntimeConfig
from simreal.deploy.session import deploy

mock_robot = pytest.importorskip("simreal.mock.process")
try:
    from simreal.bundle.shipped import shipped_bundle
    SHIPPED = shipped_bundle()
except FileNotFoundError:
    SHIPPED = None

# Lockstep: host timing does not move the robot, so overruns on a loaded CI box are not faults here.
CALM = S.SafetyConfig(overrun_consecutive=10 ** 6, overrun_fraction=1.0)
LINK = LinkConfig(timeout_s=0.5, retries=2)


def config(**kw) -> RuntimeConfig:
    base = dict(soft_start_s=0.5, settle_s=0.1, transaction_budget_s=1.0, truth_every=10, safety=CALM)
    base.update(kw)
    return RuntimeConfig(**base)


def untrained_bundle(robot: str, out) -> str:
    """A small random policy exported as a real bundle: near-zero actions, so the robot stands."""
    pytest.importorskip("torch")
    from simreal.robot.spec import load_robot

    return str(tiny_bundle(out, load_robot(robot), hidden=16, stand_still=True))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The shipped bundle when it exists; otherwise an untrained one exported on the spot (stands still)."""
    if SHIPPED is not None:
        return str(SHIPPED)
    return untrained_bundle("quadruped", tmp_path_factory.mktemp("hil") / "untrained")


def run(bundle, tmp_path, *, faults=None, seconds=1.5, cfg=None, **kw):
    log = tmp_path / "run.jsonl"
    with mock_robot.spawn("quadruped", gap="nominal", faults=faults, seed=0, lockstep=True) as mock:
        summary, _ = deploy(bundle, mock.port, duration_s=seconds, log_path=str(log), config=cfg or config(),
                            link=LINK, **{k: (v(mock) if k == "on_cycle" else v) for k, v in kw.items()})
        report = mock.report() if mock.alive else None     # a killed mock writes no report
    return summary, read_log(log), report


@pytest.mark.skipif(SHIPPED is None, reason="assets/policies/quadruped is not shipped yet")
def test_shipped_policy_walks_forward_on_the_mock_with_no_safety_stops(tmp_path):
    s, run_log, report = run(str(SHIPPED), tmp_path, seconds=5.0)
    assert s["safe_stops"] == [] and s["end"] == "duration"
    assert s["stop"]["confirmed"]
    # Lockstep: each COMMAND is 20 ms of simulated walking, however long the (loaded) host took, and a
    # late host skips deadlines, so judge the speed over the simulated time actually walked.
    walked_s = 0.02 * sum(1 for c in run_log.cycles if c["phase"] == "policy" and "reply_status" in c)
    assert walked_s >= 1.0, f"only {walked_s:.2f} s of simulated walking: host far too slow"
    assert s["forward_m"] > 0.25 * walked_s and s["forward_m"] > 0.25, (walked_s, s)   # commanded 0.4 m/s
    assert not s["fallen"] and report["falls"] == 0
    assert report["requests"]["COMMAND"] == s["commands_sent"]


def test_killing_the_mock_mid_run_is_a_safe_stop_in_the_log(bundle, tmp_path):
    def killer(mock):
        def on_cycle(i, rec):
            if i == 40:
                mock.proc.kill()
                mock.proc.wait()
        return on_cycle

    s, run_log, _ = run(bundle, tmp_path, on_cycle=killer)
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.LINK_LOST and trip["cycle"] == 41      # detected on the next cycle
    assert not s["stop"]["confirmed"] and "watchdog" in s["stop"]["note"]
    assert run_log.events_of("trip")[0]["cause"] == S.LINK_LOST
    assert run_log.events_of("safe_stop")[0]["cause"] == S.LINK_LOST
    assert run_log.cycles[-1]["k"] == 41 and run_log.summary is not None


def test_a_fall_is_a_safe_stop(bundle, tmp_path):
    # Lockstep mock time is simulated time: soft start + settle end at 0.6 s; push it over at 1.0 s.
    s, run_log, report = run(bundle, tmp_path, faults="tilt_at=1.0:90:2", seconds=3.0)
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.TILT, s["safe_stops"]
    assert s["stop"]["confirmed"] and report["final"]["status"] & 1 == 0      # torque off, by the robot's word
    tilted = [c for c in run_log.cycles if c.get("tilt_deg", 0) > 60]
    assert len(tilted) == CALM.tilt_debounce and run_log.cycles[-1]["k"] == tilted[-1]["k"]


def test_nan_action_never_reaches_the_wire(bundle, tmp_path):
    emitted = threading.Event()

    class NaNAfter:
        def __init__(self, policy, at=20):
            self.policy, self.at, self.calls = policy, at, 0

        def infer(self, obs):
            a, t = self.policy.infer(obs)
            self.calls += 1
            if self.calls > self.at:
                emitted.set()
                a, t = a.copy(), t.copy()
                a[2] = t[2] = math.nan
            return a, t

    s, run_log, report = run(bundle, tmp_path, policy_wrapper=NaNAfter)
    assert emitted.is_set()
    assert s["safe_stops"][0]["cause"] == S.NON_FINITE_ACTION
    # Every COMMAND the robot received was answered with a STATE (a NaN target would have drawn
    # ERROR BAD_REQUEST and failed the transaction), and none was sent after the NaN.
    assert report["requests"]["COMMAND"] == s["commands_sent"] and s["failed_cycles"] == 0
    sent = [c["sent"] for c in run_log.cycles if "sent" in c]
    assert len(sent) == s["commands_sent"] and np.all(np.isfinite(sent))
    last = run_log.cycles[-1]
    assert "sent" not in last and not np.all(np.isfinite(last["targets"]))
    assert s["stop"]["confirmed"]


def test_demo_runs_in_real_time_and_prints_the_summary(bundle, tmp_path, capsys):
    """`simreal demo`'s code path: real-time mock, real-time loop, JSON summary."""
    from simreal.demo import demo

    rc = demo(seconds=1.0, bundle=bundle, log_path=str(tmp_path / "demo.jsonl"), as_json=True)
    out = capsys.readouterr().out
    import json

    s = json.loads(out)
    assert rc == 0 and s["safe_stops"] == [] and s["end"] == "duration", s
    assert s["stop"]["confirmed"] and "distance_m" in s and s["mock"]["falls"] == 0
    assert abs(s["period_ms"]["p50"] - 20.0) < 1.0


def test_demo_spawns_the_mock_for_the_bundles_robot(tmp_path, capsys):
    """A biped bundle gets a biped mock (10 joints mapped by name), not the default quadruped."""
    import json

    from simreal.demo import demo

    biped = untrained_bundle("biped", tmp_path / "biped")
    rc = demo(seconds=0.5, bundle=biped, log_path=str(tmp_path / "demo.jsonl"), as_json=True)
    s = json.loads(capsys.readouterr().out)
    assert rc == 0 and s["robot"] == "biped" and s["safe_stops"] == [], s
    assert len(read_log(tmp_path / "demo.jsonl").header["joint_names"]) == 10


@pytest.mark.slow
def test_sigkill_of_the_host_leaves_the_robot_to_its_watchdog(bundle, tmp_path):
    """C9, SIGKILL: no host code runs, so the robot's watchdog must damp and cut torque by itself."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from simreal.deploy.driver import SerialDriver
    from simreal import protocol as P

    child = (f"import sys; from simreal.deploy.session import deploy\n"
             f"deploy({bundle!r}, sys.argv[1], duration_s=30, log_path={str(tmp_path / 'k.jsonl')!r}, realtime=True,\n"
             f"       on_cycle=lambda i, rec: print(i, flush=True))\n")
    from simreal.deploy.session import raised_priority

    with mock_robot.spawn("quadruped", gap="nominal", seed=0, watchdog_ms=200) as mock, \
            raised_priority(mock.proc.pid):
        proc = subprocess.Popen([sys.executable, "-c", child, mock.port], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])})
        try:
            cycle = -1
            for line in proc.stdout:
                cycle = int(line)
                if cycle >= 80:              # policy phase, torque on
                    break
            assert cycle >= 80, f"the deploy child stopped by itself at cycle {cycle}"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            t_kill = time.monotonic()
            time.sleep(0.2 + 0.3 + 0.2)      # watchdog 200 ms + its 300 ms of DAMP + margin; silent meanwhile
            drv = SerialDriver(mock.port, config=LINK)
            try:
                drv.handshake()
                st = drv.hold()               # any request: read the state without driving anything
            finally:
                drv.close()
            waited = time.monotonic() - t_kill
        finally:
            proc.kill()
        report = mock.report()
    assert not st.torque_on and st.status & P.Status.WATCHDOG, P.Status(st.status)
    assert report["watchdog_trips"] == 1 and waited < 2.0
    run_log = read_log(tmp_path / "k.jsonl")
    assert run_log.cycles and run_log.summary is None and not run_log.events_of("trip")


def test_a_host_freeze_that_trips_the_robots_watchdog_stops_the_run_at_once(bundle, tmp_path):
    """faults.md F9 / C9: the host freezes for 0.35 s mid-run (a stalled process); the real-time mock's
    200 ms watchdog damps the robot. The first STATE after the freeze says WATCHDOG: SAFE at once,
    with no further policy call or COMMAND sent to a robot that is no longer following them."""
    import time

    freeze_at = {}

    def on_cycle(i, rec):
        if rec["phase"] == "policy" and not freeze_at and "reply_status" in rec:
            freeze_at["cycle"] = i
            time.sleep(0.35)
    log = tmp_path / "run.jsonl"
    with mock_robot.spawn("quadruped", gap="nominal", seed=0, watchdog_ms=200) as mock:
        s, _ = deploy(bundle, mock.port, duration_s=2.0, log_path=str(log), config=config(reset_sim=True),
                      link=LINK, on_cycle=on_cycle)
        report = mock.report()
    trip = s["safe_stops"][0]
    assert trip["cause"] == S.DEVICE_FAULT and "WATCHDOG" in trip["detail"], s["safe_stops"]
    assert trip["cycle"] == freeze_at["cycle"] + 1
    sent_after = [c for c in read_log(log).cycles if c["k"] > freeze_at["cycle"] and "reply_status" in c]
    assert sent_after == [] and report["watchdog_trips"] == 1


def test_deploy_right_after_the_mock_starts_waits_for_rest_and_never_hands_over_a_tilted_robot(bundle, tmp_path):
    """#15 defect 1: started ~1-2 s after `simreal mock-robot` (the limp robot still folding), deploy
    used to power it at once; the tilt grew through the soft start and the policy took over at 54
    degrees (3 of 3 fell). Now it waits for rest; the soft start's 20 degree limit and the handover
    check (upright within 10 degrees, not turning) stop a robot that tips while standing up before
    the policy phase. (From the pose this mock reaches ~4 s after it starts, the soft start does tip it.)"""
    log = tmp_path / "run.jsonl"
    with mock_robot.spawn("quadruped", gap="nominal", seed=0) as mock:        # real time, no --reset-sim
        s, _ = deploy(bundle, mock.port, duration_s=1.0, log_path=str(log), config=config(), link=LINK)
        report = mock.report()
    run_log = read_log(log)
    rest = run_log.events_of("at_rest")[0]
    assert rest["waited_s"] > 0.5, rest                   # it was still folding when deploy connected
    standing_up = [c for c in run_log.cycles if c["phase"] != "policy"]
    policy = [c for c in run_log.cycles if c["phase"] == "policy" and "action" in c]
    assert max(c["tilt_deg"] for c in standing_up) <= 20.0 + 10.0      # the start limit, + 3 debounce cycles' growth
    if policy:       # the policy got an upright, settled robot, and walked
        assert policy[0]["tilt_deg"] <= 10.0 and s["end"] == "duration" and not s["fallen"], s
    else:            # it tipped while standing up: stopped before the policy, never handed over
        assert s["safe_stops"][0]["cause"] == S.TILT, s["safe_stops"]
    assert report["watchdog_trips"] == 0


def test_a_clean_stop_never_trips_the_robots_watchdog(bundle, tmp_path):
    """#15 defect 4: the orderly stop kept the link silent for damp_s (200 ms), equal to the mock's
    watchdog, so the watchdog fired on every clean stop and could no longer tell a crash from one."""
    log = tmp_path / "run.jsonl"
    with mock_robot.spawn("quadruped", gap="nominal", seed=0, watchdog_ms=200) as mock:
        s, _ = deploy(bundle, mock.port, duration_s=0.5, log_path=str(log), config=config(reset_sim=True),
                      link=LINK)
        report = mock.report()
    assert s["end"] == "duration" and s["stop"]["confirmed"], s
    assert report["watchdog_trips"] == 0, report


def test_robot_estop_latches_until_an_explicit_reset(bundle, tmp_path):
    """C10 end to end: the e-stop stops the run; the next run is refused until --clear-errors."""
    from simreal.deploy.plan import StartRefused

    # Lockstep: a COMMAND advances 20 ms of simulated time in 5 ms physics steps; the button is pressed
    # at 1.001 s and released at 1.003 s, both inside one COMMAND, and the e-stop stays latched.
    with mock_robot.spawn("quadruped", gap="nominal", faults="estop_at=1.001:0.002", seed=0, lockstep=True) as mock:
        def go(name, **kw):
            return deploy(bundle, mock.port, duration_s=1.0, log_path=str(tmp_path / name), link=LINK,
                          config=config(**kw))[0]

        first = go("1.jsonl")
        assert first["safe_stops"][0]["cause"] == S.DEVICE_FAULT and "e-stop" in first["safe_stops"][0]["detail"]
        with pytest.raises(StartRefused, match="clear-errors"):
            go("2.jsonl")                                   # released, but still latched: nothing moves
        third = go("3.jsonl", clear_errors=True)            # the explicit reset
        report = mock.report()
    assert third["safe_stops"] == [] and third["end"] == "duration" and third["stop"]["confirmed"]
    assert report["requests"]["TORQUE"] == 2 + 2          # on + off in runs 1 and 3; none in run 2
    # + 1: the COMMAND whose reply carried ESTOP (ignored by the robot; the runtime counts it as failed)
    assert report["requests"]["COMMAND"] == first["commands_sent"] + 1 + third["commands_sent"]
