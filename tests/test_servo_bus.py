"""Bare bus servos end to end: the mock's Feetech/Dynamixel firmware, the BusDriver's link
discipline (faults.md B1-B5), calibration, watchdogs, `simreal servos`, and deploy walking on both
buses. Lockstep mocks served from a thread over real pseudo-terminals unless said otherwise."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_simreal
from simreal.deploy import safety as S
from simreal.deploy.bus_driver import BusDriver
from simreal.deploy.driver import HandshakeError
from simreal.hardware import dynamixel, feetech
from simreal.hardware.wiring import WiringError, load_calibration, save_calibration
from simreal.mock.bus_server import ThreadedBusMock
from simreal.mock.faults import parse_faults
from simreal.mock.gap import load_gap
from simreal.mock.operator import MockOperator
from simreal.mock.process import bus_mock, spawn
from simreal.robot.spec import load_robot
from simreal.servos.bus import ServoBus
from simreal.servos.calibrate import calibrate

BUSES = ["feetech", "dynamixel"]
CODECS = {"feetech": feetech, "dynamixel": dynamixel}


def make(robot="quadruped", bus="feetech", *, faults=None, gap=None, lockstep=True, **kw):
    spec = load_robot(robot)
    _, g = load_gap(gap)
    robot_, fw = bus_mock(spec, g, parse_faults(faults), bus=bus, lockstep=lockstep, **kw)
    return spec, robot_, fw


def calibrate_mock(spec, robot, fw, mock, path: Path, **kw) -> Path:
    with ServoBus(mock.url, fw.family, fw.model) as bus:
        cal = calibrate(bus, spec, fw.wiring, MockOperator(robot), **kw)
    robot.hold_joints(None)
    save_calibration(cal, path)
    return path


def cycle(d: BusDriver, q):
    """What the runtime does each period: read the state, then send the command."""
    state = d.read_state()
    d.send_command(q)
    return state


def driver(spec, fw, mock, cal_path, **kw) -> BusDriver:
    return BusDriver(mock.url, spec, fw.wiring, load_calibration(spec, fw.wiring, cal_path),
                     imu_url=mock.imu_url, **kw)


@pytest.mark.parametrize("bus", BUSES)
def test_sync_write_and_read_against_the_mock(bus):
    spec, robot, fw = make(bus=bus)
    ids = [j.servo_id for j in spec.joints]
    with ThreadedBusMock(robot, fw) as mock, ServoBus(mock.url, bus, fw.model) as sb:
        pose = spec.default_pose + np.linspace(-0.2, 0.2, spec.n_joints)
        robot.hold_joints(pose)
        got = sb.sync_read("present_position", ids)
        want = [fw.assembly.ticks(n, q, fw.model) for n, q in zip(spec.joint_names, robot._measure()[0])]
        assert np.abs(np.array(got) - want).max() <= 30        # the mock's encoder noise, nothing more
        robot.hold_joints(None)
        sb.sync_write("torque_enable", {i: 1 for i in ids})
        assert sb.sync_read("torque_enable", ids) == [1] * len(ids) and robot.mode == "position"
        goal = {i: fw.assembly.ticks(n, q, fw.model) for i, n, q in zip(ids, spec.joint_names, spec.default_pose)}
        sb.sync_write("goal_position", goal)
        sb.sync_read("present_position", ids)               # a sync write earns no reply: wait for one
        assert np.allclose(robot.servo_target, spec.default_pose, atol=2 * np.pi / 4096)
        sb.torque_off(ids)
        assert robot.mode == "off"


@pytest.mark.parametrize("bus", BUSES)
def test_calibration_recovers_the_assembly_and_converts_both_ways(bus, tmp_path):
    spec, robot, fw = make(bus=bus)
    with ThreadedBusMock(robot, fw) as mock:
        path = calibrate_mock(spec, robot, fw, mock, tmp_path / "calibration.yaml")
    cal = load_calibration(spec, fw.wiring, path)
    m = fw.model
    for j in spec.joints:
        c = cal.joints[j.name]
        assert c.direction == fw.assembly.directions[j.name]
        assert abs(c.zero - fw.assembly.zero[j.name]) <= 3           # noise of the median pose
        lo, hi = sorted(cal.to_rad(j.name, t, m) for t in c.range)
        assert lo <= j.min and hi >= j.max                           # the whole range was seen
        for q in (j.min, j.default, j.max):
            assert abs(cal.to_rad(j.name, cal.to_ticks(j.name, q, m), m) - q) <= np.pi / m.ticks_per_rev
        assert np.sign(cal.to_ticks(j.name, j.max, m) - cal.to_ticks(j.name, j.min, m)) == c.direction


def test_a_reversed_joint_is_detected_and_never_calibrated_silently(tmp_path):
    spec, robot, fw = make(reversed_joints=("fl_knee",))
    with ThreadedBusMock(robot, fw) as mock:
        with pytest.raises(WiringError, match="fl_knee turns - toward its max, bus.yaml says direction 1"):
            calibrate_mock(spec, robot, fw, mock, tmp_path / "c.yaml")
        assert not (tmp_path / "c.yaml").exists()
        path = calibrate_mock(spec, robot, fw, mock, tmp_path / "c.yaml", accept_directions=True)
    assert load_calibration(spec, fw.wiring, path).joints["fl_knee"].direction == -1


def test_torque_is_refused_without_a_matching_calibration(tmp_path):
    spec, robot, fw = make()
    with pytest.raises(WiringError, match="no calibration"):
        load_calibration(spec, fw.wiring, tmp_path / "none.yaml")
    with ThreadedBusMock(robot, fw) as mock:
        path = calibrate_mock(spec, robot, fw, mock, tmp_path / "c.yaml")
    text = path.read_text().replace("servo_id: 3", "servo_id: 30")
    path.write_text(text)
    with pytest.raises(WiringError, match="fr_hip.servo_id: calibrated on servo 30, robot.yaml says 3"):
        load_calibration(spec, fw.wiring, path)
    other = fw.wiring.model_copy(update={"family": "dynamixel", "model": "XL330-M288"})
    path.write_text(text.replace("servo_id: 30", "servo_id: 3"))
    with pytest.raises(WiringError, match="calibrated on feetech STS3215"):
        load_calibration(spec, other, path)


def test_a_missing_servo_refuses_the_handshake_and_the_calibration(tmp_path):
    spec, robot, fw = make(missing=(3,))
    with ThreadedBusMock(robot, fw) as mock:
        with pytest.raises(WiringError, match=r"no reply from fr_hip \(id 3\)"):
            calibrate_mock(spec, robot, fw, mock, tmp_path / "c.yaml")
        d = BusDriver(mock.url, spec, fw.wiring, None, imu_url=mock.imu_url)
        with pytest.raises(HandshakeError, match=r"no reply from fr_hip \(id 3\)"):
            d.handshake()
        d.close()
        assert robot.mode == "off"


@pytest.fixture
def calibrated(tmp_path):
    """A calibration of the default mock quadruped (every make() of it is assembled alike)."""
    spec, robot, fw = make()
    with ThreadedBusMock(robot, fw) as mock:
        return calibrate_mock(spec, robot, fw, mock, tmp_path / "calibration.yaml")


def test_a_late_reply_is_never_taken_for_a_later_request(calibrated):
    """B1: servo 3's reply to every 5th state read comes 1.5 attempt timeouts late, marked; the
    quiet period and the order check keep it out of every later read."""
    spec, robot, fw = make()
    marker = 1234
    n = {"reads": 0}

    def hook(pkt, data):
        if pkt.code != feetech.Instr.SYNC_READ or pkt.params[0] != fw.model.state_block[0]:
            return [(0.0, data)]
        (st,) = feetech.Decoder(status=True).feed(data)
        if st.servo_id == 1:
            n["reads"] += 1
        if st.servo_id != 3 or n["reads"] % 5:
            return [(0.0, data)]
        vel = fw.model.reg("present_velocity")
        params = bytearray(st.params)
        off = vel.address - fw.model.state_block[0]
        params[off:off + 2] = vel.encode(marker)
        return [(1.5 * fw.wiring.timeout, feetech.status(3, st.code, bytes(params)))]

    with ThreadedBusMock(robot, fw, hook=hook) as mock:
        d = driver(spec, fw, mock, calibrated)
        d.handshake()
        d.enable_torque()
        seen = []
        for _ in range(60):
            seen.append(cycle(d, spec.default_pose).dq[2])
        d.close()
    lsb = fw.model.velocity_lsb
    assert n["reads"] >= 60 and d.counters.retries >= 10 and d.counters.failed == 0
    assert not any(abs(abs(v) - marker * lsb) < 1e-9 for v in seen)


def test_an_implausible_reply_is_dropped_and_retried(calibrated):
    """B2: one checksum-valid reply says fl_knee jumped 600 ticks; it is counted, dropped and the
    read retried within the cycle."""
    spec, robot, fw = make()
    seen = {"servo2": 0}

    def hook(pkt, data):
        if pkt.code != feetech.Instr.SYNC_READ or pkt.params[0] != fw.model.state_block[0]:
            return [(0.0, data)]
        (st,) = feetech.Decoder(status=True).feed(data)
        if st.servo_id != 2:
            return [(0.0, data)]
        seen["servo2"] += 1
        if seen["servo2"] != 6:                         # one reply, once torque is on
            return [(0.0, data)]
        pos = fw.model.reg("present_position")
        params = bytearray(st.params)
        params[0:2] = pos.encode(pos.decode(st.params) + 600)
        return [(0.0, feetech.status(2, st.code, bytes(params)))]

    with ThreadedBusMock(robot, fw, hook=hook) as mock:
        d = driver(spec, fw, mock, calibrated)
        d.handshake()
        d.enable_torque()
        states = [cycle(d, spec.default_pose) for _ in range(5)]
        d.close()
    assert d.counters.implausible == 1 and d.counters.retries == 1 and d.counters.failed == 0
    assert all(abs(s.q[1] - spec.default_pose[1]) < 0.2 for s in states)


def _deploy(spec, fw, mock, cal, *, duration=2.0, on_cycle=None, bundle=None):
    from simreal.bundle.shipped import shipped_bundle
    from simreal.deploy.session import deploy

    summary, _ = deploy(str(bundle or shipped_bundle(spec.name)), mock.url, duration_s=duration,
                        log_path=str(Path(cal).parent / "run.jsonl"), confirm=lambda info: True,
                        bus=fw.family, imu_port=mock.imu_url, calibration=str(cal), on_cycle=on_cycle)
    return summary


def test_a_persistently_implausible_joint_is_a_safe_stop(calibrated):
    """B2 persistent: fl_knee's encoder slips 1.7 rad mid-run; every read after it is implausible,
    so the link fails and the runtime stops safely (D2) with torque off confirmed."""
    spec, robot, fw = make(faults="encoder_slip_at=1.5:fl_knee:1.7")
    with ThreadedBusMock(robot, fw) as mock:
        s = _deploy(spec, fw, mock, calibrated, duration=4.0)
    assert s["safe_stops"] and s["safe_stops"][0]["cause"] == S.LINK_FAILED, s["safe_stops"]
    assert s["link"]["implausible"] >= 3 and s["stop"]["confirmed"] and robot.mode == "off"


def test_a_servo_lost_mid_run_is_a_safe_stop(calibrated):
    """B3: servo 5 stops answering at cycle 40: the group read fails whole, never filled in."""
    spec, robot, fw = make()

    def on_cycle(i, row):
        if i == 40:
            fw.lost.add(5)

    with ThreadedBusMock(robot, fw) as mock:
        s = _deploy(spec, fw, mock, calibrated, duration=3.0, on_cycle=on_cycle)
    assert s["safe_stops"] and s["safe_stops"][0]["cause"] == S.LINK_FAILED
    assert s["link"]["failed"] >= 1


def test_an_overheating_servo_is_a_safe_stop(calibrated):
    """B4: the servo's temperature passes bus.yaml's limit (65 C): a device fault, a safe stop."""
    spec, robot, fw = make(faults="device_fault=1.5:overheat:rl_knee")
    with ThreadedBusMock(robot, fw) as mock:
        s = _deploy(spec, fw, mock, calibrated, duration=4.0)
    assert s["safe_stops"] and s["safe_stops"][0]["cause"] == S.DEVICE_FAULT, s["safe_stops"]
    assert "OVERHEAT" in json.dumps(s["safe_stops"][0]) and "rl_knee" in json.dumps(s["safe_stops"][0])


def test_a_dynamixel_alert_is_read_out_of_the_hardware_error_register(tmp_path):
    """F9 on Dynamixel: the status packet's ALERT bit, then register 70 for which error."""
    from simreal.deploy.driver import DeviceFault
    from simreal.hardware.wiring import Limits

    spec, robot, fw = make(bus="dynamixel")
    with ThreadedBusMock(robot, fw) as mock:
        cal = calibrate_mock(spec, robot, fw, mock, tmp_path / "c.yaml")
    spec, robot, fw = make(bus="dynamixel", faults="device_fault=0.01:voltage:fr_knee")
    lax = fw.wiring.model_copy(update={"limits": Limits(min_voltage=0.0, max_voltage=24.0)})
    with ThreadedBusMock(robot, fw) as mock:
        d = BusDriver(mock.url, spec, lax, load_calibration(spec, lax, cal), imu_url=mock.imu_url)
        d.handshake()
        d.enable_torque()
        d.send_command(spec.default_pose)          # lockstep: one period passes, the fault latches
        with pytest.raises(DeviceFault) as exc:
            d.read_state()
        d.disable_torque()
        d.close()
    assert "SERVO_ALERT" in str(exc.value) and "VOLTAGE" in str(exc.value) and "fr_knee" in str(exc.value)


