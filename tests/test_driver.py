"""SerialDriver against a fake robot over a pseudo-terminal: faults F8-F11, T1-T6, D1-D3, D5."""
from __future__ import annotations

import random
import time

import pytest
import serial
from hypothesis import given, settings, strategies as st

from serial_fake_robot import QUAD_JOINTS, FakeRobot, received_of
from simreal import protocol as P
from simreal.deploy.driver import (DeviceFault, Driver, DriverError, HandshakeError, JointMap, JointMismatch,
                                   LinkConfig, LinkLost, LinkTimeout, NotSupported, PortBusy, PortError,
                                   RemoteError, SerialDriver, WriteTimeout, open_port)

# Generous timeouts where no fault is injected: the test machine is shared and loaded.
CALM = LinkConfig(timeout_s=0.5, retries=2, handshake_timeout_s=0.5, handshake_retries=2)


@pytest.fixture
def make():
    """make(robot, config=..., **kw) -> a handshaken SerialDriver, closed after the test."""
    made: list = []

    def _make(robot: FakeRobot, config: LinkConfig = CALM, handshake: bool = True, **kw) -> SerialDriver:
        d = SerialDriver(robot.url, config=config, **kw)
        made.append(d)
        if handshake:
            d.handshake()
        return d
    yield _make
    for d in made:
        d.close()


@pytest.fixture
def robot():
    r = FakeRobot()
    yield r
    r.close()


def q_of(i: int) -> list[float]:
    # Distinct, exactly representable targets per transaction: a stale reply shows as a wrong q.
    return [((i % 4096) + j / 16) / 1024 for j in range(len(QUAD_JOINTS))]


