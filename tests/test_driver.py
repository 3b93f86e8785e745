"""SerialDriver against the mock robot over a pseudo-terminal: faults F8-F11, T1-T6, D1-D3, D5.

The robot is the same MockRobot as the HIL tests (lockstep, served from a thread by
simreal.mock.threaded); byte-level faults come from its reply hook. A reply is checked against
what the robot itself encoded (`answered`), so a stale or damaged reply taken as good shows.
"""
from __future__ import annotations

import dataclasses
import random
import time

import pytest
import serial
from hypothesis import HealthCheck, given, settings, strategies as st

from simreal import protocol as P
from simreal.deploy.driver import (DeviceFault, Driver, DriverError, HandshakeError, JointMap, JointMismatch,
                                   LinkConfig, LinkLost, LinkTimeout, NotSupported, RemoteError, SerialDriver,
                                   WriteTimeout)
from simreal.deploy.port import PortBusy, PortError
from simreal.deploy.transport import open_port
from simreal.robot.spec import load_robot

JOINTS = tuple(load_robot("quadruped").joint_names)
N = len(JOINTS)

# Generous timeouts where no fault is injected: the test machine is shared and loaded.
CALM = LinkConfig(timeout_s=0.5, retries=2, handshake_timeout_s=0.5, handshake_retries=2)


@pytest.fixture
def make():
    """make(mock, config=..., **kw) -> a handshaken SerialDriver, closed after the test."""
    made: list = []

    def _make(mock, config: LinkConfig = CALM, handshake: bool = True, **kw) -> SerialDriver:
        d = SerialDriver(mock.url, config=config, **kw)
        made.append(d)
        if handshake:
            d.handshake()
        return d
    yield _make
    for d in made:
        d.close()


@pytest.fixture
def robot(serve_mock):
    return serve_mock()


def q_of(i: int) -> list[float]:
    # Distinct, exactly representable targets per transaction (the wire carries float32).
    return [((i % 4096) + j / 16) / 1024 for j in range(N)]


def answered(mock, state: P.State) -> bool:
    """Is `state` a reply the robot encoded for THIS transaction: the last COMMAND it answered, or an
    earlier attempt of it (the same targets; a late reply to a retried request answers it too)?"""
    last = mock.received()[-1].msg
    return isinstance(last, P.Command) and any(
        frame.msg == last and P.decode(reply).msg == state for frame, reply in mock.exchanges)


