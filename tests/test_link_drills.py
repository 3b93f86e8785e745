"""Link faults as exact identities (docs/faults.md F10, F11): what the transport injects, the driver counts.

The drills are simreal.faults.link's, the same that `simreal faults` reports; here at reduced counts."""
from __future__ import annotations

import pytest

from simreal import protocol as P
from simreal.deploy.driver import LinkConfig, SerialDriver
from simreal.deploy.port import PortError
from simreal.faults.link import IDENTITIES, drill, slow_device, slow_link
from test_driver import CALM, answered, q_of


@pytest.mark.parametrize("fault", sorted(IDENTITIES))
def test_every_injected_fault_is_one_counted_loss(fault):
    run = drill(fault, 0.1, 400, seed=3)
    assert sum(run.injected.values()) >= 20, run.injected          # the fault really was injected
    assert run.wrong == 0, run
    assert run.ok + run.failed == 400
    for check in run.checks:
        assert check.ok, (check, run)


def test_identities_fail_when_the_driver_miscounts(monkeypatch):
    # The identity is a real check: a driver that stops counting stale frames breaks the dup one.
    from simreal.deploy import driver as D
    monkeypatch.setattr(D.SerialDriver, "_drop_all", lambda self, items: None)
    run = drill("dup", 0.2, 200, seed=1)
    assert not run.passed and run.injected["frames_duplicated"] > 10


def test_tags_wrap_from_65535_to_1_and_never_use_0():
    from simreal.mock.faults import parse_faults
    from simreal.mock.gap import load_gap
    from simreal.mock.loopback import LoopbackPort
    from simreal.mock.robot import MockRobot, RobotOptions
    from simreal.robot.spec import load_robot

    spec = load_robot("quadruped")
    port = LoopbackPort(MockRobot(spec, load_gap("nominal")[1], parse_faults(None),
                                  options=RobotOptions(watchdog_s=0.0, lockstep=True)))
    tags: list[int] = []
    write = port.write

    def spy(data: bytes) -> int:
        tags.extend(f.tag for f in P.FrameDecoder().feed(bytes(data)) if isinstance(f, P.Frame))
        return write(data)
    port.write = spy
    d = SerialDriver("loopback", config=CALM, opener=lambda url, cfg: port, first_tag=65530)
    d.handshake()
    for i in range(10):
        d.send_command(q_of(i))
    assert tags == [65530, 65531, 65532, 65533, 65534, 65535, 1, 2, 3, 4, 5]
    assert d.counters.transactions == 11 and d.counters.stale_replies == 0


def test_a_fault_url_wraps_any_port_and_its_counts_match_the_driver(serve_mock):
    r = serve_mock()
    d = SerialDriver(f"fault://seed=2,dup=0.2@{r.url}", config=CALM)
    try:
        d.handshake()
        for i in range(100):
            assert answered(r, d.send_command(q_of(i)))
        assert d.port.plan.dup == 0.2 and d.port.injected["frames_duplicated"] >= 10
        assert d.counters.stale_replies == d.port.injected["frames_duplicated"]
    finally:
        d.close()


@pytest.mark.parametrize("url, says", [
    ("fault://seed=1,drop=0.1", "expected fault://SPEC@URL"),
    ("fault://bogus=1@/dev/null", "unknown fault 'bogus=1'"),
    ("fault://drop=lots@/dev/null", "fault drop: 'lots' is not a number"),
    ("fault://drop=2@/dev/null", "FaultPlan.drop must be in [0, 1]"),
    ("fault://drop=0.1@/dev/no-such-port", "No such file or directory"),
])
def test_a_bad_fault_url_is_a_port_error_naming_the_port(url, says):
    d = SerialDriver(url, config=LinkConfig())
    with pytest.raises(PortError) as exc:
        d.connect()
    msg = str(exc.value)
    assert says in msg and (url in msg or "port /dev/no-such-port" in msg), msg


def test_a_slow_device_at_50_to_95_percent_of_the_timeout_gives_no_false_faults():
    # T3 (docs/faults.md) on the FakeClock, exact: every reply held 50-95% of the attempt timeout is
    # taken on its first attempt. The real-time figure (host scheduling in it) is the slow test below.
    res = slow_link(2000, seed=1)
    assert (res.failed, res.retries) == (0, 0), res
    assert 0.5 * res.timeout_s <= res.rtt_p50_s and res.rtt_max_s <= 0.95 * res.timeout_s, res


def test_the_slow_link_drill_sees_replies_held_past_the_timeout(monkeypatch):
    # The drill can fail: hold the replies 100-105% of the timeout and every first attempt times out.
    import simreal.faults.link as link
    real = link.FaultPlan
    monkeypatch.setattr(link, "FaultPlan", lambda **kw: real(**{**kw, "late_s": kw["late_s"] * 2.0,
                                                                "late_jitter_s": kw["late_s"] * 0.1}))
    res = slow_link(50, seed=1)
    assert res.retries >= 50, res


@pytest.mark.slow
def test_a_slow_device_10k_transactions():
    # Real time: a mock process answering at 50-95% of the timeout; needs a quiet host.
    res = slow_device(10_000, seed=2)
    assert res.failed == 0, res