def test_the_host_watchdog_turns_feetech_torque_off_when_commands_stop(calibrated):
    """B5 (Feetech: no bus watchdog): the driver's own thread cuts torque when the loop goes silent."""
    spec, robot, fw = make()
    with ThreadedBusMock(robot, fw) as mock:
        d = driver(spec, fw, mock, calibrated)
        d.handshake()
        d.enable_torque()
        d.send_command(spec.default_pose)
        assert robot.mode == "position"
        time.sleep(4 * fw.wiring.watchdog_ms / 1000)
        assert robot.mode == "off" and d.watchdog.trips == 1
        d.close()


def test_the_dynamixel_bus_watchdog_holds_and_refuses_goals_until_cleared(tmp_path):
    """B5 (Dynamixel): the driver arms register 98 at torque on; silence holds the pose."""
    spec, robot, fw = make(bus="dynamixel")
    with ThreadedBusMock(robot, fw) as mock:
        cal = calibrate_mock(spec, robot, fw, mock, tmp_path / "c.yaml")
    spec, robot, fw = make(bus="dynamixel", lockstep=False)       # real time: silence must pass
    with ThreadedBusMock(robot, fw) as mock:
        d = driver(spec, fw, mock, cal)
        d.handshake()
        d.enable_torque()
        assert fw._get(fw.tables[1], "bus_watchdog") == fw.wiring.watchdog_ms // 20
        time.sleep(3 * fw.wiring.watchdog_ms / 1000)
        assert fw.watchdog_tripped and robot.holding and robot.mode == "position"
        assert fw._get(fw.tables[1], "bus_watchdog") == -1
        d.enable_torque()                       # clears and re-arms it
        assert not fw.watchdog_tripped
        d.disable_torque()
        d.close()