def flip_body_bit(frame: bytes) -> bytes:
    damaged = bytearray(frame)
    damaged[len(frame) // 2] ^= 0x04
    return bytes(damaged)


def with_state(reply: bytes, tag: int, **changes) -> bytes:
    """The STATE in `reply` with some fields changed, re-encoded (a robot that reports otherwise)."""
    return P.encode(dataclasses.replace(P.decode(reply).msg, **changes), tag)


# ---------------------------------------------------------------- the happy path


def test_handshake_then_every_request(robot, make):
    d = make(robot)
    assert isinstance(d, Driver)
    assert d.info.robot_name == "quadruped" and d.info.joint_names == JOINTS and d.info.simulated
    assert d.joint_names == JOINTS
    state = d.send_command(q_of(1))
    assert answered(robot, state)
    assert robot.received(P.Command)[-1].msg == P.Command(tuple(q_of(1)))
    assert d.enable_torque().torque_on
    assert not d.disable_torque().torque_on
    for call in (d.read_state, d.hold, d.damp, d.clear_errors):
        assert isinstance(call(), P.State)
    ack = d.heartbeat()
    assert isinstance(ack, P.HeartbeatAck) and ack.timestamp_us >= state.timestamp_us > 0
    assert d.reset({n: 0.25 for n in JOINTS}, seed=3).q == pytest.approx((0.25,) * N, abs=2e-3)
    assert robot.received(P.SimReset)[-1].msg.seed == 3
    assert d.ground_truth().base_pos == pytest.approx(robot.robot.sim.base_pos().tolist(), abs=1e-5)
    c = d.counters
    assert c.transactions == c.requests == 11 and c.retries == c.timeouts == c.stale_replies == 0
    assert d.counters.as_dict()["decoder_frames"] == 11 and len(d.rtt_s) == 11


def test_command_with_gain_scales(robot, make):
    d = make(robot)
    d.send_command(q_of(2), [1.0] * N, [0.5] * N)
    assert robot.received(P.Command)[-1].msg.kd_scale == (0.5,) * N


def test_socket_url(serve_mock):
    r = serve_mock(transport="tcp")
    d = SerialDriver(r.url, config=CALM)
    try:
        d.handshake()
        assert answered(r, d.send_command(q_of(3)))
    finally:
        d.close()


def test_requests_before_handshake_are_refused(robot, make):
    d = make(robot, handshake=False)
    with pytest.raises(DriverError, match="call handshake"):
        d.enable_torque()
    assert robot.received() == []


# ---------------------------------------------------------------- opening and handshake (T4-T6)


def test_port_busy_names_the_port(robot, make):
    make(robot)
    with pytest.raises(PortBusy, match=robot.url):
        SerialDriver(robot.url).connect()


def test_missing_port_is_a_port_error():
    with pytest.raises(PortError, match="/dev/simreal-no-such-port"):
        open_port("/dev/simreal-no-such-port", CALM)


def test_stale_bytes_and_frames_before_the_handshake_are_ignored(serve_mock, make):
    # T5: the robot talks before the port is opened, and again between HELLO and its INFO.
    def hook(frame, reply):
        if isinstance(frame.msg, P.Hello):
            stale = P.encode(P.Info("other", ("x",)), frame.tag + 7)
            return [(0.0, b"\x00garbage\x17" + stale + P.encode(P.HeartbeatAck(1, 0, 0), 0)), (0.01, reply)]
        return [(0.0, reply)]
    r = serve_mock(hook=hook)
    r.write_raw(b"boot log: hello world\r\n" + P.encode(P.State(1, 0, 0, 0, (), (), (1.0, 0, 0, 0), (0, 0, 0),
                                                                 (0, 0, 0)), 1))
    time.sleep(0.05)
    d = make(r)
    assert d.info.robot_name == "quadruped"
    assert d.counters.stale_replies == 1 and d.counters.unexpected == 1


def test_wrong_protocol_version_is_named(serve_mock, make):
    r = serve_mock(hook=lambda frame, reply: [(0.0, P.encode(P.decode(reply).msg, frame.tag, version=2))])
    with pytest.raises(HandshakeError, match="speaks simreal protocol v2; this host speaks v1"):
        make(r)


def test_random_bytes_are_shown_in_hex(serve_mock, make):
    junk = bytes(random.Random(1).randrange(256) for _ in range(40))
    r = serve_mock(hook=lambda frame, reply: [(0.0, junk)])
    cfg = LinkConfig(handshake_timeout_s=0.05, handshake_retries=1)
    with pytest.raises(HandshakeError, match="first bytes: " + junk[:32].hex(" ")):
        make(r, cfg)
    d = SerialDriver(r.url, config=cfg)     # torque is never enabled without a handshake
    with pytest.raises(DriverError):
        d.enable_torque()
    assert r.received(P.Torque) == []


def test_silent_device_fails_the_handshake_in_bounded_time(serve_mock, make):
    r = serve_mock(hook=lambda frame, reply: [])
    cfg = LinkConfig(handshake_timeout_s=0.05, handshake_retries=3)
    t0 = time.monotonic()
    with pytest.raises(HandshakeError, match=r"after 4 HELLO attempts of 0.05 s \(received nothing\)"):
        make(r, cfg)
    assert 0.2 <= time.monotonic() - t0 < 0.2 + 1.0     # slack for a loaded test machine
    assert len(r.received(P.Hello)) == 4


def test_loop_url_reports_its_own_echo():
    d = SerialDriver("loop://", config=LinkConfig(handshake_timeout_s=0.05, handshake_retries=1))
    with pytest.raises(HandshakeError, match="a HELLO where INFO was expected"):
        d.handshake()
    d.close()


def test_wrong_robot_and_wrong_joints_are_refused(robot, make):
    d = make(robot, handshake=False, robot_name="biped")
    with pytest.raises(HandshakeError, match="is robot 'quadruped', expected 'biped'"):
        d.handshake()
    d.close()
    with pytest.raises(JointMismatch, match=rf"the robot lacks \['tail'\], the host lacks \['{JOINTS[0]}'\]"):
        make(robot, joint_names=("tail",) + JOINTS[1:])


def test_robot_error_reply_is_a_remote_error(serve_mock, make):
    def hook(frame, reply):
        if isinstance(frame.msg, P.Torque):
            return [(0.0, P.encode(P.Error(P.ErrorCode.REFUSED, P.MsgType.TORQUE, "not calibrated"), frame.tag))]
        return [(0.0, reply)]
    d = make(serve_mock(hook=hook))
    with pytest.raises(RemoteError, match="REFUSED for TORQUE: not calibrated") as exc:
        d.enable_torque()
    assert exc.value.error.code == P.ErrorCode.REFUSED and d.counters.requests == 2   # no retry


def test_mock_only_requests_on_a_real_robot(serve_mock, make):
    r = serve_mock(simulated=False)
    d = make(r)
    assert not d.info.simulated
    with pytest.raises(NotSupported, match="reset\\(\\) is mock-only"):
        d.reset()
    with pytest.raises(NotSupported):
        d.ground_truth()
    assert r.received(P.SimReset) == [] and r.received(P.SimGetGroundTruth) == []


# ---------------------------------------------------------------- damaged replies (D1-D3, F8)


def test_transient_corruption_is_retried_and_counted(serve_mock, make):
    # D1: one corrupt reply in five; every transaction still succeeds, with one retry per bad reply.
    count = {"commands": 0, "damaged": 0}

    def hook(frame, reply):
        if isinstance(frame.msg, P.Command):
            count["commands"] += 1
            if count["commands"] % 5 == 0:
                count["damaged"] += 1
                return [(0.0, flip_body_bit(reply))]
        return [(0.0, reply)]
    r = serve_mock(hook=hook)
    d = make(r, LinkConfig(timeout_s=0.2, retries=2))
    for i in range(50):
        assert answered(r, d.send_command(q_of(i)))
    c = d.counters
    assert count == {"commands": 62, "damaged": 12}    # 50 + one retry per damaged reply
    assert c.retries == 12 and c.transactions == 1 + 50 and c.failed == 0
    assert c.decoder.crc_errors + c.decoder.framing_errors >= 12


def test_persistent_corruption_fails_after_r_retries_without_waiting(serve_mock, make):
    # D2: every reply corrupt -> LinkTimeout after R retries. A damaged reply cuts its attempt short
    # (to a quarter of the timeout), so R retries fit where R timeouts would not.
    def hook(frame, reply):
        return [(0.0, flip_body_bit(reply) if isinstance(frame.msg, P.Command) else reply)]
    d = make(serve_mock(hook=hook), LinkConfig(timeout_s=0.4, retries=3))
    t0 = time.monotonic()
    with pytest.raises(LinkTimeout, match=r"no valid STATE reply to COMMAND .* \(4 attempts of 400.0 ms\)"):
        d.send_command(q_of(1))
    assert 4 * 0.1 <= time.monotonic() - t0 < 4 * 0.4
    assert d.counters.requests == 1 + 4 and d.counters.failed == 1


def test_stalled_device_times_out_within_the_budget(serve_mock, make):
    # T2: no reply. Attempts x timeout, bounded by the budget.
    def hook(frame, reply):
        return [] if isinstance(frame.msg, P.Command) else [(0.0, reply)]
    d = make(serve_mock(hook=hook), LinkConfig(timeout_s=0.04, retries=2))
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


def test_partial_state_fails_the_whole_read(serve_mock, make):
    # D3: the robot sends one joint short: never padded, never filled from the previous cycle.
    def hook(frame, reply):
        if isinstance(frame.msg, P.GetState):
            s = P.decode(reply).msg
            return [(0.0, with_state(reply, frame.tag, q=s.q[:-1], dq=s.dq[:-1]))]
        return [(0.0, reply)]
    d = make(serve_mock(hook=hook), LinkConfig(timeout_s=0.5, retries=1))
    with pytest.raises(LinkTimeout, match=f"STATE carries {N - 1} joints, the robot declared {N}"):
        d.read_state()
    assert d.counters.unexpected == 2


def test_unexpected_and_unsolicited_frames_are_ignored(serve_mock, make):
    # F8: a reply of the wrong type with the right tag, and an unsolicited report, are never the answer.
    def hook(frame, reply):
        if isinstance(frame.msg, P.Command) and len(r.received(P.Command)) == 1:
            wrong = P.encode(P.HeartbeatAck(1, 0, 0), frame.tag)
            unsolicited = P.encode(P.Error(P.ErrorCode.INTERNAL, 0, "brownout"), 0)
            return [(0.0, unsolicited + wrong), (0.005, reply)]
        return [(0.0, reply)]
    r = serve_mock(hook=hook)
    d = make(r)
    assert answered(r, d.send_command(q_of(5)))
    assert d.counters.unexpected == 2 and d.counters.retries == 1


def claims_joint_order(order: tuple[str, ...], then=None):
    """A hook for a robot whose firmware lists its joints in `order` (INFO rewritten; `then` next)."""
    def hook(frame, reply):
        if isinstance(frame.msg, P.Hello):
            return [(0.0, P.encode(dataclasses.replace(P.decode(reply).msg, joint_names=order), frame.tag))]
        return then(frame, reply) if then else [(0.0, reply)]
    return hook


def test_device_fault_is_raised_without_retry_and_mapped_by_name(serve_mock, make):
    # F9 with a permuted robot: the fault mask names the right joint in host order.
    robot_order = JOINTS[::-1]
    report = {"errors": 0, "fault_joints": 0, "status": 0}

    def faulty(frame, reply):
        msg = P.decode(reply).msg
        if isinstance(msg, P.State):
            return [(0.0, with_state(reply, frame.tag, errors=report["errors"], fault_joints=report["fault_joints"],
                                     status=msg.status | report["status"]))]
        return [(0.0, reply)]
    d = make(serve_mock(hook=claims_joint_order(robot_order, faulty)), joint_names=JOINTS)
    report.update(errors=int(P.Fault.OVERHEAT), fault_joints=1 << robot_order.index("fr_knee"))
    with pytest.raises(DeviceFault, match=r"OVERHEAT.*joints \['fr_knee'\]") as exc:
        d.send_command(q_of(1))
    assert exc.value.state.fault_joints == 1 << JOINTS.index("fr_knee")
    assert d.counters.requests == 2 and d.counters.device_faults == 1       # HELLO + one COMMAND
    with pytest.raises(DeviceFault):
        d.enable_torque()
    # The safe-stop requests still work on a faulted robot.
    assert d.damp().errors == P.Fault.OVERHEAT
    assert d.disable_torque().faulted
    report.update(errors=0, fault_joints=0, status=int(P.Status.ESTOP))
    with pytest.raises(DeviceFault, match="e-stop active"):
        d.read_state()


def test_the_mocks_own_device_fault_reaches_the_driver(serve_mock, make):
    # F9 end to end: the mock's scheduled overheat (not a rewritten reply) names its joint.
    d = make(serve_mock(faults="device_fault=0.01:overheat:rl_hip"))
    with pytest.raises(DeviceFault, match=r"OVERHEAT.*joints \['rl_hip'\]"):
        d.send_command(q_of(1))


# ---------------------------------------------------------------- late, duplicate, lost (F10, F11, T1, T2)


def run_late_replies(serve_mock, make, n: int, rate: float, timeout_s: float, seed: int) -> dict:
    rng = random.Random(seed)
    late = {"count": 0}

    def hook(frame, reply):
        if isinstance(frame.msg, P.Command) and rng.random() < rate:
            late["count"] += 1
            return [(timeout_s * rng.choice((1.1, 1.5, 3.0)), reply)]
        return [(0.0, reply)]
    accepted = wrong = failed = 0
    r = serve_mock(hook=hook)
    d = make(r, LinkConfig(timeout_s=timeout_s, retries=2))
    for i in range(n):
        try:
            state = d.send_command(q_of(i))
        except LinkTimeout:
            failed += 1
            continue
        accepted += 1
        wrong += not answered(r, state)
    return {"accepted": accepted, "wrong": wrong, "failed": failed, "late": late["count"],
            "dropped": d.counters.stale_replies, "flushed": d.counters.bytes_flushed}


def test_late_replies_are_never_taken_for_a_later_request(serve_mock, make):
    # F11 at 15% of requests, delays of 1.1x, 1.5x and 3x the timeout.
    res = run_late_replies(serve_mock, make, n=300, rate=0.15, timeout_s=0.03, seed=11)
    assert res["wrong"] == 0
    assert res["late"] >= 30 and res["accepted"] >= 290
    assert res["dropped"] + res["flushed"] > 0           # the late replies did arrive, and were refused


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.02, 0.15])
def test_late_replies_10k_transactions(serve_mock, make, rate):
    res = run_late_replies(serve_mock, make, n=10_000, rate=rate, timeout_s=0.03, seed=int(rate * 100))
    assert res["wrong"] == 0 and res["accepted"] + res["failed"] == 10_000


