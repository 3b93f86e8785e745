"""`simreal deploy` / `demo` / `mock-robot` as a new user runs them: every mistake is one clear line.

Table-driven: each row is a command line (a subprocess), the exit code it must end with and the
words its message must contain. Tests that need a live port share one lockstep mock robot per
module; those that need a robot WITHOUT the SIMULATED capability serve a mock that plays hardware
(RobotOptions(simulated=False)) from a thread of the test process, so they can see what it received. The in-process tests below check the start order itself: Ctrl-C /
SIGTERM before torque on never sends TORQUE 1, and --reset-sim stands a fallen mock back up.
"""
from __future__ import annotations

import math
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, assert_clean_error, run_simreal
from simreal import protocol as P
from simreal.deploy import safety as S
from simreal.deploy.driver import LinkConfig, SerialDriver
from simreal.deploy.runlog import read_log
from simreal.deploy.plan import RuntimeConfig, StartInterrupted, StartRefused
from simreal.deploy.session import deploy

mock_robot = pytest.importorskip("simreal.mock.process")
BUNDLE = str(ROOT / "assets" / "policies" / "quadruped")
pytestmark = pytest.mark.skipif(not (Path(BUNDLE) / "policy.json").is_file(),
                                reason="assets/policies/quadruped is not shipped")

CALM = S.SafetyConfig(overrun_consecutive=10 ** 6, overrun_fraction=1.0)
LINK = LinkConfig(timeout_s=0.5, retries=2)


def config(**kw) -> RuntimeConfig:
    base = dict(soft_start_s=0.3, settle_s=0.1, transaction_budget_s=1.0, truth_every=10, safety=CALM)
    return RuntimeConfig(**(base | kw))


@pytest.fixture(scope="module")
def mock():
    with mock_robot.spawn("quadruped", gap="nominal", seed=0, lockstep=True) as m:
        yield m


