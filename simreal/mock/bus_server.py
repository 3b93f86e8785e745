"""The mock robot in a servo-bus mode: its servo bus on one pseudo-terminal and its IMU on another.

Same timing rules as simreal.mock.server (real time on the mock's clock, or lockstep), with the
bus's own: an instruction is served once its bytes have crossed the wire plus the gap's latency;
each servo's status packet leaves after the servo's return delay, one after another, at the baud
rate. The gap's per-reply faults (drop, corrupt, late, dup) apply to each status packet.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import math
import os
import select
import threading
import time
import tty
from typing import Callable

import numpy as np

from simreal.hardware.packets import Packet
from simreal.mock.bus_firmware import Bno055Firmware, ServoBusFirmware
from simreal.mock.faults import FaultSchedule, corrupt
from simreal.mock.robot import BURST_S, MockRobot
from simreal.mock.serving import ServeLoop, drain, set_nonblocking

# hook(instruction packet, status bytes) -> [(delay_s, bytes), ...] put on the wire instead
BusHook = Callable[[Packet, bytes], "list[tuple[float, bytes]]"]


class BusServer(ServeLoop):
    def __init__(self, robot: MockRobot, firmware: ServoBusFirmware, bus_fd: int, imu_fd: int, *,
                 schedule: FaultSchedule, seed: int = 0, link_timeout_s: float = 0.004,
                 imu_baudrate: int = 115_200, duration: float | None = None, stdin_fd: int | None = None,
                 hook: BusHook | None = None):
        super().__init__()
        self.robot, self.fw, self.schedule, self.hook = robot, firmware, schedule, hook
        self.imu = Bno055Firmware(robot, firmware)
        self.bus_fd, self.imu_fd, self.stdin_fd, self.duration = bus_fd, imu_fd, stdin_fd, duration
        self.lockstep = robot.options.lockstep
        self.byte_s = 10.0 / firmware.wiring.baudrate
        self.imu_byte_s = 10.0 / imu_baudrate
        self.return_delay_s = firmware.wiring.return_delay_us * 1e-6
        self.link_timeout_s = link_timeout_s
        self.decoder = firmware.codec.Decoder(status=False)
        self.fault_rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self.queue: collections.deque[tuple[float, Packet]] = collections.deque()
        self.writes: list[tuple[float, int, int, bytes]] = []      # (wall due, seq, fd, bytes)
        self._seq = itertools.count()
        self._last_due = 0.0
        self._last_write = 0.0
        self.counters: collections.Counter = collections.Counter()
        self.exchanges: list[tuple[Packet, bytes]] = []           # what each instruction earned, pre-fault
        self.t0 = time.monotonic()
        set_nonblocking(bus_fd, imu_fd)

    def now(self) -> float:
        return self.robot.clock if self.lockstep else time.monotonic() - self.t0

    def _iterate(self) -> None:
        self._wait_and_read()
        if self.duration is not None and time.monotonic() - self.t0 >= self.duration:
            self.stop_reason = "duration"
        if self.stop_reason:
            return
        if not self.lockstep:
            self._advance(self.now())
        if self.robot.disconnected:
            self.stop_reason = "disconnect"
            return
        self._flush_writes()

    def _wait_and_read(self) -> None:
        robot = self.robot
        wake = self.writes[0][0] - self.t0 if self.writes else math.inf
        if self.duration is not None:
            wake = min(wake, self.duration)
        if not self.lockstep:
            due = min(self.queue[0][0] if self.queue else math.inf, robot.next_time(), self.fw.next_time())
            wake = min(wake, due, robot.clock + BURST_S)
        timeout = None if math.isinf(wake) else max(0.0, wake - (time.monotonic() - self.t0))
        rlist = [self._wake_r] + ([] if robot.stalled else [self.bus_fd, self.imu_fd]) + \
            ([self.stdin_fd] if self.stdin_fd is not None else [])
        ready, _, _ = select.select(rlist, [], [], timeout)
        if self._wake_r in ready:
            drain(self._wake_r)
        if self.stdin_fd is not None and self.stdin_fd in ready and not os.read(self.stdin_fd, 4096):
            self.stop_reason = "stdin closed"
        if self.bus_fd in ready:
            self._read_bus()
        if self.imu_fd in ready:
            self._read_imu()

    def _advance(self, now: float) -> None:
        robot = self.robot
        while True:
            t_next_step = robot.clock + robot.dt
            t_item = min(self.queue[0][0] if self.queue else math.inf, robot.next_time(), self.fw.next_time())
            if t_item <= now and t_item < t_next_step:
                t = max(t_item, robot.clock)
                robot.tick(t)
                self.fw.tick(t)
                if robot.disconnected:
                    return
                while self.queue and self.queue[0][0] <= t:
                    _, pkt = self.queue.popleft()
                    self._serve(pkt, t)
            elif t_next_step <= now:
                robot.step_physics()
            else:
                break

    def _read_bus(self) -> None:
        data = drain(self.bus_fd)
        if not data:
            return
        self.counters["bytes_in"] += len(data)
        arrival = self.now()
        for pkt in self.decoder.feed(data):
            if self.lockstep:
                self._serve(pkt, self.robot.clock)
                continue
            wire = (len(pkt.params) + 10) * self.byte_s
            due = max(self._last_due, arrival + wire + self.robot.gap.latency)
            self._last_due = due
            self.queue.append((due, pkt))

    def _read_imu(self) -> None:
        data = drain(self.imu_fd)
        if not data:
            return
        now = self.now()
        if not self.lockstep:
            self._advance(now)
        wall = time.monotonic()
        for reply in self.imu.feed(data, now):
            due = wall if self.lockstep else wall + (len(data) + len(reply)) * self.imu_byte_s + self.robot.gap.latency
            heapq.heappush(self.writes, (due, next(self._seq), self.imu_fd, reply))

    def _serve(self, pkt: Packet, t: float) -> None:
        replies = self.fw.serve(pkt, t)
        wall = time.monotonic() if self.lockstep else self.t0 + t
        for data in replies:
            self.exchanges.append((pkt, data))
            self.counters["replies"] += 1
            wall += 0.0 if self.lockstep else self.return_delay_s + len(data) * self.byte_s
            due = self._last_write = max(wall, self._last_write)
            fault = self.schedule.draw(self.fault_rng)
            if fault:
                setattr(self.robot.injected, fault, getattr(self.robot.injected, fault) + 1)
            if fault == "drop":
                continue
            if fault == "corrupt":
                data = corrupt(data, self.fault_rng)
            if fault == "late":
                due += self.schedule.late_factor * self.link_timeout_s
            copies = [(0.0, data)] * (2 if fault == "dup" else 1)
            if self.hook is not None:
                copies = [c for _, d in copies for c in self.hook(pkt, d)]
            for delay, chunk in copies:
                heapq.heappush(self.writes, (due + delay, next(self._seq), self.bus_fd, chunk))

    def _flush_writes(self) -> None:
        now = time.monotonic()
        while self.writes and self.writes[0][0] <= now:
            _, _, fd, data = heapq.heappop(self.writes)
            try:
                n = os.write(fd, data)
            except (BlockingIOError, OSError):
                n = 0
            self.counters["bytes_out"] += n

    def report(self) -> dict:
        r, sim = self.robot, self.robot.sim
        return {
            "robot": r.spec.name, "bus": self.fw.family, "model": self.fw.model.name,
            "lockstep": self.lockstep, "exit_reason": self.stop_reason, "clock_s": round(r.clock, 6),
            "link": dict(self.counters), "bus_counters": dataclasses.asdict(self.fw.counters),
            "rx_decoder": dataclasses.asdict(self.decoder.stats), "imu_reads": self.imu.reads,
            "injected": dataclasses.asdict(r.injected), "watchdog": [{"t": round(t, 6), "mode": m} for t, m in r.watchdog_log],
            "falls": r.falls,
            "final": {"base_pos": sim.base_pos().round(5).tolist(), "fallen": r.fallen,
                      "tilt_deg": round(math.degrees(sim.tilt()), 3)},
        }




def open_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class ThreadedBusMock:
    """A bus-mode mock served from a thread of this process (tests): `url` (the servo bus),
    `imu_url`, `firmware` and `robot` to look at, `exchanges` to check what was answered."""

    def __init__(self, robot: MockRobot, firmware: ServoBusFirmware, *, schedule: FaultSchedule | None = None,
                 hook: BusHook | None = None, seed: int = 0, link_timeout_s: float = 0.004):
        self.robot, self.firmware = robot, firmware
        bus_m, bus_s, self.url = open_pty()
        imu_m, imu_s, self.imu_url = open_pty()
        self._fds = [bus_m, bus_s, imu_m, imu_s]
        self.server = BusServer(robot, firmware, bus_m, imu_m, schedule=schedule or FaultSchedule(),
                                seed=seed, hook=hook, link_timeout_s=link_timeout_s)
        self._thread = threading.Thread(target=self.server.serve, kwargs={"signals": False},
                                        name="mock-bus", daemon=True)
        self._thread.start()

    @property
    def exchanges(self) -> list[tuple[Packet, bytes]]:
        return self.server.exchanges

    def close(self) -> None:
        self.server.stop("closed")
        self._thread.join(timeout=5)
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def __enter__(self) -> ThreadedBusMock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