def test_duplicate_replies_are_dropped(serve_mock, make):
    r = serve_mock(hook=lambda frame, reply: [(0.0, reply), (0.001, reply)])
    d = make(r)
    for i in range(30):
        assert answered(r, d.send_command(q_of(i)))
    time.sleep(0.2)     # the mock sends each twin from a timer: on a loaded host it may trail the next reply
    d.read_state()
    # Every duplicate is dropped and counted, whether it was flushed before the next request or came
    # during it: INFO's and the 30 COMMAND replies' (the last read's own twin is still unread).
    assert d.counters.stale_replies == 31 and d.counters.retries == 0 and d.counters.timeouts == 0


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


def test_device_that_stops_reading_gives_a_write_timeout(serve_mock, make):
    # T2: the robot neither reads nor answers (the mock's stall, from its first COMMAND on): the pty
    # fills up and a write times out; nothing hangs.
    d = make(serve_mock(faults="stall_at=0.01:1000"), LinkConfig(timeout_s=0.002, retries=0, write_timeout_s=0.05))
    t0 = time.monotonic()
    with pytest.raises(WriteTimeout, match="not reading"):
        for i in range(2000):
            try:
                d.send_command(q_of(i), [1.0] * N, [1.0] * N)
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


perms = st.permutations(JOINTS)


