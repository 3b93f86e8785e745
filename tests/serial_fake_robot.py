"""A small robot side of the simreal protocol for driver tests, with fault hooks.

Runs in a thread behind a pseudo-terminal (raw mode on both ends) or a TCP socket. It
answers every request like firmware would; `hook(frame, reply_bytes)` may replace what is
written with a list of (delay_s, bytes): nothing (stall), a damaged copy, a late copy,
two copies, garbage first. The real mock robot (simreal mock-robot) lives in the package.
"""
from __future__ import annotations

import fcntl
import heapq
import itertools
import os
import select
import socket
import threading
import time
import tty
from typing import Callable

from simreal import protocol as P

QUAD_JOINTS = tuple(f"{leg}_{part}" for leg in ("FL", "FR", "RL", "RR") for part in ("hip", "thigh", "calf"))

Hook = Callable[[P.Frame, bytes], "list[tuple[float, bytes]]"]


class FakeRobot:
    def __init__(self, joint_names: tuple[str, ...] = QUAD_JOINTS, *, robot_name: str = "fake",
                 simulated: bool = True, version: int = P.PROTOCOL_VERSION, transport: str = "pty",
                 hook: Hook | None = None):
        self.joint_names = tuple(joint_names)
        self.robot_name = robot_name
        self.simulated = simulated
        self.version = version
        self.hook = hook
        self.reading = True                 # False: stop reading (a stalled device)
        self.q = [0.0] * len(joint_names)
        self.status = P.Status.CALIBRATED | (P.Status.SIMULATED if simulated else 0)
        self.errors = 0
        self.fault_joints = 0
        self.clock_us = 0
        self.received: list[P.Frame] = []
        self.decoder = P.FrameDecoder()
        self._pending: list[tuple[float, int, bytes]] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._fd: int | None = None
        self._fds: list[int] = []               # closed on close()
        self._sockets: list[socket.socket] = []
        if transport == "pty":
            master, slave = os.openpty()
            tty.setraw(master)
            tty.setraw(slave)
            self.url = os.ttyname(slave)
            self._fds += [master, slave]    # keeping the slave open: the master never sees a hang-up
            self._set_fd(master)
            self._listener = None
        else:
            self._listener = socket.create_server(("127.0.0.1", 0))
            self._sockets.append(self._listener)
            self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # ---- robot behaviour

    def reply_to(self, frame: P.Frame) -> P.Message:
        m = frame.msg
        if isinstance(m, P.Hello):
            caps = P.Capability.GAINS | (P.Capability.SIMULATED if self.simulated else 0)
            return P.Info(self.robot_name, self.joint_names, (1, 2, 3), P.PROTOCOL_VERSION, 500, caps)
        if isinstance(m, P.Heartbeat):
            return P.HeartbeatAck(self.clock_us, self.status, self.errors)
        if isinstance(m, (P.SimReset, P.SimGetGroundTruth)) and not self.simulated:
            return P.Error(P.ErrorCode.UNSUPPORTED, m.TYPE, "not a simulator")
        if isinstance(m, P.SimGetGroundTruth):
            return P.SimGroundTruth(self.clock_us * 1e-6, (0.0, 0.0, 0.25), (1.0, 0.0, 0.0, 0.0),
                                    (0.5, 0.0, 0.0), (0.0, 0.0, 0.0), False)
        if isinstance(m, P.Command):
            self.q = list(m.q)
        elif isinstance(m, P.Torque):
            self.status = (self.status | P.Status.TORQUE_ON) if m.enable else (self.status & ~P.Status.TORQUE_ON)
        elif isinstance(m, P.SimReset) and m.q is not None:
            self.q = list(m.q)
        return self.state()

    def state(self) -> P.State:
        self.clock_us += 1000
        # dq = 2 q: tests can check that velocities are permuted with positions.
        return P.State(self.clock_us, int(self.status), self.errors, self.fault_joints, tuple(self.q),
                       tuple(2 * v for v in self.q), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.75))

    # ---- I/O thread

    def _set_fd(self, fd: int) -> None:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._fd = fd

    def send(self, data: bytes, delay: float = 0.0) -> None:
        heapq.heappush(self._pending, (time.monotonic() + delay, next(self._seq), data))

    def _run(self) -> None:
        if self._listener is not None:
            self._listener.settimeout(0.1)
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                self._sockets.append(conn)
                self._set_fd(conn.fileno())
                break
        while not self._stop.is_set():
            now = time.monotonic()
            while self._pending and self._pending[0][0] <= now:
                data = heapq.heappop(self._pending)[2]
                try:
                    os.write(self._fd, data)
                except (BlockingIOError, OSError):
                    pass                      # nobody reads: the bytes are lost, like on a wire
            wait = min(0.02, self._pending[0][0] - now) if self._pending else 0.02
            if not self.reading:
                time.sleep(max(wait, 0.0))
                continue
            try:
                ready, _, _ = select.select([self._fd], [], [], max(wait, 0.0))
                data = os.read(self._fd, 4096) if ready else b""
            except OSError:
                return
            for item in self.decoder.feed(data):
                if isinstance(item, P.Frame):
                    self.received.append(item)
                    reply = P.encode(self.reply_to(item), item.tag, version=self.version)
                    actions = self.hook(item, reply) if self.hook else [(0.0, reply)]
                    for delay, chunk in actions:
                        self.send(chunk, delay)

    # ---- lifecycle

    def unplug(self) -> None:
        """The device vanishes: the host's next read sees EIO / no data."""
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in self._fds:
            os.close(fd)
        for sock in self._sockets:
            sock.close()
        self._fds, self._sockets, self._fd = [], [], None

    def __enter__(self) -> FakeRobot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def received_of(robot: FakeRobot, kind: type) -> list[P.Frame]:
    return [f for f in robot.received if isinstance(f.msg, kind)]