def test_servos_scan_set_id_and_set_baud(tmp_path):
    spec, robot, fw = make()
    with ThreadedBusMock(robot, fw) as mock:
        r = run_simreal("servos", "scan", "--port", mock.url, "--ids", "0-12", "--json")
        assert r.returncode == 0, r.stderr
        assert [f["servo_id"] for f in json.loads(r.stdout)] == list(range(1, 9))
        assert {f["model"] for f in json.loads(r.stdout)} == {"STS3215"}
        r = run_simreal("servos", "set-id", "--port", mock.url, "--id", "3", "--new-id", "4")
        assert r.returncode == 2 and "id 4 is already taken" in r.stderr and r.stdout == ""
        r = run_simreal("servos", "set-id", "--port", mock.url, "--id", "3", "--new-id", "20")
        assert r.returncode == 0, r.stderr
        r = run_simreal("servos", "set-baud", "--port", mock.url, "--id", "20", "--new-baud", "500000")
        assert r.returncode == 0, r.stderr
        assert fw._get(fw.tables[20], "baud_rate") == 1 and 3 not in fw.tables
        r = run_simreal("servos", "set-baud", "--port", mock.url, "--id", "20", "--new-baud", "12345")
        assert r.returncode == 2 and "no baud rate 12345" in r.stderr
    r = run_simreal("servos", "scan", "--port", str(tmp_path / "nope"))
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("robot,bus", [("quadruped", "feetech"), ("biped", "dynamixel")])
def test_the_shipped_policy_walks_on_a_bus_through_simreal_deploy(robot, bus, tmp_path):
    """The whole path: a mock-robot process speaking the bus, `simreal deploy --bus` in another,
    calibrated by `calibrate` against an identically assembled mock."""
    spec, r_, fw = make(robot, bus)
    with ThreadedBusMock(r_, fw) as mock:
        cal = calibrate_mock(spec, r_, fw, mock, tmp_path / "calibration.yaml")
    with spawn(robot, lockstep=True, bus=bus) as m:
        r = run_simreal("deploy", "--json", "--yes", "--duration", "6", "--port", m.port, "--bus", bus,
                        "--imu-port", m.imu_port, "--calibration", str(cal), "--log", str(tmp_path / "run.jsonl"),
                        str(Path(__file__).parents[1] / "assets" / "policies" / robot))
        report = m.report()
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["safe_stops"] == [] and s["end"] == "duration" and s["stop"]["confirmed"], s
    assert s["link"]["failed"] == 0
    assert not report["final"]["fallen"] and report["falls"] == 0
    assert report["final"]["base_pos"][0] > 0.5, report["final"]     # it walked forward