@settings(max_examples=200, deadline=None)
@given(perms, perms, st.integers(0, 2**N - 1))
def test_joint_map_moves_values_by_name(host, robot_names, mask):
    check_joint_map(host, robot_names, mask)


def test_joint_map_over_1000_random_permutations():
    # faults.md D5 asks for 10^3 permutations; plain seeded draws are much cheaper than hypothesis here.
    rng = random.Random(5)
    for _ in range(1000):
        check_joint_map(rng.sample(JOINTS, N), rng.sample(JOINTS, N), rng.getrandbits(N))


def check_joint_map(host, robot_names, mask):
    jm = JointMap.build(host, robot_names)
    host_vals = [float(JOINTS.index(n)) for n in host]              # value = the joint's identity
    to_robot = jm.to_robot(host_vals)
    assert to_robot == tuple(float(JOINTS.index(n)) for n in robot_names)
    assert jm.to_host(to_robot) == tuple(host_vals)
    assert jm.to_robot(dict(zip(host, host_vals))) == to_robot
    # bit i of a robot-order mask names robot_names[i]; in host order it names the same joint.
    host_mask = jm.mask_to_host(mask)
    assert {host[j] for j in range(N) if host_mask >> j & 1} == {robot_names[i] for i in range(N) if mask >> i & 1}