@pytest.fixture(scope="module")
def broken_robot_path(tmp_path_factory) -> str:
    """A search path whose quadruped robot.yaml is broken (installed, but unusable)."""
    d = tmp_path_factory.mktemp("broken") / "robots"
    shutil.copytree(ROOT / "robots" / "quadruped", d / "quadruped")
    raw = yaml.safe_load((d / "quadruped" / "robot.yaml").read_text())
    raw.pop("joints")
    (d / "quadruped" / "robot.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(d)


NOPORT = "/dev/nonexistent"

# (id, argv after `simreal`, exit code, needles); {log} is a fresh log path, {file} a regular file
ROWS = [
    ("nonexistent-port", ["deploy", BUNDLE, "--port", NOPORT], 2, [NOPORT, "torque stays off"]),
    ("log-under-a-file", ["deploy", BUNDLE, "--port", NOPORT, "--log", "{file}/run.jsonl"], 2, ["--log", "{file}"]),
    ("log-in-proc", ["deploy", BUNDLE, "--port", NOPORT, "--log", "/proc/x.jsonl"], 2, ["--log", "/proc/x.jsonl"]),
    ("log-is-a-folder", ["deploy", BUNDLE, "--port", NOPORT, "--log", "{dir}"], 2, ["--log", "is a folder"]),
    ("duration-nan", ["deploy", BUNDLE, "--port", NOPORT, "--duration", "nan"], 2, ["--duration", "finite"]),
    ("duration-negative", ["deploy", BUNDLE, "--port", NOPORT, "--duration", "-1"], 2, ["--duration", ">= 0"]),
    ("rate-negative", ["deploy", BUNDLE, "--port", NOPORT, "--rate", "-5"], 2, ["--rate", "> 0"]),
    ("rate-zero", ["deploy", BUNDLE, "--port", NOPORT, "--rate", "0"], 2, ["--rate", "> 0"]),
    ("soft-start-inf", ["deploy", BUNDLE, "--port", NOPORT, "--soft-start", "inf"], 2, ["--soft-start", "finite"]),
    ("soft-start-zero", ["deploy", BUNDLE, "--port", NOPORT, "--soft-start", "0"], 2, ["--soft-start"]),
    ("command-timeout-zero", ["deploy", BUNDLE, "--port", NOPORT, "--command-timeout", "0"], 2,
     ["--command-timeout"]),
    ("truth-every-negative", ["deploy", BUNDLE, "--port", NOPORT, "--truth-every", "-1"], 2, ["--truth-every"]),
    ("command-nan", ["deploy", BUNDLE, "--port", NOPORT, "--command", "vx=nan"], 2, ["--command", "vx"]),
    ("command-garbage", ["deploy", BUNDLE, "--port", NOPORT, "--command", "speed=1"], 2, ["--command"]),
    ("expect-sha256-other", ["deploy", BUNDLE, "--port", NOPORT, "--expect-sha256", "0" * 64], 2,
     ["policy.json: sha256", "expected " + "0" * 64]),
    ("demo-seconds-nan", ["demo", "--seconds", "nan"], 2, ["--seconds"]),
    ("demo-seconds-zero", ["demo", "--seconds", "0"], 2, ["--seconds"]),
    ("mock-watchdog-negative", ["mock-robot", "--watchdog-ms", "-1"], 2, ["--watchdog-ms"]),
    ("mock-watchdog-damp-nan", ["mock-robot", "--watchdog-damp", "nan"], 2, ["--watchdog-damp"]),
    ("mock-link-timeout-zero", ["mock-robot", "--link-timeout", "0"], 2, ["--link-timeout"]),
    ("mock-duration-inf", ["mock-robot", "--duration", "inf"], 2, ["--duration"]),
    ("mock-seed-text", ["mock-robot", "--seed", "x"], 2, ["--seed"]),
]


@pytest.mark.parametrize("argv,code,needles", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_deploy_mistakes_are_one_line_and_nothing_is_written(argv, code, needles, tmp_path):
    regular = tmp_path / "plain.txt"
    regular.write_text("not a folder\n")
    log = tmp_path / "logs" / "run.jsonl"
    subs = {"{file}": str(regular), "{dir}": str(tmp_path)}

    def fill(a: str) -> str:
        for k, v in subs.items():
            a = a.replace(k, v)
        return a

    argv = [fill(a) for a in argv]
    if argv[0] == "deploy" and "--log" not in argv:
        argv += ["--log", str(log)]
    r = run_simreal(*argv, timeout=120)
    assert_clean_error(r, code, *[fill(n) for n in needles])
    assert not log.exists() and not log.parent.exists(), "a refused deploy wrote a log"


def test_export_check_prints_the_digest_deploy_can_pin():
    r = run_simreal("export", "--check", BUNDLE)
    assert r.returncode == 0, r.stderr
    digest = r.stdout.split("sha256 ")[1].split()[0]
    assert len(digest) == 64
    assert run_simreal("export", "--check", BUNDLE, "--expect-sha256", digest).returncode == 0
    r = run_simreal("deploy", BUNDLE, "--port", NOPORT, "--expect-sha256", digest)
    assert_clean_error(r, 2, NOPORT)                 # past the bundle: refused at the port, not the pin


def test_broken_robot_yaml_refuses_naming_the_file(broken_robot_path, tmp_path):
    log = tmp_path / "run.jsonl"
    r = run_simreal("deploy", BUNDLE, "--port", NOPORT, "--log", str(log),
                    env={"SIMREAL_ROBOT_PATH": broken_robot_path})
    assert_clean_error(r, 2, "robot.yaml", "broken")
    assert not log.exists()


def test_busy_port_is_refused_in_one_line(mock, tmp_path):
    import serial

    log = tmp_path / "run.jsonl"
    holder = serial.Serial(mock.port, exclusive=True)      # another process's open port: flock held
    try:
        r = run_simreal("deploy", BUNDLE, "--port", mock.port, "--duration", "1", "--log", str(log))
    finally:
        holder.close()
    assert_clean_error(r, 2, mock.port, "in use")
    assert not log.exists()


@pytest.fixture
def hardware(serve_mock):
    """A quadruped that is not simulated (no SIMULATED capability): the operator gate applies."""
    return serve_mock(simulated=False)


def test_reset_sim_on_hardware_is_refused_from_the_command_line(hardware, tmp_path):
    r = run_simreal("deploy", BUNDLE, "--port", hardware.url, "--reset-sim", "--yes", "--duration", "0.5",
                    "--log", str(tmp_path / "run.jsonl"))
    assert_clean_error(r, 2, "--reset-sim is for simulated robots only")
    assert hardware.received(P.Torque) == [] and hardware.received(P.SimReset) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_at_the_operator_prompt_never_sends_torque_on(hardware, tmp_path, sig):
    """The real prompt: stdin is a terminal, the runtime asks, the operator presses Ctrl-C (or the
    process gets SIGTERM) while input() waits. Exit 130, one line, and the robot never saw TORQUE."""
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("SIMREAL_DEBUG", "MUJOCO_GL")}
    proc = subprocess.Popen([sys.executable, "-m", "simreal.cli", "deploy", BUNDLE, "--port", hardware.url,
                             "--duration", "0.5", "--log", str(tmp_path / "run.jsonl")],
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    os.close(slave)
    try:
        seen = b""
        deadline = time.monotonic() + 120
        while b"turn torque on" not in seen:
            assert proc.poll() is None and time.monotonic() < deadline, (proc.poll(), seen, proc.stderr)
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen += os.read(proc.stdout.fileno(), 4096)
        assert hardware.received(P.Hello), "the prompt came before the handshake"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, (seen + out).decode(), err.decode())
    assert_clean_error(r, 130, sig.name, "torque was never on")
    assert hardware.received(P.Torque) == []
    kinds = _events(tmp_path / "run.jsonl")
    assert "start_interrupted" in kinds and "trip" not in kinds


def test_reset_sim_from_the_command_line_runs(mock, tmp_path):
    log = tmp_path / "run.jsonl"
    r = run_simreal("deploy", BUNDLE, "--port", mock.port, "--duration", "0.5", "--soft-start", "0.3",
                    "--reset-sim", "--log", str(log), "--json")
    assert r.returncode in (0, 1), r.stderr     # lockstep timing on a busy box may trip overruns
    assert "Traceback" not in r.stderr
    kinds = [e["kind"] for e in read_log(log).events]
    assert kinds.index("sim_reset") < kinds.index("torque_on")


# --------------------------------------------------------------------------- in process: the start order

def _events(log: Path) -> list[str]:
    return [e["kind"] for e in read_log(log).events]


def test_ctrl_c_at_the_operator_prompt_never_turns_torque_on(mock, tmp_path):
    log = tmp_path / "run.jsonl"

    def confirm(info):
        raise KeyboardInterrupt

    with pytest.raises(StartInterrupted, match="torque was never on") as exc:
        deploy(BUNDLE, mock.port, duration_s=0.5, log_path=str(log), config=config(), link=LINK, confirm=confirm)
    assert exc.value.exit_code == 130
    kinds = _events(log)
    assert "start_interrupted" in kinds and "torque_on" not in kinds and "trip" not in kinds


def test_sigterm_during_the_prompt_never_turns_torque_on(mock, tmp_path):
    log = tmp_path / "run.jsonl"
    answered = []

    def confirm(info):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(2.0)                    # the handler interrupts this, as it would input()
        answered.append(True)
        return True

    old = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StartInterrupted, match="SIGTERM"):
        deploy(BUNDLE, mock.port, duration_s=0.5, log_path=str(log), config=config(), link=LINK, confirm=confirm)
    assert signal.getsignal(signal.SIGTERM) is old          # the runtime put the old handler back
    assert not answered
    kinds = _events(log)
    assert "torque_on" not in kinds and "start_interrupted" in kinds


