"""The mock robot as a process: `simreal mock-robot` (run_from_args, main) and spawn() for tests and demos."""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


from simreal.mock.faults import parse_faults
from simreal.errors import UserError
from simreal.files import write_atomic

from simreal.mock.robot import PORT_PREFIX, MockRobot, RobotOptions

IMU_PREFIX = "IMU_PORT "
from simreal.mock.server import Server


# --------------------------------------------------------------------------- process entry points

def run_from_args(args: argparse.Namespace) -> int:
    from simreal.mock.gap import GapError, gap_file, list_gaps, load_gap
    from simreal.robot.spec import load_robot
    from simreal.yamlfiles import read_mapping

    if args.list_gaps:
        for name in list_gaps():
            print(f"{name:10s} {read_mapping(gap_file(name), GapError).get('description', '')}")
        return 0
    try:
        spec = load_robot(args.robot)
        label, gap = load_gap(args.gap)
        schedule = parse_faults(args.faults)
        options = RobotOptions(watchdog_s=0.0 if args.lockstep else args.watchdog_ms / 1000,
                               watchdog_damp_s=args.watchdog_damp, calibrated=not args.uncalibrated,
                               lockstep=args.lockstep, hoisted=args.hoisted)
        if args.bus != "simreal":
            return _serve_bus(args, spec, label, gap, schedule)
        robot = MockRobot(spec, gap, schedule, args.seed, options)
    except (ValueError, KeyError) as exc:      # RobotSpecError, GapError, FaultSpecError, unknown robot
        print(f"simreal mock-robot: {exc}", file=sys.stderr)
        return 2
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    port = os.ttyname(slave)     # we keep the slave open too: hosts may come and go without a hang-up
    if args.link_file:                          # before the PORT line: once announced, both exist
        write_atomic(Path(args.link_file), (port + "\n").encode())
    print(f"{PORT_PREFIX}{port}", flush=True)
    print(f"mock robot {spec.name} on {port} (gap {label}, faults {args.faults or 'none'}, seed {args.seed}, "
          f"{'lockstep' if args.lockstep else 'real time'}); SIGTERM or Ctrl-C stops it", file=sys.stderr, flush=True)
    server = Server(robot, schedule, master, seed=args.seed,
                    baudrate=gap.baudrate or spec.serial.baudrate,
                    link_timeout_s=args.link_timeout or spec.serial.attempt_timeout(spec.n_joints),
                    stdin_fd=sys.stdin.fileno() if args.stdin_lifeline else None, duration=args.duration)
    server.serve()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):     # stopping already: finish the report
        signal.signal(sig, signal.SIG_IGN)
    os.close(master)                            # the port vanishes first, as an unplugged robot's would
    os.close(slave)
    if args.link_file and Path(args.link_file).is_file() and Path(args.link_file).read_text().strip() == port:
        os.unlink(args.link_file)               # never leave a path to a dead port behind
    text = json.dumps({**server.report(), "gap": label, "gap_profile": gap.model_dump(mode="json"),
                       "port": port})
    if args.report:
        write_atomic(Path(args.report), text.encode())
    print(f"REPORT {text}", file=sys.stderr, flush=True)
    return 0


def bus_mock(spec, gap, schedule, *, bus: str, seed: int = 0, lockstep: bool = False, hoisted: bool = False,
             held: bool = False, missing=(), reversed_joints=()):
    """(MockRobot, ServoBusFirmware) for a bus mode: the robot's own bus.yaml when it names this
    family, else the family's default model at 1 Mbps. Feetech firmware slews its target (the
    gap's target_slew, default the model's max speed)."""
    from simreal.hardware.wiring import BUS_FILE, for_family, load_wiring
    from simreal.mock.bus_firmware import Assembly, ServoBusFirmware

    wiring = None
    if (Path(spec.root) / BUS_FILE).is_file():
        wiring = load_wiring(spec)
    if wiring is None or wiring.family != bus:
        wiring = for_family(bus, directions=wiring.directions if wiring else {})
    if bus == "feetech" and not gap.target_slew:
        gap = gap.model_copy(update={"target_slew": wiring.servo.max_speed})
    options = RobotOptions(watchdog_s=0.0, lockstep=lockstep, simulated=False, hoisted=hoisted, held=held)
    robot = MockRobot(spec, gap, schedule, seed, options)
    return robot, ServoBusFirmware(robot, wiring, Assembly.of(spec, wiring, missing=missing,
                                                              reversed_joints=reversed_joints))