def test_joint_map_refuses_incomplete_input():
    jm = JointMap.build(JOINTS, JOINTS[::-1])
    with pytest.raises(ValueError, match=rf"q_target: missing joints \['{JOINTS[-1]}'\], unknown joints \['tail'\]"):
        jm.to_robot({**{n: 0.0 for n in JOINTS[:-1]}, "tail": 1.0}, "q_target")
    with pytest.raises(ValueError, match=f"has {N - 1} values, the robot has {N} joints"):
        jm.to_robot([0.0] * (N - 1))
    with pytest.raises(JointMismatch, match="repeat"):
        JointMap.build(None, ("a", "a"))


@pytest.fixture
def reordering_mock(serve_mock):
    """One mock for every example: its claimed joint order is set per example (a new handshake each)."""
    claimed = {"order": JOINTS}
    mock = serve_mock(hook=lambda frame, reply: claims_joint_order(claimed["order"])(frame, reply))
    return mock, claimed


# One mock shared by the examples on purpose (a MuJoCo model each would be slow); every example
# handshakes anew, so no state of one example's link carries into the next.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(perms)
def test_permuted_robot_order_end_to_end(reordering_mock, robot_names):
    # The mock's firmware claims another joint order: targets leave at the robot's index for each
    # name, and the robot's arrays (positions and velocities alike) come back in host order.
    r, claimed = reordering_mock
    claimed["order"] = robot_names
    d = SerialDriver(r.url, joint_names=JOINTS, config=CALM)
    try:
        d.handshake()
        jm = JointMap.build(JOINTS, robot_names)
        q = [JOINTS.index(n) / 8 for n in JOINTS]
        state = d.send_command(q)
        assert r.received(P.Command)[-1].msg.q == tuple(JOINTS.index(n) / 8 for n in robot_names)
        raw = r.last_reply()
        assert state.q == jm.to_host(raw.q) and state.dq == jm.to_host(raw.dq)
        d.send_command(dict(zip(JOINTS, q)))
        assert r.received(P.Command)[-1].msg.q == tuple(JOINTS.index(n) / 8 for n in robot_names)
        d.reset(dict(zip(JOINTS, q)))
        assert r.received(P.SimReset)[-1].msg.q == tuple(JOINTS.index(n) / 8 for n in robot_names)
    finally:
        d.close()