def test_cli_ctrl_c_exit_code_and_message(monkeypatch, mock, tmp_path, capsys):
    """The CLI's prompt path: input() raising KeyboardInterrupt ends in exit 130, torque never on."""
    from simreal.cli import main
    from simreal.deploy import cli as dcli

    monkeypatch.setattr(dcli, "confirm_torque", lambda info: (_ for _ in ()).throw(KeyboardInterrupt()))
    log = tmp_path / "run.jsonl"
    rc = main(["deploy", BUNDLE, "--port", mock.port, "--duration", "0.5", "--log", str(log)])
    assert rc == 130
    assert "torque was never on" in capsys.readouterr().err
    assert "torque_on" not in _events(log)


def _knock_over(port: str) -> None:
    """Leave the mock lying on its side (base rolled 90 degrees), as a fall would."""
    d = SerialDriver(port, config=LINK)
    with d:
        d.handshake()
        c = math.cos(math.pi / 4)
        d.reset(base_pos=[0.0, 0.0, 0.12], base_quat=[c, c, 0.0, 0.0])
        for _ in range(20):                     # lockstep: let it settle on the floor
            d.send_command(d.read_state().q)


def test_reset_sim_stands_a_fallen_mock_back_up(mock, tmp_path):
    _knock_over(mock.port)
    with pytest.raises(StartRefused, match="pre-flight"):
        deploy(BUNDLE, mock.port, duration_s=1.0, log_path=str(tmp_path / "a.jsonl"), config=config(), link=LINK)
    summary, log = deploy(BUNDLE, mock.port, duration_s=1.5, log_path=str(tmp_path / "b.jsonl"),
                          config=config(reset_sim=True), link=LINK)
    assert not summary["fallen"], summary
    assert not [t for t in summary["safe_stops"] if t["cause"] != S.OVERRUN], summary["safe_stops"]
    assert summary["forward_m"] > 0.1, summary
    assert summary["policy_s"] == pytest.approx(1.5, abs=0.05)


