"""The driver over a fault-injecting port (docs/faults.md, layer L2): noisy links, lost requests, USB latency (T3, T7).

The robot is the lockstep mock served from a thread over a pty (conftest's serve_mock); an
accepted state is right when it is the reply the robot encoded for the last request it answered."""
from __future__ import annotations

import statistics

import pytest

from simreal.deploy.driver import LinkConfig, LinkTimeout, SerialDriver
from simreal.deploy.transport import FaultPlan, FaultyPort, faulty_opener
from test_driver import answered, q_of


@pytest.fixture
def drive(serve_mock):
    return lambda plan, config, n: _drive(serve_mock(), plan, config, n)


def _drive(r, plan: FaultPlan, config: LinkConfig, n: int) -> tuple[SerialDriver, FaultyPort, dict]:
    """n commands through a FaultyPort; returns the driver, the port (with its injected counts), outcomes."""
    res = {"ok": 0, "wrong": 0, "timeouts": 0}
    ports: list[FaultyPort] = []
    opener = faulty_opener(plan)

    def keep(url, cfg):
        ports.append(opener(url, cfg))
        return ports[-1]
    d = SerialDriver(r.url, config=config, opener=keep)
    try:
        d.handshake()
        for i in range(n):
            try:
                state = d.send_command(q_of(i))
            except LinkTimeout:
                res["timeouts"] += 1
                continue
            res["ok"] += 1
            res["wrong"] += not answered(r, state)
    finally:
        d.close()
    return d, ports[0], res


def test_noisy_link_never_delivers_wrong_data(drive):
    # Bit errors, garbage bursts and lost requests together; every accepted state is the right one.
    plan = FaultPlan(seed=7, bit_error_rate=2e-4, garbage_rate=0.05, drop_write_rate=0.03)
    d, port, res = drive(plan, LinkConfig(timeout_s=0.05, retries=3, handshake_retries=8), n=300)
    assert res["wrong"] == 0 and res["ok"] + res["timeouts"] == 300 and res["ok"] >= 290
    assert port.injected["bit_flips"] > 10 and port.injected["garbage_bursts"] > 5
    c = d.counters
    assert c.retries > 0 and c.decoder.crc_errors + c.decoder.framing_errors > 0


def test_injected_faults_are_counted_and_detected(drive):
    d, port, res = drive(FaultPlan(seed=3, garbage_rate=0.1, drop_write_rate=0.05),
                         LinkConfig(timeout_s=0.05, retries=3, handshake_retries=8), n=200)
    assert res["wrong"] == 0 and res["ok"] + res["timeouts"] == 200 and res["ok"] >= 195
    inj = port.injected
    assert inj["garbage_bursts"] > 5 and inj["writes_dropped"] > 3
    # Every dropped request cost at least one failed attempt; none cost a transaction.
    assert d.counters.failed == res["timeouts"] and d.counters.timeouts >= inj["writes_dropped"]


def test_usb_latency_is_absorbed_by_a_timeout_sized_for_it(drive):
    # T7: bytes delivered on a 16 ms latency timer. A 50 ms timeout copes; the RTTs show the latency.
    d, _, res = drive(FaultPlan(latency_s=0.016), LinkConfig(timeout_s=0.05, retries=1), n=30)
    assert res == {"ok": 30, "wrong": 0, "timeouts": 0}
    assert statistics.median(d.rtt_s) > 0.004
    # With 1 ms ticks the same exchange is fast.
    d1, _, res1 = drive(FaultPlan(latency_s=0.001), LinkConfig(timeout_s=0.05, retries=1), n=30)
    assert res1["ok"] == 30 and statistics.median(d1.rtt_s) < statistics.median(d.rtt_s)


def test_timeout_shorter_than_the_latency_fails_typed(drive):
    _, _, res = drive(FaultPlan(latency_s=0.05), LinkConfig(timeout_s=0.004, retries=1, handshake_timeout_s=0.2), n=5)
    assert res["timeouts"] >= 4 and res["wrong"] == 0


def test_fault_plan_is_validated():
    with pytest.raises(ValueError, match="bit_error_rate must be in"):
        FaultPlan(bit_error_rate=2.0)
