"""The robot side of an in-process deploy, for drills and tests: the lockstep mock behind a LoopbackPort,
the real SerialDriver over it, a scripted policy, and the Runtime, all on one FakeClock.

The robot is the package's MockRobot in lockstep (one control period per COMMAND), so every
request goes through SerialDriver and the protocol's encoder and decoder as it would over a
serial port; faults come from the mock's own fault schedule (`--faults`), timed in mock seconds.
With FakeClock every timing figure is exact and nothing sleeps except a failed read's timeout.
"""
from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import numpy as np

from simreal import protocol as P
from simreal.deploy.clock import FakeClock
from simreal.deploy.driver import LinkConfig, SerialDriver
from simreal.deploy.plan import RuntimeConfig, plan_from_contract
from simreal.deploy.runtime import Runtime
from simreal.mock.faults import parse_faults
from simreal.mock.gap import load_gap
from simreal.mock.loopback import LoopbackPort
from simreal.mock.robot import MockRobot, RobotOptions
from simreal.robot.observation import builder_for

T = 0.02          # the quadruped's control period
RTT_S = 0.001     # fake-clock time one transaction takes


def at_cycle(c: int) -> str:
    """Mock time for a fault first seen by runtime cycle c's STATE read.

    Lockstep: cycle c reads at mock time c*T, and its COMMAND steps physics to (c+1)*T. A fault at
    (c - 1/2)T fires while cycle c-1's COMMAND runs, so that COMMAND's reply is the first to carry
    it: link and device faults stop cycle c-1; what a STATE shows (tilt, NaN, a stuck clock, an
    encoder) is first checked by cycle c's read (a non-pipelined run does not use COMMAND replies).
    """
    return f"{(c - 0.5) * T:.4f}"


@dataclasses.dataclass
class Bench:
    """The robot side of one test: the mock robot, the port its bytes cross, the driver over it."""
    robot: MockRobot
    port: LoopbackPort
    driver: SerialDriver
    times: list[tuple[float, str]]      # (fake-clock time, request type) of every request


    @property
    def wire(self) -> list[tuple[str, object]]:
        return self.port.wire

    def commands(self) -> list[tuple]:
        return self.port.commands()

    @property
    def torque(self) -> bool:
        return self.robot.mode != "off"


def make_bench(spec, clock: FakeClock, *, faults: str = "", hook=None, host_stalls: dict | None = None) -> Bench:
    """host_stalls {cycle: s}: the host is descheduled that long in runtime cycle k's STATE read."""
    robot = MockRobot(spec, load_gap("nominal")[1], parse_faults(faults), seed=0,
                      options=RobotOptions(lockstep=True))
    cycle_reads = [-1]          # STATE reads since TORQUE 1 - 1: runtime cycle k makes read k
    times: list[tuple[float, str]] = []

    def on_request(msg):
        times.append((clock.now(), msg.TYPE.name))
        clock.advance(RTT_S)
        if isinstance(msg, P.Torque) and msg.enable:
            cycle_reads[0] = 0
        elif isinstance(msg, P.GetState) and cycle_reads[0] >= 0:
            clock.advance((host_stalls or {}).get(cycle_reads[0], 0.0))
            cycle_reads[0] += 1

    def wait(s: float) -> None:     # a read that gets nothing waits its timeout out, on both clocks
        time.sleep(s)
        clock.advance(s)

    port = LoopbackPort(robot, hook=hook, on_request=on_request, wait=wait)
    driver = SerialDriver("loopback://mock", joint_names=spec.joint_names, opener=lambda url, cfg: port,
                          config=LinkConfig(timeout_s=0.004, retries=1, budget_s=None))
    return Bench(robot, port, driver, times)


class ScriptPolicy:
    """action = fn(call index, obs); targets = default + scale * action (NOT clipped: the safety layer must cope)."""

    def __init__(self, spec, fn=None, clock: FakeClock | None = None, infer_s: float = 0.0):
        self.spec, self.fn, self.clock, self.infer_s = spec, fn, clock, infer_s
        self.calls = 0
        self.inputs: list[np.ndarray] = []

    def infer(self, obs):
        self.inputs.append(np.array(obs))
        a = np.zeros(self.spec.n_joints) if self.fn is None else np.asarray(self.fn(self.calls, obs), float)
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.infer_s)
        return a, self.spec.default_pose + self.spec.control.action_scale * a


def contract_of(spec) -> SimpleNamespace:
    """The contract fields the runtime reads, as export writes them for this robot."""
    return SimpleNamespace(robot=spec.name, joint_names=spec.joint_names, default_pose=spec.default_pose.tolist(),
                           joint_min=spec.joint_min.tolist(), joint_max=spec.joint_max.tolist(),
                           control_period=spec.control.period, max_target_rate=spec.control.max_target_rate,
                           max_tilt_deg=spec.task.max_tilt_deg, command_vx=spec.task.command_vx,
                           command_yaw=spec.task.command_yaw)


def make_runtime(spec, *, faults="", fn=None, duration=1.0, config=None, log=None, clock=None, hook=None,
                 host_stalls=None, commands=None, on_cycle=None, infer_s=0.0005, **cfg):
    clock = clock or FakeClock(100.0)
    bench = make_bench(spec, clock, faults=faults, hook=hook, host_stalls=host_stalls)
    pol = ScriptPolicy(spec, fn, clock, infer_s)
    plan = plan_from_contract(contract_of(spec), spec)
    base = dict(duration_s=duration, soft_start_s=0.2, settle_s=0.1, handle_signals=False, relaxed_timeout_s=0.004)
    base.update(cfg)
    rt = Runtime(bench.driver, pol, plan, builder_for(spec), config or RuntimeConfig(**base), log=log, clock=clock,
                 commands=commands, on_cycle=on_cycle)
    return rt, bench, pol, clock