def test_reset_sim_is_refused_on_hardware(hardware, tmp_path):
    """A robot without the SIMULATED capability: --reset-sim refuses before torque on."""
    log = tmp_path / "run.jsonl"
    with pytest.raises(StartRefused, match="--reset-sim is for simulated robots only"):
        deploy(BUNDLE, hardware.url, duration_s=0.5, log_path=str(log), config=config(reset_sim=True), link=LINK,
               confirm=lambda info: True)
    assert "torque_on" not in _events(log)
    assert hardware.received(P.Torque) == [] and hardware.received(P.SimReset) == []


# --------------------------------------------------------------------------- demo: speeds and verdict

def test_demo_json_has_speeds_and_verdict(capsys, tmp_path):
    import json

    from simreal.demo import demo

    rc = demo(seconds=1.0, as_json=True, realtime=False, log_path=str(tmp_path / "demo.jsonl"))
    out = json.loads(capsys.readouterr().out)
    assert rc in (0, 1)
    assert out["commanded_vx"] == pytest.approx(out["command"][0])
    assert out["achieved_vx"] == pytest.approx(out["forward_m"] / out["policy_s"], abs=1e-3)
    assert out["verdict"].startswith(("walked", "FELL", "stopped by safety"))


@pytest.mark.parametrize("summary,start", [
    ({"forward_m": 1.9, "policy_s": 6.0, "command": [0.4, 0.0], "safe_stops": [], "fallen": False},
     "walked 1.90 m forward at 0.32 m/s (commanded 0.40 m/s), no safety stop"),
    ({"forward_m": 0.2, "policy_s": 2.0, "command": [0.4, 0.0], "fallen": True,
      "safe_stops": [{"cause": "tilt", "detail": "75 deg"}]}, "FELL after 2.0 s"),
    ({"forward_m": 0.5, "policy_s": 2.0, "command": [0.4, 0.0], "fallen": False,
      "safe_stops": [{"cause": "link_lost", "detail": "port gone"}]}, "stopped by safety: link_lost"),
])
def test_demo_verdict_line(summary, start):
    from simreal.demo import speeds, verdict

    s = summary | speeds(summary)
    assert verdict(s).startswith(start), verdict(s)
