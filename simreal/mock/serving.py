"""What every mock server shares: run `_iterate()` until a stop condition, wake on a signal or on
stop() from another thread (a self-pipe), and read a non-blocking descriptor dry."""
from __future__ import annotations

import fcntl
import os
import signal


def set_nonblocking(*fds: int) -> None:
    for fd in fds:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def drain(fd: int) -> bytes:
    """Everything readable now (b"" if nothing, or the peer is gone)."""
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, OSError):
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


class ServeLoop:
    """Subclasses implement `_iterate()` (wait on `_wake_r` among their descriptors, do one round)."""

    def __init__(self) -> None:
        self.stop_reason = ""
        self._wake_r, self._wake_w = os.pipe()
        set_nonblocking(self._wake_r, self._wake_w)

    def _iterate(self) -> None:
        raise NotImplementedError

    def serve(self, *, signals: bool = True) -> str:
        """Run until a stop condition; returns why it stopped. signals=False (serving from a thread,
        which cannot take signals): stop() ends it."""
        if signals:
            old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
            old_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            while not self.stop_reason:
                self._iterate()
        finally:
            if signals:
                signal.set_wakeup_fd(old_wakeup)
                for s, h in old.items():
                    signal.signal(s, h)
            os.close(self._wake_r)
            os.close(self._wake_w)
        return self.stop_reason

    def stop(self, reason: str = "stopped") -> None:
        """Ask serve() to return (from another thread)."""
        self.stop_reason = reason
        try:
            os.write(self._wake_w, b"!")
        except OSError:                 # serve() already returned and closed the pipe
            pass

    def _on_signal(self, signum: int, _frame) -> None:
        self.stop_reason = signal.Signals(signum).name
