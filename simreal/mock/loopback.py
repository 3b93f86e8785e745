"""The mock robot in this process, behind a pyserial-like port: the same bytes as over a pty.

    robot = MockRobot(spec, gap, parse_faults("tilt_at=0.5:90"), options=RobotOptions(lockstep=True))
    port = LoopbackPort(robot)
    driver = SerialDriver("loopback", joint_names=..., opener=lambda url, cfg: port)

Every request the host writes is decoded by the protocol's FrameDecoder, served by
MockRobot.handle at the mock's clock (lockstep: each COMMAND advances one control period) and
its reply encoded back, so unit tests of the runtime exercise the driver and the codec too, with
no thread, pty or subprocess. `wire` records the requests in order; `hook(request, reply)` may
replace a reply message (a robot that says something else); `on_request(msg)` lets a test
advance a fake clock per transaction; `wait(s)` is how a read with nothing to read passes time.
A disconnected or stalled mock behaves as over a pty: the port fails, or nothing comes back.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from simreal import protocol as P
from simreal.mock.robot import MockRobot


class LoopbackPort:
    """pyserial's Serial subset that SerialDriver uses: write, read, in_waiting, reset_input_buffer, close."""

    def __init__(self, robot: MockRobot, *, hook: Callable[[P.Message, P.Message], P.Message] | None = None,
                 on_request: Callable[[P.Message], None] | None = None,
                 wait: Callable[[float], None] = time.sleep):
        self.robot, self.hook, self.on_request, self.wait = robot, hook, on_request, wait
        self.decoder = P.FrameDecoder()
        self.rx = bytearray()
        self.wire: list[tuple[str, Any]] = []     # (request type, what it asked) in order
        self.timeout: float | None = None
        self.write_timeout: float | None = None
        self.is_open = True

    # ---- pyserial's side

    def write(self, data: bytes) -> int:
        self._check_link()
        for item in self.decoder.feed(bytes(data)):
            if isinstance(item, P.Frame):
                self._serve(item)
        return len(data)

    @property
    def in_waiting(self) -> int:
        self._check_link()
        return len(self.rx)

    def read(self, n: int = 1) -> bytes:
        self._check_link()
        if not self.rx and self.timeout:
            self.wait(self.timeout)        # nothing is coming: the host waits its timeout out
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def reset_input_buffer(self) -> None:
        self.rx.clear()

    def close(self) -> None:
        self.is_open = False

    # ---- the robot's side

    def _check_link(self) -> None:
        if self.robot.disconnected or not self.is_open:
            raise OSError(5, "Input/output error (the mock robot is gone)")

    def _serve(self, frame: P.Frame) -> None:
        robot, msg = self.robot, frame.msg
        self.wire.append((msg.TYPE.name, _what(msg)))
        if self.on_request is not None:
            self.on_request(msg)
        robot.tick(robot.clock)
        if robot.stalled or robot.disconnected:
            return                          # a stalled device reads nothing and answers nothing
        robot.note_request(frame, robot.clock)
        reply = robot.handle(frame, robot.clock)
        if self.hook is not None:
            reply = self.hook(msg, reply)
        if reply is not None and not robot.disconnected:
            self.rx += P.encode(reply, frame.tag)

    def commands(self) -> list[tuple[float, ...]]:
        """Joint targets of every COMMAND the host sent, in order."""
        return [what[0] for kind, what in self.wire if kind == "COMMAND"]


def _what(msg: P.Message) -> Any:
    if isinstance(msg, P.Command):
        return (tuple(msg.q), None if msg.kp_scale is None else tuple(msg.kp_scale))
    if isinstance(msg, P.Torque):
        return bool(msg.enable)
    return None