def flip_body_bit(frame: bytes) -> bytes:
    damaged = bytearray(frame)
    damaged[len(frame) // 2] ^= 0x04
    return bytes(damaged)


# ---------------------------------------------------------------- the happy path


def test_handshake_then_every_request(robot, make):
    d = make(robot)
    assert isinstance(d, Driver)
    assert d.info.robot_name == "fake" and d.info.joint_names == QUAD_JOINTS and d.info.simulated
    assert d.joint_names == QUAD_JOINTS
    state = d.send_command(q_of(1))
    assert state.q == tuple(q_of(1)) and state.dq == tuple(2 * v for v in q_of(1))
    assert received_of(robot, P.Command)[-1].msg == P.Command(tuple(q_of(1)))
    assert d.enable_torque().torque_on
    assert not d.disable_torque().torque_on
    for call in (d.read_state, d.hold, d.damp, d.clear_errors):
        assert isinstance(call(), P.State)
    ack = d.heartbeat()
    assert isinstance(ack, P.HeartbeatAck) and ack.timestamp_us > state.timestamp_us
    assert d.reset({n: 0.25 for n in QUAD_JOINTS}, seed=3).q == (0.25,) * 12
    assert received_of(robot, P.SimReset)[-1].msg.seed == 3
    assert d.ground_truth().base_pos == (0.0, 0.0, 0.25)
    c = d.counters
    assert c.transactions == c.requests == 11 and c.retries == c.timeouts == c.stale_replies == 0
    assert d.counters.as_dict()["decoder_frames"] == 11 and len(d.rtt_s) == 11


def test_command_with_gain_scales(robot, make):
    d = make(robot)
    d.send_command(q_of(2), [1.0] * 12, [0.5] * 12)
    assert received_of(robot, P.Command)[-1].msg.kd_scale == (0.5,) * 12


def test_socket_url():
    with FakeRobot(transport="tcp") as r:
        d = SerialDriver(r.url, config=CALM)
        try:
            d.handshake()
            assert d.send_command(q_of(3)).q == tuple(q_of(3))
        finally:
            d.close()


def test_requests_before_handshake_are_refused(robot, make):
    d = make(robot, handshake=False)
    with pytest.raises(DriverError, match="call handshake"):
        d.enable_torque()
    assert robot.received == []


# ---------------------------------------------------------------- opening and handshake (T4-T6)


def test_port_busy_names_the_port(robot, make):
    make(robot)
    with pytest.raises(PortBusy, match=robot.url):
        SerialDriver(robot.url).connect()


def test_missing_port_is_a_port_error():
    with pytest.raises(PortError, match="/dev/simreal-no-such-port"):
        open_port("/dev/simreal-no-such-port", CALM)


def test_stale_bytes_and_frames_before_the_handshake_are_ignored(make):
    # T5: the robot talks before the port is opened, and again between HELLO and its INFO.
    def hook(frame, reply):
        if isinstance(frame.msg, P.Hello):
            stale = P.encode(P.Info("other", ("x",)), frame.tag + 7)
            return [(0.0, b"\x00garbage\x17" + stale + P.encode(P.HeartbeatAck(1, 0, 0), 0)), (0.01, reply)]
        return [(0.0, reply)]
    with FakeRobot(hook=hook) as r:
        r.send(b"boot log: hello world\r\n" + P.encode(P.State(1, 0, 0, 0, (), (), (1.0, 0, 0, 0), (0, 0, 0),
                                                                   (0, 0, 0)), 1))
        time.sleep(0.05)
        d = make(r)
        assert d.info.robot_name == "fake"
        assert d.counters.stale_replies == 1 and d.counters.unexpected == 1


def test_wrong_protocol_version_is_named(make):
    with FakeRobot(version=2) as r:
        with pytest.raises(HandshakeError, match="speaks simreal protocol v2; this host speaks v1"):
            make(r)


def test_random_bytes_are_shown_in_hex(make):
    junk = bytes(random.Random(1).randrange(256) for _ in range(40))
    with FakeRobot(hook=lambda frame, reply: [(0.0, junk)]) as r:
        cfg = LinkConfig(handshake_timeout_s=0.05, handshake_retries=1)
        with pytest.raises(HandshakeError, match="first bytes: " + junk[:32].hex(" ")):
            make(r, cfg)
        d = SerialDriver(r.url, config=cfg)     # torque is never enabled without a handshake
        with pytest.raises(DriverError):
            d.enable_torque()
        assert received_of(r, P.Torque) == []


def test_silent_device_fails_the_handshake_in_bounded_time(make):
    with FakeRobot(hook=lambda frame, reply: []) as r:
        cfg = LinkConfig(handshake_timeout_s=0.05, handshake_retries=3)
        t0 = time.monotonic()
        with pytest.raises(HandshakeError, match=r"after 4 HELLO attempts of 0.05 s \(received nothing\)"):
            make(r, cfg)
        assert 0.2 <= time.monotonic() - t0 < 0.2 + 1.0     # slack for a loaded test machine
        assert len(received_of(r, P.Hello)) == 4


def test_loop_url_reports_its_own_echo():
    d = SerialDriver("loop://", config=LinkConfig(handshake_timeout_s=0.05, handshake_retries=1))
    with pytest.raises(HandshakeError, match="a HELLO where INFO was expected"):
        d.handshake()
    d.close()


def test_wrong_robot_and_wrong_joints_are_refused(robot, make):
    d = make(robot, handshake=False, robot_name="biped")
    with pytest.raises(HandshakeError, match="is robot 'fake', expected 'biped'"):
        d.handshake()
    d.close()
    with pytest.raises(JointMismatch, match=r"the robot lacks \['BL_hip'\], the host lacks \['FL_hip'\]"):
        make(robot, joint_names=("BL_hip",) + QUAD_JOINTS[1:])


def test_robot_error_reply_is_a_remote_error(make):
    def hook(frame, reply):
        if isinstance(frame.msg, P.Torque):
            return [(0.0, P.encode(P.Error(P.ErrorCode.REFUSED, P.MsgType.TORQUE, "not calibrated"), frame.tag))]
        return [(0.0, reply)]
    with FakeRobot(hook=hook) as r:
        d = make(r)
        with pytest.raises(RemoteError, match="REFUSED for TORQUE: not calibrated") as exc:
            d.enable_torque()
        assert exc.value.error.code == P.ErrorCode.REFUSED and d.counters.requests == 2   # no retry


def test_mock_only_requests_on_a_real_robot(make):
    with FakeRobot(simulated=False) as r:
        d = make(r)
        with pytest.raises(NotSupported, match="reset\\(\\) is mock-only"):
            d.reset()
        with pytest.raises(NotSupported):
            d.ground_truth()
        assert received_of(r, P.SimReset) == [] and received_of(r, P.SimGetGroundTruth) == []


# ---------------------------------------------------------------- damaged replies (D1-D3, F8)


def test_transient_corruption_is_retried_and_counted(make):
    # D1: one corrupt reply in five; every transaction still succeeds, with one retry per bad reply.
    count = {"commands": 0, "damaged": 0}

    def hook(frame, reply):
        if isinstance(frame.msg, P.Command):
            count["commands"] += 1
            if count["commands"] % 5 == 0:
                count["damaged"] += 1
                return [(0.0, flip_body_bit(reply))]
        return [(0.0, reply)]
    with FakeRobot(hook=hook) as r:
        d = make(r, LinkConfig(timeout_s=0.2, retries=2))
        for i in range(50):
            assert d.send_command(q_of(i)).q == tuple(q_of(i))
        c = d.counters
        assert count == {"commands": 62, "damaged": 12}    # 50 + one retry per damaged reply
        assert c.retries == 12 and c.transactions == 1 + 50 and c.failed == 0
        assert c.decoder.crc_errors + c.decoder.framing_errors >= 12


def test_persistent_corruption_fails_after_r_retries_without_waiting(make):
    # D2: every reply corrupt -> LinkTimeout after R retries. A damaged reply cuts its attempt short
    # (to a quarter of the timeout), so R retries fit where R timeouts would not.
    def hook(frame, reply):
        return [(0.0, flip_body_bit(reply) if isinstance(frame.msg, P.Command) else reply)]
    with FakeRobot(hook=hook) as r:
        d = make(r, LinkConfig(timeout_s=0.4, retries=3))
        t0 = time.monotonic()
        with pytest.raises(LinkTimeout, match=r"no valid STATE reply to COMMAND .* \(4 attempts of 400.0 ms\)"):
            d.send_command(q_of(1))
        assert 4 * 0.1 <= time.monotonic() - t0 < 4 * 0.4
        assert d.counters.requests == 1 + 4 and d.counters.failed == 1


def test_stalled_device_times_out_within_the_budget(make):
    # T2: no reply. Attempts x timeout, bounded by the budget.
    def hook(frame, reply):
        return [] if isinstance(frame.msg, P.Command) else [(0.0, reply)]
    with FakeRobot(hook=hook) as r:
        d = make(r, LinkConfig(timeout_s=0.04, retries=2))
        t0 = time.monotonic()
        with pytest.raises(LinkTimeout, match="received nothing"):
            d.send_command(q_of(1))
        assert 0.12 <= time.monotonic() - t0 < 0.12 + 1.0
        assert d.counters.timeouts == 3
        t0 = time.monotonic()
        with pytest.raises(LinkTimeout, match="within 50.0 ms"):
            d.send_command(q_of(2), budget_s=0.05)       # the cycle budget wins over R
        assert time.monotonic() - t0 < 0.05 + 1.0
        assert d.counters.requests == 1 + 3 + 2


def test_partial_state_fails_the_whole_read(make):
    # D3: the robot sends 11 joints of 12: never padded, never filled from the previous cycle.
    def hook(frame, reply):
        if isinstance(frame.msg, P.GetState):
            s = P.decode(reply).msg
            short = P.State(s.timestamp_us, s.status, 0, 0, s.q[:-1], s.dq[:-1], s.quat, s.gyro, s.accel)
            return [(0.0, P.encode(short, frame.tag))]
        return [(0.0, reply)]
    with FakeRobot(hook=hook) as r:
        d = make(r, LinkConfig(timeout_s=0.5, retries=1))
        with pytest.raises(LinkTimeout, match="STATE carries 11 joints, the robot declared 12"):
            d.read_state()
        assert d.counters.unexpected == 2


def test_unexpected_and_unsolicited_frames_are_ignored(make):
    # F8: a reply of the wrong type with the right tag, and an unsolicited report, are never the answer.
    def hook(frame, reply):
        if isinstance(frame.msg, P.Command) and len(received_of(r, P.Command)) == 1:
            wrong = P.encode(P.HeartbeatAck(1, 0, 0), frame.tag)
            unsolicited = P.encode(P.Error(P.ErrorCode.INTERNAL, 0, "brownout"), 0)
            return [(0.0, unsolicited + wrong), (0.005, reply)]
        return [(0.0, reply)]
    with FakeRobot(hook=hook) as r:
        d = make(r)
        assert d.send_command(q_of(5)).q == tuple(q_of(5))
        assert d.counters.unexpected == 2 and d.counters.retries == 1


def test_device_fault_is_raised_without_retry_and_mapped_by_name(make):
    # F9 with a permuted robot: the fault mask names the right joint in host order.
    robot_order = QUAD_JOINTS[::-1]
    with FakeRobot(robot_order) as r:
        d = make(r, joint_names=QUAD_JOINTS)
        r.errors = P.Fault.OVERHEAT
        r.fault_joints = 1 << robot_order.index("FR_thigh")
        with pytest.raises(DeviceFault, match=r"OVERHEAT.*joints \['FR_thigh'\]") as exc:
            d.send_command(q_of(1))
        assert exc.value.state.fault_joints == 1 << QUAD_JOINTS.index("FR_thigh")
        assert d.counters.requests == 2 and d.counters.device_faults == 1       # HELLO + one COMMAND
        with pytest.raises(DeviceFault):
            d.enable_torque()
        # The safe-stop requests still work on a faulted robot.
        assert d.damp().errors == P.Fault.OVERHEAT
        assert d.disable_torque().faulted
        r.errors, r.status = 0, r.status | P.Status.ESTOP
        with pytest.raises(DeviceFault, match="e-stop active"):
            d.read_state()


# ---------------------------------------------------------------- late, duplicate, lost (F10, F11, T1, T2)


def run_late_replies(make, n: int, rate: float, timeout_s: float, seed: int) -> dict:
    rng = random.Random(seed)
    late = {"count": 0}

    def hook(frame, reply):
        if isinstance(frame.msg, P.Command) and rng.random() < rate:
            late["count"] += 1
            return [(timeout_s * rng.choice((1.1, 1.5, 3.0)), reply)]
        return [(0.0, reply)]
    accepted = wrong = failed = 0
    with FakeRobot(hook=hook) as r:
        d = make(r, LinkConfig(timeout_s=timeout_s, retries=2))
        for i in range(n):
            try:
                state = d.send_command(q_of(i))
            except LinkTimeout:
                failed += 1
                continue
            accepted += 1
            wrong += state.q != tuple(q_of(i))
        return {"accepted": accepted, "wrong": wrong, "failed": failed, "late": late["count"],
                "dropped": d.counters.stale_replies, "flushed": d.counters.bytes_flushed}


def test_late_replies_are_never_taken_for_a_later_request(make):
    # F11 at 15% of requests, delays of 1.1x, 1.5x and 3x the timeout.
    res = run_late_replies(make, n=300, rate=0.15, timeout_s=0.03, seed=11)
    assert res["wrong"] == 0
    assert res["late"] >= 30 and res["accepted"] >= 290
    assert res["dropped"] + res["flushed"] > 0           # the late replies did arrive, and were refused


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.02, 0.15])
def test_late_replies_10k_transactions(make, rate):
    res = run_late_replies(make, n=10_000, rate=rate, timeout_s=0.03, seed=int(rate * 100))
    assert res["wrong"] == 0 and res["accepted"] + res["failed"] == 10_000