# ---------------------------------------------------------------- link timing (T3; #15 defect 3)


def test_link_timing_is_sized_from_the_frames_and_the_reply_time():
    from simreal import protocol as P_
    from simreal.deploy.session import link_config
    from simreal.robot.spec import SerialSpec

    link = link_config(SerialSpec(), N, budget_s=0.008)
    wire = P_.transaction_bytes(N) * 10 / 1_000_000
    assert link.timeout_s == pytest.approx(wire + 0.001 + P_.HOST_MARGIN_S)      # ~5.5 ms for 8 joints
    assert link.budget_s == 0.008 and link.retries >= 1 and link.timeout_s < link.budget_s   # room for a retry
    slow = link_config(SerialSpec(baudrate=115_200), N, budget_s=0.008)
    assert slow.timeout_s == slow.budget_s == 0.008                  # 25 ms of wire time: capped, no retry room


def test_an_earlier_attempts_late_reply_answers_its_own_transaction(serve_mock, make):
    # The first attempt's reply comes 1.3x the timeout late and the retry's is lost: the late one is
    # a reply to the same request (same targets), so the transaction succeeds on it, counted.
    attempts = {"n": 0}

    def hook(frame, reply):
        if isinstance(frame.msg, P.Command):
            attempts["n"] += 1
            return [(0.013, reply)] if attempts["n"] == 1 else []
        return [(0.0, reply)]
    r = serve_mock(hook=hook)
    d = make(r, LinkConfig(timeout_s=0.01, retries=2, budget_s=0.05))
    state = d.send_command(q_of(7))
    assert answered(r, state) and state == P.decode(r.exchanges[1][1]).msg      # the first COMMAND's reply
    assert d.counters.late_accepted == 1 and d.counters.failed == 0 and attempts["n"] == 2
