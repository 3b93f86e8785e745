"""The mock robot as users run it: a subprocess on a pseudo-terminal, driven by the real SerialDriver.

Timing assertions are loose: the test machine is shared and loaded (a niced pytest run on two busy
cores has seen the mock starved for over 250 ms), so timeouts are long where no fault is injected.
"""
from __future__ import annotations

import math
import os
import struct
import time

import numpy as np
import pytest
import serial

from simreal import protocol as P
from simreal.deploy.driver import LinkConfig, LinkLost, LinkTimeout, SerialDriver
from simreal.mock.process import MockError, spawn
from simreal.robot.spec import load_robot

QUAD = load_robot("quadruped")
CALM = LinkConfig(timeout_s=1.0, retries=2, handshake_timeout_s=1.0, handshake_retries=3)
WATCHDOG_MS = 500


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    link = tmp_path_factory.mktemp("mock") / "port"
    with spawn("quadruped", watchdog_ms=WATCHDOG_MS, extra_args=["--link-file", str(link)]) as m:
        assert link.read_text().strip() == m.port
        yield m


def connect(port: str, config: LinkConfig = CALM, **kw) -> SerialDriver:
    d = SerialDriver(port, config=config, **kw)
    d.handshake()
    return d


def tilt_deg(quat) -> float:
    w, x, y, z = quat
    return math.degrees(math.acos(max(-1.0, min(1.0, 1 - 2 * (x * x + y * y)))))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_physics_runs_on_its_own_clock(mock):
    d = connect(mock.port)
    try:
        wall0, gt0, s0 = time.monotonic(), d.ground_truth(), d.read_state()
        cpu0 = cpu_seconds(mock.proc.pid)
        time.sleep(1.0)                         # no requests at all
        wall1, gt1, s1 = time.monotonic(), d.ground_truth(), d.read_state()
        cpu1 = cpu_seconds(mock.proc.pid)
    finally:
        d.close()
    wall = wall1 - wall0
    assert gt1.sim_time_s - gt0.sim_time_s == pytest.approx(wall, abs=0.25)     # lockstep would give 0
    assert (s1.timestamp_us - s0.timestamp_us) * 1e-6 == pytest.approx(wall, abs=0.25)
    assert (cpu1 - cpu0) / wall < 0.25         # about real time of physics, not a busy loop


def test_handshake_torque_and_standing(mock):
    d = connect(mock.port, joint_names=list(reversed(QUAD.joint_names)))   # host order differs: mapped by name
    try:
        assert d.info.robot_name == "quadruped" and d.info.joint_names == tuple(QUAD.joint_names)
        assert d.info.watchdog_ms == WATCHDOG_MS and d.info.simulated
        start = d.enable_torque()
        assert start.status & P.Status.TORQUE_ON
        q0, goal = np.array(start.q), QUAD.default_pose[::-1]
        t0 = time.monotonic()
        while (t := time.monotonic() - t0) < 1.2:     # soft start: ramp to the default pose in 0.5 s
            s = d.send_command(list(q0 + (goal - q0) * min(1.0, t / 0.5)))
            time.sleep(0.02)
        gt = d.ground_truth()
        assert np.allclose(s.q, goal, atol=0.06)
        assert gt.base_pos[2] > 0.12 and tilt_deg(gt.base_quat) < 10 and not gt.fallen
        assert abs(gt.base_pos[0]) < 0.05 and np.linalg.norm(gt.base_lin_vel) < 0.1
    finally:
        d.disable_torque()
        d.close()


def test_watchdog_damps_then_turns_torque_off(mock):
    d = connect(mock.port)
    try:
        d.enable_torque()
        for _ in range(12):                     # fed every 50 ms: never fires
            time.sleep(0.05)
            ack = d.heartbeat()
        assert ack.status & P.Status.TORQUE_ON and not ack.status & P.Status.WATCHDOG
        time.sleep(WATCHDOG_MS / 1000 + 0.3 + 0.4)   # silence > watchdog + damp 0.3 s
        ack = d.heartbeat()
        assert ack.status & P.Status.WATCHDOG and not ack.status & (P.Status.TORQUE_ON | P.Status.DAMPING)
        assert not d.enable_torque().status & P.Status.WATCHDOG     # cleared by the next TORQUE 1
        d.disable_torque()
    finally:
        d.close()


