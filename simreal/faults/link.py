"""Link drills (docs/faults.md F10, F11, T3): every injected fault is a loss the driver counts, exactly.

`drill(fault, rate, n)` sends n COMMANDs to the lockstep quadruped mock in this process
(LoopbackPort) through a FaultyPort injecting one fault class, on a FakeClock ticking at the
control period, with the link timing a deploy uses (session.link_config). Each injected fault
must show up in the driver's counters as one known loss (IDENTITIES), and every accepted state
must be a reply the robot encoded for that same cycle ("wrong" counts the others: stale data
accepted). T3 runs twice: `slow_link` holds every reply 50-95% of the attempt timeout on that
FakeClock (exact: no retry, no failure), and `slow_device` is a real-time mock process answering
that slowly, whose figure includes the host's scheduling.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Callable

from simreal import protocol as P
from simreal.deploy.clock import FakeClock
from simreal.deploy.driver import DeviceFault, LinkTimeout, SerialDriver
from simreal.deploy.session import link_config
from simreal.deploy.transport import FaultPlan, FaultyPort

ROBOT = "quadruped"
LATE_S = 0.007          # past the 5.5 ms attempt timeout, inside the 20 ms period: answers a retry or nothing


def targets(i: int, n_joints: int) -> list[float]:
    """Distinct, exactly representable (float32) joint targets for cycle i, within +-0.25 rad."""
    return [((i % 4096) + j / 16) / 16384 for j in range(n_joints)]


@dataclass(frozen=True)
class Check:
    what: str           # the identity, e.g. "timeouts == frames_dropped"
    expected: int
    got: int

    @property
    def ok(self) -> bool:
        return self.expected == self.got


@dataclass(frozen=True)
class LinkRun:
    fault: str
    rate: float
    transactions: int
    ok: int                       # transactions answered
    wrong: int                    # answered with a reply to another cycle (must be 0)
    failed: int                   # LinkTimeout raised: a loss the runtime sees
    injected: dict[str, int]
    counters: dict[str, int]
    pending: int                  # frames faulted into the future and not delivered by the end
    checks: tuple[Check, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.wrong == 0 and all(c.ok for c in self.checks)


Identity = Callable[[dict, dict, int], list[Check]]


def _damaged(kind: str) -> Identity:
    def checks(inj: dict, c: dict, pending: int) -> list[Check]:
        n = inj[f"frames_{kind}"]
        return [Check(f"decoder errors == frames_{kind}", n, c["decoder_errors"]),
                Check(f"timeouts == frames_{kind}", n, c["timeouts"])]
    return checks


# Per fault class: FaultPlan field, and what the driver must have counted for what was injected.
IDENTITIES: dict[str, tuple[str, Identity]] = {
    "drop": ("drop", lambda inj, c, p: [Check("timeouts == frames_dropped", inj["frames_dropped"], c["timeouts"])]),
    "truncate": ("truncate", _damaged("truncated")),
    "swap": ("swap", _damaged("swapped")),
    "flip": ("flip", _damaged("flipped")),
    "dup": ("dup", lambda inj, c, p: [Check("stale == frames_duplicated", inj["frames_duplicated"],
                                            c["stale_replies"])]),
    "reorder": ("reorder", lambda inj, c, p: [
        Check("timeouts == frames_reordered", inj["frames_reordered"], c["timeouts"]),
        Check("stale == frames_reordered - pending", inj["frames_reordered"] - p, c["stale_replies"])]),
    "late": ("late", lambda inj, c, p: [
        Check("late_accepted + stale == frames_late - pending", inj["frames_late"] - p,
              c["late_accepted"] + c["stale_replies"])]),
    "drop_write": ("drop_write_rate", lambda inj, c, p: [
        Check("timeouts == writes_dropped", inj["writes_dropped"], c["timeouts"])]),
}


def drill(fault: str, rate: float, n: int, *, seed: int = 0, first_tag: int | None = None) -> LinkRun:
    """n control cycles with one fault class at `rate`; counts after the (faulted) handshake."""
    plan_field, identity = IDENTITIES[fault]
    kwargs = {"late_s": LATE_S} if fault == "late" else {}
    r = _lockstep(FaultPlan(seed=seed, **{plan_field: rate}, **kwargs), n, seed=seed, first_tag=first_tag,
                  name=f"fault-drill:{fault}")
    inj_all = collections.defaultdict(int, r.injected)
    return LinkRun(fault, rate, n, r.ok, r.wrong, r.failed, r.injected, r.counters, r.pending,
                   tuple(identity(inj_all, r.counters, r.pending)))


@dataclass(frozen=True)
class _Cycles:
    ok: int
    wrong: int
    failed: int
    injected: dict[str, int]
    counters: dict[str, int]
    pending: int
    timeout_s: float
    rtt_s: list[float]


def _lockstep(plan: FaultPlan, n: int, *, seed: int, first_tag: int | None, name: str) -> _Cycles:
    """n COMMAND cycles to the lockstep quadruped mock through a FaultyPort(plan) on a FakeClock."""
    from simreal.mock.gap import load_gap
    from simreal.mock.faults import parse_faults
    from simreal.mock.loopback import LoopbackPort
    from simreal.mock.robot import MockRobot, RobotOptions
    from simreal.robot.spec import load_robot

    spec = load_robot(ROBOT)
    period, nj = spec.control.period, spec.n_joints
    link = link_config(spec.serial, nj, 0.4 * period)
    clock = FakeClock()
    replies: dict[int, list[P.State]] = collections.defaultdict(list)
    cycle = [-1]

    def record(msg: P.Message, reply: P.Message) -> P.Message:
        if isinstance(msg, P.Command):          # as the host will decode it (float32 on the wire)
            replies[cycle[0]].append(P.decode(P.encode(reply, 1)).msg)
        return reply

    robot = MockRobot(spec, load_gap("nominal")[1], parse_faults(None), seed=seed,
                      options=RobotOptions(watchdog_s=0.0, lockstep=True))
    port = FaultyPort(LoopbackPort(robot, hook=record, wait=clock.advance), plan, clock=clock.now)
    d = SerialDriver(name, config=link, opener=lambda url, cfg: port, clock=clock.now, first_tag=first_tag)
    try:
        d.handshake()
        inj0, c0, rtt0 = collections.Counter(port.injected), _flat(d), len(d.rtt_s)
        ok = wrong = failed = 0
        for i in range(n):
            clock.sleep_until(i * period)
            cycle[0] = i
            try:
                state = d.send_command(targets(i, nj), [1.0] * nj, [1.0] * nj)
            except LinkTimeout:
                failed += 1
                continue
            except DeviceFault as exc:         # a lockstep mock with no faults scheduled never sends one
                raise RuntimeError(f"link drill {name}: unexpected device fault: {exc}") from exc
            ok += 1
            wrong += state not in replies.pop(i, [])
            replies.pop(i - 1, None)
    finally:
        d.close()
    inj = {k: v - inj0[k] for k, v in port.injected.items() if v - inj0[k]}
    c = {k: v - c0[k] for k, v in _flat(d).items()}
    return _Cycles(ok, wrong, failed, inj, c, port.pending, link.timeout_s, list(d.rtt_s)[rtt0:])


def _flat(d: SerialDriver) -> dict[str, int]:
    out = d.counters.as_dict()
    out["decoder_errors"] = d.counters.decoder.errors
    return out


@dataclass(frozen=True)
class SlowRun:
    transactions: int
    failed: int
    timeout_s: float
    rtt_p50_s: float
    rtt_max_s: float
    retries: int
    late_accepted: int


def slow_link(n: int, seed: int = 0) -> SlowRun:
    """T3 on the FakeClock: every reply to n COMMANDs is held 50-95% of the deploy's attempt timeout.

    Exact (no host scheduling in it): a reply inside the timeout is taken on its first attempt, so
    a single retry or failure is a timing bug in the driver. `slow_device` is the real-time run."""
    from simreal.robot.spec import load_robot

    spec = load_robot(ROBOT)
    timeout = link_config(spec.serial, spec.n_joints, 0.4 * spec.control.period).timeout_s
    plan = FaultPlan(seed=seed, late=1.0, late_s=0.5 * timeout, late_jitter_s=0.45 * timeout)
    r = _lockstep(plan, n, seed=seed, first_tag=None, name="fault-drill:slow")
    if r.wrong:
        raise RuntimeError(f"slow link drill: {r.wrong} replies accepted from another cycle")
    rtt = sorted(r.rtt_s)
    return SlowRun(n, r.failed, r.timeout_s, rtt[len(rtt) // 2], rtt[-1], r.counters["retries"],
                   r.counters["late_accepted"])


def slow_device(n: int, seed: int = 0) -> SlowRun:
    """T3: n COMMANDs to a real-time mock (its own process) whose replies take 50-95% of the attempt
    timeout a deploy sizes for the quadruped (wire + latency + jitter), over that link config."""
    from simreal.mock.process import spawn
    from simreal.robot.spec import load_robot

    spec = load_robot(ROBOT)
    nj = spec.n_joints
    link = link_config(spec.serial, nj, 0.4 * spec.control.period)
    wire = P.transaction_bytes(nj) * P.BITS_PER_BYTE / spec.serial.baudrate
    lo, hi = 0.5 * link.timeout_s - wire, 0.95 * link.timeout_s - wire
    with spawn(ROBOT, gap=f"latency={lo:.5f},jitter={hi - lo:.5f}", seed=seed, watchdog_ms=0) as m:
        d = SerialDriver(m.port, config=link)
        try:
            d.handshake()
            failed = 0
            for i in range(n):
                try:
                    d.send_command(targets(i, nj), [1.0] * nj, [1.0] * nj)
                except LinkTimeout:
                    failed += 1
            rtt = sorted(d.rtt_s)
            return SlowRun(n, failed, link.timeout_s, rtt[len(rtt) // 2], rtt[-1], d.counters.retries,
                           d.counters.late_accepted)
        finally:
            d.close()