def test_duplicate_replies_are_dropped(make):
    def hook(frame, reply):
        return [(0.0, reply), (0.001, reply)]
    with FakeRobot(hook=hook) as r:
        d = make(r)
        for i in range(30):
            assert d.send_command(q_of(i)).q == tuple(q_of(i))
        time.sleep(0.01)
        d.read_state()
        # Each duplicate was either flushed before the next request or dropped as stale.
        assert d.counters.stale_replies + d.counters.bytes_flushed > 0 and d.counters.retries == 0


def test_unplugged_device_is_link_lost_at_once(robot, make):
    # T1: the mock dies / the pty closes.
    d = make(robot)
    d.send_command(q_of(1))
    robot.unplug()
    t0 = time.monotonic()
    with pytest.raises(LinkLost, match=f"link to {robot.url} lost"):
        d.send_command(q_of(2))
    assert time.monotonic() - t0 < CALM.timeout_s
    assert d.counters.link_lost == 1


def test_device_that_stops_reading_gives_a_write_timeout(robot, make):
    # T2: the robot neither reads nor answers: the pty fills up and a write times out; nothing hangs.
    d = make(robot, LinkConfig(timeout_s=0.002, retries=0, write_timeout_s=0.05))
    robot.reading = False
    t0 = time.monotonic()
    with pytest.raises(WriteTimeout, match="not reading"):
        for i in range(2000):
            try:
                d.send_command(q_of(i), [1.0] * 12, [1.0] * 12)
            except LinkTimeout as exc:
                if isinstance(exc, WriteTimeout):
                    raise
    assert time.monotonic() - t0 < 10 and d.counters.write_timeouts == 1