def test_replies_leave_in_the_order_the_requests_arrived(mock):
    # A long STATE reply takes 1.3 ms on the wire at 1 Mbaud, a HEARTBEAT_ACK 0.1 ms: asked back to
    # back, the short one must still come second (docs/protocol.md section 7).
    requests = [P.GetState(), P.Heartbeat(), P.GetState(), P.Heartbeat(), P.Hello(), P.GetState()]
    with serial.serial_for_url(mock.port, timeout=1.0) as port:
        port.reset_input_buffer()
        port.write(b"".join(P.encode(m, 40 + i) for i, m in enumerate(requests)))
        got: list = []
        decoder, t0 = P.FrameDecoder(), time.monotonic()
        while len(got) < len(requests) and time.monotonic() - t0 < 5:
            got += [f for f in decoder.feed(port.read(port.in_waiting or 1)) if isinstance(f, P.Frame)]
    assert [f.tag for f in got] == [40 + i for i in range(len(requests))]


def test_robot_side_protocol_errors(mock):
    with serial.serial_for_url(mock.port, timeout=1.0) as port:
        def ask(frame: bytes) -> list:
            port.reset_input_buffer()
            port.write(frame)
            time.sleep(0.1)
            return P.FrameDecoder().feed(port.read(port.in_waiting or 1) + port.read(port.in_waiting))

        (reply,) = ask(P.encode(P.Hello(), 11, version=2))
        assert reply.tag == 11 and reply.msg.code == P.ErrorCode.VERSION
        (reply,) = ask(P.encode(P.Command((0.0, 0.0)), 12))
        assert reply.tag == 12 and reply.msg.code == P.ErrorCode.JOINT_COUNT
        def raw(msg_type: int, tag: int, payload: bytes) -> bytes:
            body = P.HEADER.pack(P.PROTOCOL_VERSION, msg_type, tag, len(payload)) + payload
            return b"\x00" + P.cobs_encode(body + P.CRC.pack(P.crc32(body))) + b"\x00"

        (reply,) = ask(raw(P.MsgType.COMMAND, 16, struct.pack("<BB33f", 0, 33, *[0.0] * 33)))
        assert reply.tag == 16 and reply.msg.code == P.ErrorCode.JOINT_COUNT     # 33 > MAX_JOINTS too
        (reply,) = ask(raw(P.MsgType.TORQUE, 14, b"\x01\x00"))          # TORQUE takes 1 byte
        assert reply.tag == 14 and reply.msg.code == P.ErrorCode.BAD_REQUEST
        (reply,) = ask(raw(0x30, 15, b""))
        assert reply.tag == 15 and reply.msg.code == P.ErrorCode.UNKNOWN_TYPE and reply.msg.request_type == 0x30
        damaged = bytearray(P.encode(P.GetState(), 13))
        damaged[5] ^= 0x10
        port.reset_input_buffer()
        port.write(bytes(damaged))
        time.sleep(0.1)
        assert port.in_waiting == 0                   # a frame that fails its CRC is never answered