def test_sustained_load_past_the_software_limit_is_a_device_fault(calibrated):
    """B4: XL330-class servos ignore their current limit in position mode; our limit trips after
    `load_cycles` consecutive cycles over `max_load`, not on one."""
    from simreal.deploy.driver import DeviceFault
    from simreal.hardware.wiring import Limits

    spec, robot, fw = make()
    strict = fw.wiring.model_copy(update={"limits": Limits(max_load=0.01, load_cycles=4)})
    with ThreadedBusMock(robot, fw) as mock:
        d = BusDriver(mock.url, spec, strict, load_calibration(spec, strict, calibrated), imu_url=mock.imu_url)
        d.handshake()
        d.enable_torque()
        crouch = spec.default_pose * 1.3
        ok = 0
        with pytest.raises(DeviceFault, match="OVERLOAD") as exc:
            for _ in range(50):
                cycle(d, crouch)
                ok += 1
        d.disable_torque()
        d.close()
    assert ok >= 3 and exc.value.state.fault_joints          # not on the first loaded cycle


def test_the_soft_start_writes_dynamixel_gains_and_the_stop_softens_them(tmp_path):
    """Dynamixel position gains are RAM registers: the runtime's soft start scales P, and damp
    drops it, through sync writes the mock's physics follows."""
    spec, robot, fw = make("biped", "dynamixel")
    with ThreadedBusMock(robot, fw) as mock:
        cal = calibrate_mock(spec, robot, fw, mock, tmp_path / "c.yaml")
    spec, robot, fw = make("biped", "dynamixel")
    p_seen = []

    def on_cycle(i, row):
        p_seen.append(fw._get(fw.tables[1], "p_gain"))

    with ThreadedBusMock(robot, fw) as mock:
        s = _deploy(spec, fw, mock, cal, duration=1.5, on_cycle=on_cycle)
    p0 = fw.nominal_gains[0]
    assert s["safe_stops"] == [] and s["stop"]["confirmed"]
    assert min(p_seen) < 0.8 * p0 and p_seen[-1] == p0          # ramped up to the wiring's P
    assert fw._get(fw.tables[1], "p_gain") < 0.2 * p0 and robot.mode == "off"   # damped, then off