class _StubPort:
    """A port whose every write times out, as pyserial reports it."""
    in_waiting = 0

    def reset_input_buffer(self):
        pass

    def write(self, data):
        raise serial.SerialTimeoutException("Write timeout")

    def close(self):
        pass


def test_write_timeout_from_the_port_is_typed():
    d = SerialDriver("stub://", opener=lambda url, cfg: _StubPort())
    with pytest.raises(WriteTimeout, match="stub:// timed out after 0.05 s"):
        d.handshake()
    assert d.counters.write_timeouts == 1


# ---------------------------------------------------------------- joint order by name (D5)


perms = st.permutations(QUAD_JOINTS)


@settings(max_examples=200, deadline=None)
@given(perms, perms, st.integers(0, 2**12 - 1))
def test_joint_map_moves_values_by_name(host, robot_names, mask):
    check_joint_map(host, robot_names, mask)


def test_joint_map_over_1000_random_permutations():
    # faults.md D5 asks for 10^3 permutations; plain seeded draws are much cheaper than hypothesis here.
    rng = random.Random(5)
    for _ in range(1000):
        check_joint_map(rng.sample(QUAD_JOINTS, 12), rng.sample(QUAD_JOINTS, 12), rng.getrandbits(12))


def check_joint_map(host, robot_names, mask):
    jm = JointMap.build(host, robot_names)
    host_vals = [float(QUAD_JOINTS.index(n)) for n in host]              # value = the joint's identity
    to_robot = jm.to_robot(host_vals)
    assert to_robot == tuple(float(QUAD_JOINTS.index(n)) for n in robot_names)
    assert jm.to_host(to_robot) == tuple(host_vals)
    assert jm.to_robot(dict(zip(host, host_vals))) == to_robot
    # bit i of a robot-order mask names robot_names[i]; in host order it names the same joint.
    host_mask = jm.mask_to_host(mask)
    assert {host[j] for j in range(12) if host_mask >> j & 1} == {robot_names[i] for i in range(12) if mask >> i & 1}


