"""The mock robot served from a thread of this process, over a real pseudo-terminal (or TCP).

    robot = MockRobot(spec, gap, FaultSchedule(), options=RobotOptions(lockstep=True))
    with ThreadedMock(robot, hook=...) as mock:
        driver = SerialDriver(mock.url)

The same Server as `simreal mock-robot`, so the host sees the same bytes with the same timing
rules; what a thread adds over spawn() is access from the test: `exchanges` (each request the
robot answered, with the reply it encoded before any fault or hook), `write_raw()` (bytes the
robot sends unasked, e.g. boot text) and `unplug()` (the device vanishes: the host's next read
fails). Driver tests use it for byte-level faults through `hook` (simreal.mock.server.ReplyHook);
LoopbackPort is the choice when no real file descriptor or wall-clock timing is needed.
"""
from __future__ import annotations

import os
import socket
import threading
import tty

from simreal import protocol as P
from simreal.mock.faults import FaultSchedule
from simreal.mock.robot import MockRobot
from simreal.mock.server import ReplyHook, Server


class ThreadedMock:
    def __init__(self, robot: MockRobot, schedule: FaultSchedule | None = None, *, transport: str = "pty",
                 hook: ReplyHook | None = None, seed: int = 0, baudrate: int = 1_000_000,
                 link_timeout_s: float = 0.05):
        if transport not in ("pty", "tcp"):
            raise ValueError(f"transport must be 'pty' or 'tcp', not {transport!r}")
        self.robot, self.user_hook = robot, hook
        self.exchanges: list[tuple[P.Frame, bytes]] = []
        self._server_args = dict(seed=seed, baudrate=baudrate, link_timeout_s=link_timeout_s, hook=self._hook)
        self._schedule = schedule or FaultSchedule()
        self._fds: list[int] = []
        self._sockets: list[socket.socket] = []
        self._server: Server | None = None
        self._stopped = threading.Event()
        if transport == "pty":
            master, slave = os.openpty()
            tty.setraw(master)
            tty.setraw(slave)
            self.url = os.ttyname(slave)
            self._fds += [master, slave]    # the slave kept open: the master never sees a hang-up
            self._server = Server(robot, self._schedule, master, **self._server_args)
            self._listener = None
        else:
            self._listener = socket.create_server(("127.0.0.1", 0))
            self._sockets.append(self._listener)
            self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, name="mock-robot", daemon=True)
        self._thread.start()

    def _hook(self, request: P.Frame, reply: bytes) -> list[tuple[float, bytes]]:
        self.exchanges.append((request, reply))
        return self.user_hook(request, reply) if self.user_hook else [(0.0, reply)]

    def _run(self) -> None:
        if self._listener is not None:       # TCP: serve the first host that connects
            self._listener.settimeout(0.1)
            while not self._stopped.is_set():
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                self._sockets.append(conn)
                self._server = Server(self.robot, self._schedule, conn.fileno(), **self._server_args)
                break
        if self._server is not None and not self._stopped.is_set():
            self._server.serve(signals=False)

    # ---- what a test sees and does

    def received(self, kind: type | None = None) -> list[P.Frame]:
        """The requests the robot answered (of one message type), in order."""
        return [f for f, _ in self.exchanges if kind is None or isinstance(f.msg, kind)]

    def last_reply(self) -> P.Message:
        """The message the robot last encoded (before faults or the hook)."""
        return P.decode(self.exchanges[-1][1]).msg

    def write_raw(self, data: bytes) -> None:
        """Bytes the robot sends unasked (pty only): boot text, a stale frame."""
        os.write(self._fds[0], data)

    def unplug(self) -> None:
        """The device vanishes: the server stops and the pty closes; the host's next read fails."""
        self.close()

    def close(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.stop("closed")
        self._thread.join(timeout=5)
        for fd in self._fds:
            os.close(fd)
        for sock in self._sockets:
            sock.close()
        self._fds, self._sockets = [], []

    def __enter__(self) -> ThreadedMock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