def test_an_imu_that_is_not_there_or_not_fusing_refuses_the_handshake(calibrated):
    import os
    import tty

    spec, robot, fw = make()
    master, slave = os.openpty()            # a port where nothing answers
    tty.setraw(master)
    try:
        with ThreadedBusMock(robot, fw) as mock:
            d = driver(spec, fw, mock, calibrated)
            d.imu.url = os.ttyname(slave)
            d.imu.raw.url = os.ttyname(slave)
            with pytest.raises(HandshakeError, match="IMU .*0 of 3 bytes"):
                d.handshake()
            d.close()
            mock.server.imu.registers[0x3D] = 0x00          # CONFIG mode: no fusion
            d = driver(spec, fw, mock, calibrated)
            with pytest.raises(HandshakeError, match="not NDOF"):
                d.handshake()
            d.close()
    finally:
        os.close(master)
        os.close(slave)
    assert robot.mode == "off"


def test_deploy_on_a_bus_refuses_bad_arguments_before_opening_anything(tmp_path):
    bundle = str(Path(__file__).parents[1] / "assets" / "policies" / "quadruped")
    r = run_simreal("deploy", bundle, "--port", "/dev/null", "--bus", "feetech", "--yes")
    assert r.returncode == 2 and "--bus feetech needs --imu-port" in r.stderr and "Traceback" not in r.stderr
    r = run_simreal("deploy", bundle, "--port", "/dev/null", "--bus", "feetech", "--imu-port", "/dev/null",
                    "--calibration", str(tmp_path / "none.yaml"), "--yes")
    assert r.returncode == 2 and f"{tmp_path / 'none.yaml'}: no calibration" in r.stderr
    assert "torque is refused" in r.stderr
    r = run_simreal("calibrate", "quadruped", "--port", str(tmp_path / "nope"))
    assert r.returncode == 2 and "--port" in r.stderr and "Traceback" not in r.stderr