def test_joint_map_refuses_incomplete_input():
    jm = JointMap.build(QUAD_JOINTS, QUAD_JOINTS[::-1])
    with pytest.raises(ValueError, match=r"q_target: missing joints \['RR_calf'\], unknown joints \['tail'\]"):
        jm.to_robot({**{n: 0.0 for n in QUAD_JOINTS[:-1]}, "tail": 1.0}, "q_target")
    with pytest.raises(ValueError, match="has 11 values, the robot has 12 joints"):
        jm.to_robot([0.0] * 11)
    with pytest.raises(JointMismatch, match="repeat"):
        JointMap.build(None, ("a", "a"))


@settings(max_examples=25, deadline=None)
@given(perms)
def test_permuted_robot_order_end_to_end(robot_names):
    with FakeRobot(robot_names) as r:
        d = SerialDriver(r.url, joint_names=QUAD_JOINTS, config=CALM)
        try:
            d.handshake()
            q = [QUAD_JOINTS.index(n) / 8 for n in QUAD_JOINTS]
            state = d.send_command(q)
            # The robot got each target at ITS index for that name...
            assert received_of(r, P.Command)[-1].msg.q == tuple(QUAD_JOINTS.index(n) / 8 for n in robot_names)
            # ...and the state comes back in host order, velocities moved with positions.
            assert state.q == tuple(q) and state.dq == tuple(2 * v for v in q)
            assert d.send_command(dict(zip(QUAD_JOINTS, q))).q == tuple(q)
            assert d.reset(dict(zip(QUAD_JOINTS, q))).q == tuple(q)
        finally:
            d.close()