def _serve_bus(args: argparse.Namespace, spec, label: str, gap, schedule) -> int:
    from simreal.mock.bus_server import BusServer, open_pty

    robot, fw = bus_mock(spec, gap, schedule, bus=args.bus, seed=args.seed, lockstep=args.lockstep,
                         hoisted=args.hoisted, held=args.held, missing=args.missing_servo or (),
                         reversed_joints=args.reversed_joint or ())
    bus_m, bus_s, port = open_pty()
    imu_m, imu_s, imu_port = open_pty()
    if args.link_file:
        write_atomic(Path(args.link_file), (port + "\n").encode())
    print(f"{PORT_PREFIX}{port}", flush=True)
    print(f"{IMU_PREFIX}{imu_port}", flush=True)
    print(f"mock robot {spec.name} as a {fw.model.name} bus ({args.bus}, {fw.wiring.baudrate} baud) on {port}, "
          f"BNO055 IMU on {imu_port} (gap {label}, seed {args.seed}, {'lockstep' if args.lockstep else 'real time'})",
          file=sys.stderr, flush=True)
    server = BusServer(robot, fw, bus_m, imu_m, schedule=schedule, seed=args.seed,
                       link_timeout_s=args.link_timeout or fw.wiring.timeout, duration=args.duration,
                       stdin_fd=sys.stdin.fileno() if args.stdin_lifeline else None)
    server.serve()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    for fd in (bus_m, bus_s, imu_m, imu_s):
        os.close(fd)
    if args.link_file and Path(args.link_file).is_file() and Path(args.link_file).read_text().strip() == port:
        os.unlink(args.link_file)
    text = json.dumps({**server.report(), "gap": label, "port": port, "imu_port": imu_port})
    if args.report:
        write_atomic(Path(args.report), text.encode())
    print(f"REPORT {text}", file=sys.stderr, flush=True)
    return 0


# --------------------------------------------------------------------------- for tests and demos

class MockError(UserError, RuntimeError):
    """The mock process did not start (its stderr is in the message)."""


@dataclass
class MockProcess:
    """A running `simreal mock-robot` subprocess. Use as a context manager; `stop()` is idempotent."""
    port: str
    proc: subprocess.Popen
    report_path: Path
    stderr_path: Path
    _tmp: tempfile.TemporaryDirectory
    imu_port: str = ""               # bus modes: the BNO055's pseudo-terminal

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait (SIGKILL after `timeout`); returns the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f and not f.closed:
                f.close()
        return self.proc.returncode

    def report(self) -> dict:
        """The JSON report; stops the process first if it is still running."""
        self.stop()
        try:
            return json.loads(self.report_path.read_text())
        except FileNotFoundError:
            raise MockError(f"mock robot wrote no report (exit {self.proc.returncode}):\n{self.stderr()}") from None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def __enter__(self) -> MockProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._tmp.cleanup()


def spawn(robot: str = "quadruped", *, gap: str | None = None, faults: str | None = None, seed: int = 0,
          lockstep: bool = False, watchdog_ms: int | None = None, extra_args: Sequence[str] = (),
          startup_timeout: float = 60.0, bus: str | None = None) -> MockProcess:
    """Start `python -m simreal.mock.cli` and wait for its port.

    The child dies with the parent (--stdin-lifeline). Raises MockError (with the child's stderr)
    when it exits or stays silent instead of printing its port.
    """
    tmp = tempfile.TemporaryDirectory(prefix="simreal-mock-")
    report, err_path = Path(tmp.name) / "report.json", Path(tmp.name) / "stderr.txt"
    cmd = [sys.executable, "-m", "simreal.mock.cli", robot, "--seed", str(seed),
           "--report", str(report), "--stdin-lifeline"]
    for flag, value in (("--gap", gap), ("--faults", faults), ("--watchdog-ms", watchdog_ms)):
        if value is not None:
            cmd += [flag, str(value)]
    cmd += ["--lockstep"] if lockstep else []
    cmd += ["--bus", bus] if bus else []
    cmd += list(extra_args)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
    mock = MockProcess("", proc, report, err_path, tmp)
    deadline = time.monotonic() + startup_timeout
    for prefix in (PORT_PREFIX, IMU_PREFIX) if bus and bus != "simreal" else (PORT_PREFIX,):
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready = select.select([proc.stdout], [], [], max(0.0, remaining))[0] if remaining > 0 else []
            chunk = os.read(proc.stdout.fileno(), 1) if ready else b""
            if not chunk:
                why = "exited" if proc.poll() is not None else f"printed no port within {startup_timeout:g} s"
                mock.stop()
                text = mock.stderr()
                tmp.cleanup()
                raise MockError(f"mock robot {why} (exit {proc.returncode}): {' '.join(cmd)}\n{text}")
            line += chunk
        value = line.decode().strip().removeprefix(prefix)
        if prefix == PORT_PREFIX:
            mock.port = value
        else:
            mock.imu_port = value
    return mock