def test_reply_time_is_latency_plus_jitter_plus_wire_time():
    latency, jitter, baud = 0.03, 0.01, 115_200
    with spawn("quadruped", gap=f"latency={latency},jitter={jitter},baudrate={baud}") as m:
        d = connect(m.port, LinkConfig(timeout_s=0.5, handshake_timeout_s=1.0))
        try:
            d.rtt_s.clear()                             # request written -> reply decoded
            states = [d.read_state() for _ in range(20)]
            took = sorted(d.rtt_s)
        finally:
            d.close()
    wire = (len(P.encode(P.GetState(), 1)) + len(P.encode(states[0], 1))) * 10 / baud
    floor = latency + wire                              # ~43 ms: nothing can come back sooner
    assert took[0] >= floor - 0.001
    assert took[len(took) // 2] < floor + jitter + 0.05   # the rest is the loaded test machine


def test_injected_reply_faults_match_the_drivers_counters():
    n, timeout = 100, 0.2
    with spawn("quadruped", faults="drop=0.08,corrupt=0.08,late=0.08:1.5,dup=0.08", seed=3,
               extra_args=["--link-timeout", str(timeout)]) as m:
        d = connect(m.port, LinkConfig(timeout_s=timeout, retries=6, handshake_timeout_s=1.0, handshake_retries=5))
        try:
            stamps = [d.read_state().timestamp_us for _ in range(n)]
            c = d.counters
        finally:
            d.close()
        report = m.report()
    assert m.proc.returncode == 0 and report["exit_reason"] == "SIGTERM"
    inj = report["injected"]
    assert report["link"]["replies"] == c.requests               # one reply per request, none lost
    assert min(inj[k] for k in ("drop", "corrupt", "late", "dup")) >= 3   # the schedule did inject
    damaged = c.decoder.crc_errors + c.decoder.framing_errors
    assert inj["corrupt"] <= damaged <= 2 * inj["corrupt"]        # a flip may split one frame in two
    # each drop, corruption and late reply cost one attempt (a few more for a busy box's slow replies),
    # except where a late reply answered its own transaction's retry, whose reply was spoiled too
    spoiled = inj["drop"] + inj["corrupt"] + inj["late"]
    assert spoiled - c.late_accepted <= c.timeouts <= spoiled + 5
    assert c.stale_replies + c.bytes_flushed > 0 and c.failed == 0 and c.transactions == n + 1
    assert all(b > a for a, b in zip(stamps, stamps[1:]))    # a late or duplicate state would step back


def test_stall_times_out_then_disconnect_raises_link_lost():
    with spawn("quadruped", faults="stall_at=1.0:0.5,disconnect_at=2.5") as m:
        d = connect(m.port, LinkConfig(timeout_s=0.1, retries=0, handshake_timeout_s=1.0, handshake_retries=3))
        outcomes, t0 = [], time.monotonic()
        try:
            with pytest.raises(LinkLost):
                while time.monotonic() - t0 < 10:
                    try:
                        d.heartbeat()
                        outcomes.append("ok")
                    except LinkTimeout:
                        outcomes.append("timeout")
                    time.sleep(0.02)
        finally:
            d.close()
        assert time.monotonic() - t0 < 5
        report = m.report()
    assert m.proc.returncode == 0 and report["exit_reason"] == "disconnect"
    assert report["injected"]["stall"] == 1 and report["injected"]["disconnect"] == 1
    first_timeout = outcomes.index("timeout")
    assert "ok" in outcomes[:first_timeout] and "ok" in outcomes[first_timeout:]   # recovered after the stall


def test_lockstep_is_deterministic_for_a_seed():
    from simreal.mock.faults import parse_faults
    from simreal.mock.gap import load_gap
    from simreal.mock.robot import MockRobot, RobotOptions

    targets = [tuple(QUAD.default_pose + 0.1 * np.sin(0.2 * k)) for k in range(40)]
    with spawn(seed=7, gap="worn", lockstep=True) as m:
        d = connect(m.port)
        try:
            d.enable_torque()
            over_wire = [d.send_command(list(q)) for q in targets] + [d.ground_truth()]
        finally:
            d.close()
        m.proc.stdin.close()                    # the parent's end of the lifeline: the mock exits
        m.proc.wait(30)
        assert m.report()["exit_reason"] == "stdin closed"

    def replay(seed: int) -> list:             # the same requests to an in-process twin
        r = MockRobot(QUAD, load_gap("worn")[1], parse_faults(""), seed, RobotOptions(watchdog_s=0.0, lockstep=True))
        r.handle(P.Frame(1, P.Torque(True)), r.clock)
        wire = lambda msg: P.decode(P.encode(msg, 1)).msg          # noqa: E731 - float32, as on the wire
        out = [r.handle(P.Frame(1, wire(P.Command(q))), r.clock) for q in targets]
        out.append(r.handle(P.Frame(1, P.SimGetGroundTruth()), r.clock))
        return [wire(msg) for msg in out]

    assert over_wire == replay(7)
    assert [s.q for s in over_wire[:-1]] != [s.q for s in replay(8)[:-1]]   # the seed drives the noise
    stamps = [s.timestamp_us for s in over_wire[:-1]]
    assert np.all(np.diff(stamps) == round(QUAD.control.period * 1e6))


def test_bad_arguments_fail_before_the_port_is_printed():
    with pytest.raises(MockError, match=r"kp_scalee: unknown key \(did you mean 'kp_scale'\?\)"):
        spawn(gap="kp_scalee=0.8")


def test_cli_registration_and_gap_listing(capsys):
    import argparse

    from simreal.mock import cli as mock_cli
    from simreal.mock.process import run_from_args

    parser = argparse.ArgumentParser()
    mock_cli.register(parser.add_subparsers())
    args = parser.parse_args(["mock-robot", "biped", "--gap", "worn,friction=0.5", "--faults", "drop=0.1",
                              "--lockstep", "--seed", "4"])
    assert args.func is mock_cli.run and (args.robot, args.gap, args.faults, args.lockstep, args.seed) == \
        ("biped", "worn,friction=0.5", "drop=0.1", True, 4)
    args = parser.parse_args(["mock-robot", "--list-gaps"])
    assert run_from_args(args) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("nominal", "worn", "heavy", "slippery"))