def test_bus_yaml_can_make_the_bus_the_default(tmp_path):
    import shutil

    from simreal.deploy.plan import StartRefused
    from simreal.deploy.session import bus_setup

    root = tmp_path / "quadruped"
    shutil.copytree(Path(__file__).parents[1] / "robots" / "quadruped", root)
    spec = load_robot(root)
    assert bus_setup(spec, None, None, None, spec.name) is None            # shipped: default false
    (root / "bus.yaml").write_text((root / "bus.yaml").read_text() + "default: true\n")
    spec = load_robot(root)
    with pytest.raises(StartRefused, match="--bus feetech needs --imu-port"):
        bus_setup(spec, None, None, None, spec.name)
    (root / "bus.yaml").write_text("family: feetech\nmodel: XL330-M288\n")
    with pytest.raises(WiringError, match="model: XL330-M288 is a dynamixel servo"):
        bus_setup(load_robot(root), "feetech", "x", None, spec.name)


def test_send_command_answers_with_the_state_read_this_cycle(calibrated):
    """A SYNC WRITE earns no reply: send_command returns this cycle's read, whose timestamp does
    not advance (so a pipelined runtime would trip its stale-state check, not run on old data)."""
    spec, robot, fw = make()
    with ThreadedBusMock(robot, fw) as mock:
        d = driver(spec, fw, mock, calibrated)
        d.handshake()
        d.enable_torque()
        s = d.read_state()
        r = d.send_command(spec.default_pose)
        assert (r.timestamp_us, r.q, r.quat) == (s.timestamp_us, s.q, s.quat) and r.torque_on
        assert d.read_state().timestamp_us > s.timestamp_us
        d.close()


def test_a_held_biped_stands_until_torque_is_on():
    spec, robot, fw = make("biped", "dynamixel", held=True)
    z0 = robot.sim.base_pos()[2]
    for _ in range(400):                      # 2 s limp: unheld, it topples in about 1.5 s
        robot.step_physics()
    assert abs(robot.sim.base_pos()[2] - z0) < 1e-9 and not robot.fallen
    spec, robot, fw = make("biped", "dynamixel")
    for _ in range(400):
        robot.step_physics()
    assert robot.fallen


def test_simreal_calibrate_with_an_operator_at_the_keyboard(tmp_path):
    """The CLI's two prompts, answered on stdin while the test moves the mock's joints."""
    import subprocess
    import sys

    from conftest import ROOT

    spec, robot, fw = make()
    out = tmp_path / "calibration.yaml"
    with ThreadedBusMock(robot, fw) as mock:
        robot.hold_joints(spec.default_pose)
        p = subprocess.Popen([sys.executable, "-m", "simreal.cli", "calibrate", "quadruped", "--port", mock.url,
                              "--out", str(out)], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)

        def wait_for(text):
            seen = ""
            while text not in seen:
                line = p.stderr.readline()
                assert line, f"calibrate exited before {text!r}: {seen}"
                seen += line
        wait_for("Hold the robot")
        p.stdin.write("\n")
        p.stdin.flush()
        wait_for("Now move every joint")
        operator = MockOperator(robot, steps=30)
        while operator.sweeping():
            time.sleep(0.01)
        p.stdin.write("\n")
        p.stdin.flush()
        stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert f"written to {out}" in stdout
    cal = load_calibration(spec, fw.wiring, out)
    assert all(abs(cal.joints[n].zero - fw.assembly.zero[n]) <= 3 for n in spec.joint_names)
