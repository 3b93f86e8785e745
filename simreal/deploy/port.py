"""Opening a port and writing to it: the bottom of the link, below fault injection and the driver.

`open_serial` opens any pyserial URL (a device, a pty, `socket://`, `loop://`) and turns failures
into PortBusy / PortError naming the port; `write_all` writes a whole frame within a timeout.
DriverError, the base of every link error, lives here because opening is where the first can occur.
"""
from __future__ import annotations

import errno
import os
import select
import time
from typing import TYPE_CHECKING, Any

import serial  # pyserial: light to import; keeps `simreal --help` fast

if TYPE_CHECKING:
    from simreal.deploy.driver import LinkConfig


class DriverError(Exception):
    """Anything the link reports that the runtime must treat as a fault."""


class PortError(DriverError):
    """The port could not be opened."""


class PortBusy(PortError):
    """Another process holds the port (exclusive access is advisory: only cooperating openers see it)."""


def open_serial(url: str, config: "LinkConfig") -> Any:
    """Open any pyserial URL; failures become PortBusy / PortError naming the port."""
    try:
        return serial.serial_for_url(url, baudrate=config.baudrate, timeout=config.timeout_s,
                                     write_timeout=config.write_timeout_s, exclusive=config.exclusive)
    except serial.SerialException as exc:
        if getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "lock" in str(exc):
            raise PortBusy(f"port {url} is in use by another process (another deploy, a serial console?): "
                           "close it first") from exc
        raise PortError(f"cannot open port {url}: {_why(exc)}") from exc
    except (OSError, ValueError) as exc:
        raise PortError(f"cannot open port {url}: {_why(exc)}") from exc


def _why(exc: BaseException) -> str:
    """The OS's reason ("No such file or directory") rather than pyserial's nested message."""
    code = getattr(exc, "errno", None)
    if not (isinstance(code, int) and code > 0):
        return str(exc)
    hint = {errno.ENOENT: " (is the robot connected? `simreal mock-robot` prints a mock's port)",
            errno.EACCES: " (is your user in the port's group, e.g. dialout?)"}.get(code, "")
    return os.strerror(code) + hint


def write_all(port: Any, data: bytes, timeout_s: float) -> None:
    """Write all of `data` within `timeout_s`, else raise serial.SerialTimeoutException.

    On OS-level ports this writes to the (non-blocking) descriptor itself: pyserial's POSIX write
    raises its write timeout even after every byte went out whenever the process was descheduled
    for longer than the timeout, a false fault on a loaded machine. Other ports use port.write.
    """
    fd = _fd_of(port)
    if fd is None:
        port.write(data)
        return
    left = memoryview(data)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left = left[os.write(fd, left):]
        except BlockingIOError:
            pass
        if not left:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
            raise serial.SerialTimeoutException(f"{len(left)} of {len(data)} bytes unsent")


def _fd_of(port: Any) -> int | None:
    """The OS descriptor behind a pyserial port, or None (socket://, loop://, wrappers)."""
    if not isinstance(port, serial.Serial):      # the platform's native class; URL handlers are not
        return None
    try:
        return port.fileno()
    except (AttributeError, OSError, ValueError):
        return None
