"""The mock robot's serial side: a MockRobot served over a pseudo-terminal in real time (or lockstep).

Timing rules are in simreal/mock/robot.py's docstring; this module reads frames, schedules their
replies and writes them.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import math
import os
import select
import time
from typing import Callable

import numpy as np

from simreal import protocol as P
from simreal.mock.faults import FaultSchedule, corrupt
from simreal.mock.robot import BURST_S, MockRobot
from simreal.mock.serving import ServeLoop, drain, set_nonblocking

# hook(request, reply bytes) -> [(delay_s, bytes), ...]: what goes on the wire instead (nothing, a
# damaged or late copy, two copies, garbage first). Driver tests use it for byte-level faults.
ReplyHook = Callable[[P.Frame, bytes], "list[tuple[float, bytes]]"]


# --------------------------------------------------------------------------- the serial side

class Server(ServeLoop):
    """Plays the link: reads requests from the pty master, serves them through MockRobot with the
    gap's latency, jitter and wire time, applies per-reply faults, writes the replies."""

    def __init__(self, robot: MockRobot, schedule: FaultSchedule, fd: int, *, seed: int = 0,
                 baudrate: int, link_timeout_s: float, stdin_fd: int | None = None,
                 duration: float | None = None, hook: ReplyHook | None = None):
        super().__init__()
        self.robot, self.schedule, self.fd, self.seed, self.hook = robot, schedule, fd, seed, hook
        self.lockstep = robot.options.lockstep
        self.byte_s = 10.0 / baudrate               # UART: start + 8 data + stop bits per byte
        self.link_timeout_s = link_timeout_s
        self.stdin_fd, self.duration = stdin_fd, duration
        # Streams of their own, so e.g. adding jitter does not change which replies are dropped.
        jitter_seq, fault_seq = np.random.SeedSequence([seed, 1]).spawn(2)
        self.jitter_rng, self.fault_rng = np.random.default_rng(jitter_seq), np.random.default_rng(fault_seq)
        self.decoder = P.FrameDecoder()
        self.queue: collections.deque[tuple[float, int, P.Frame | P.Error]] = collections.deque()
        self.writes: list[tuple[float, int, bytes]] = []   # (wall time due, seq, bytes)
        self._seq = itertools.count()
        self._last_due = 0.0
        self._last_write = 0.0          # replies leave in the order their requests arrived
        self._was_stalled = False
        self.counters = collections.Counter()
        self.max_lag_s = 0.0
        self.t0 = time.monotonic()
        set_nonblocking(fd)

    def now(self) -> float:
        return self.robot.clock if self.lockstep else time.monotonic() - self.t0

    def _iterate(self) -> None:
        # Input first: when this process was descheduled, requests already waiting must feed the
        # watchdog before it is checked (the host is not to blame for the mock's own delays).
        self._wait_and_read()
        robot = self.robot
        if self.duration is not None and time.monotonic() - self.t0 >= self.duration:
            self.stop_reason = "duration"
        if self.stop_reason:
            return
        if self.lockstep:
            robot.tick(robot.clock)
            self._check_stall()
        else:
            self._advance(self.now())
        if robot.disconnected:
            self.stop_reason = "disconnect"
            return
        self._flush_writes()

    def _wait_and_read(self) -> None:
        """Sleep until the next thing to do or until input arrives; read it."""
        robot = self.robot
        wake = self.writes[0][0] - self.t0 if self.writes else math.inf
        if self.duration is not None:
            wake = min(wake, self.duration)
        if not self.lockstep:
            due = min(self.queue[0][0] if self.queue else math.inf, robot.next_time())
            wake = min(wake, due, robot.clock + BURST_S)   # mock clock == wall clock here
        timeout = None if math.isinf(wake) else max(0.0, wake - (time.monotonic() - self.t0))
        rlist = [self._wake_r] + ([] if robot.stalled else [self.fd]) + \
            ([self.stdin_fd] if self.stdin_fd is not None else [])
        ready, _, _ = select.select(rlist, [], [], timeout)
        if self._wake_r in ready:
            drain(self._wake_r)
        if self.stdin_fd is not None and self.stdin_fd in ready and not os.read(self.stdin_fd, 4096):
            self.stop_reason = "stdin closed"
        if self.fd in ready:
            self._read()

    def _advance(self, now: float) -> None:
        """Real time: step physics, fire timers and serve due requests in time order, up to `now`."""
        robot = self.robot
        while True:
            t_next_step = robot.clock + robot.dt
            t_item = min(self.queue[0][0] if self.queue else math.inf, robot.next_time())
            if t_item <= now and t_item < t_next_step:
                t = max(t_item, robot.clock)
                robot.tick(t)
                self._check_stall()
                if robot.disconnected:
                    return
                while self.queue and self.queue[0][0] <= t:
                    _, tag, item = self.queue.popleft()
                    self._reply(tag, robot.handle(item, t) if isinstance(item, P.Frame) else item, t, item)
            elif t_next_step <= now:
                robot.step_physics()
            else:
                break
        self.max_lag_s = max(self.max_lag_s, time.monotonic() - self.t0 - robot.clock)

    def _check_stall(self) -> None:
        stalled = self.robot.stalled
        if stalled and not self._was_stalled:       # a stalled device loses what it was doing
            self.counters["lost_to_stall"] += len(self.queue) + len(self.writes)
            self.queue.clear()
            self.writes.clear()
        elif self._was_stalled and not stalled:     # ... and what piled up in its receive buffer
            self.counters["bytes_lost_to_stall"] += len(drain(self.fd))
            self.decoder.reset()
        self._was_stalled = stalled

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:          # cannot happen while we hold the slave open; be safe
            self.stop_reason = f"pty error: {exc}"
            return
        if not data:                    # a socket's peer closed (a pty never reads empty here)
            self.stop_reason = "peer closed"
            return
        self.counters["bytes_in"] += len(data)
        arrival = self.now()
        for item in self.decoder.feed(data):
            self._received(item, arrival)

    def _received(self, item: P.Frame | P.ProtocolError, arrival: float) -> None:
        """Queue a request (or the ERROR a bad but CRC-valid frame earns); stay silent on damage."""
        if isinstance(item, P.Frame):
            self.robot.note_request(item, arrival)
            tag, wire = item.tag, len(P.encode(item.msg, item.tag)) * self.byte_s
        elif item.tag is not None:      # the header passed its CRC: answer ERROR with the request's tag
            code = P.error_code_for(item)
            detail = f"this robot speaks protocol v{P.PROTOCOL_VERSION}" if code == P.ErrorCode.VERSION else str(item)
            tag, wire = item.tag, 0.0
            item = P.Error(code, item.msg_type, detail.encode()[:P.MAX_DETAIL].decode(errors="ignore"))
        else:
            return                      # CRC / framing / too long: never answered (protocol rule 5)
        if self.lockstep:
            self._reply(tag, self.robot.handle(item, self.robot.clock) if isinstance(item, P.Frame) else item,
                        self.robot.clock, item)
            return
        jitter = self.jitter_rng.uniform(0.0, self.robot.gap.jitter) if self.robot.gap.jitter else 0.0
        due = max(self._last_due, arrival + wire + self.robot.gap.latency + jitter)
        self._last_due = due
        self.queue.append((due, tag, item))

    def _reply(self, tag: int, msg: P.Message, t: float, request: P.Frame | P.Error) -> None:
        """Encode, apply this reply's fault draw and the hook, schedule the bytes (t = mock time it
        was served; request = the frame answered, or the ERROR a bad frame earned)."""
        data = P.encode(msg, tag)
        self.counters["replies"] += 1
        if isinstance(msg, P.Error):
            self.counters["errors_sent"] += 1
        due = time.monotonic() if self.lockstep else self.t0 + t + len(data) * self.byte_s
        due = self._last_write = max(due, self._last_write)   # a short reply never overtakes a long one
        fault = self.schedule.draw(self.fault_rng)
        if fault:
            setattr(self.robot.injected, fault, getattr(self.robot.injected, fault) + 1)
        if fault == "drop":
            return
        if fault == "corrupt":
            data = corrupt(data, self.fault_rng)
        if fault == "late":
            due += self.schedule.late_factor * self.link_timeout_s
        copies = [(0.0, data)] * (2 if fault == "dup" else 1)
        if self.hook is not None and isinstance(request, P.Frame):
            copies = [c for _, d in copies for c in self.hook(request, d)]
        for delay, chunk in copies:
            heapq.heappush(self.writes, (due + delay, next(self._seq), chunk))

    def _flush_writes(self) -> None:
        now = time.monotonic()
        while self.writes and self.writes[0][0] <= now:
            data = heapq.heappop(self.writes)[2]
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, OSError):
                n = 0                   # nobody reads: the bytes are lost, as on a wire
            self.counters["bytes_out"] += n
            self.counters["bytes_lost"] += len(data) - n

    def report(self) -> dict:
        r, sim = self.robot, self.robot.sim
        return {
            "robot": r.spec.name, "seed": self.seed, "lockstep": self.lockstep, "exit_reason": self.stop_reason,
            "clock_s": round(r.clock, 6), "wall_s": round(time.monotonic() - self.t0, 6),
            "sim_time_s": round(sim.time, 6), "physics_steps": r.steps, "max_lag_s": round(self.max_lag_s, 6),
            "requests": dict(r.requests), "link": dict(self.counters),
            "rx_decoder": dataclasses.asdict(self.decoder.stats),
            "injected": dataclasses.asdict(r.injected), "faults": self.schedule.text,
            "watchdog_trips": r.watchdog_trips, "falls": r.falls,
            "watchdog": [{"t": round(t, 6), "mode": m} for t, m in r.watchdog_log],
            "t0_monotonic": self.t0,      # mock time t is time.monotonic() == t0_monotonic + t (real time)
            "final": {"base_pos": sim.base_pos().round(5).tolist(),
                      "base_lin_vel": sim.base_lin_vel_world().round(5).tolist(),
                      "tilt_deg": round(math.degrees(sim.tilt()), 3), "fallen": r.fallen,
                      "status": r.status, "errors": r.errors},
        }


