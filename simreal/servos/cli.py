"""`simreal servos scan|set-id|set-baud` and `simreal calibrate` (import-light)."""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from simreal.cliargs import nonnegative_int, positive_int

BUSES = ["feetech", "dynamixel"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("servos", help="bare bus servos on the bench: list, renumber, change baud rate")
    ss = p.add_subparsers(dest="servos_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--port", required=True, help="the servo bus's serial port (a USB adapter, or a mock's PORT)")
        q.add_argument("--bus", choices=BUSES, default="feetech", help="servo protocol (default feetech)")
        q.add_argument("--baud", type=positive_int, default=1_000_000, help="the bus's current baud rate")

    q = ss.add_parser("scan", help="list the servos that answer: id, model, firmware")
    common(q)
    q.add_argument("--ids", default="0-253", metavar="A-B", help="ids to ping (default 0-253)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_scan)
    q = ss.add_parser("set-id", help="give one servo a new id (torque off; EEPROM)")
    common(q)
    q.add_argument("--id", type=nonnegative_int, required=True, help="its id now")
    q.add_argument("--new-id", type=nonnegative_int, required=True)
    q.set_defaults(func=run_set_id)
    q = ss.add_parser("set-baud", help="change one servo's baud rate (torque off; EEPROM)")
    common(q)
    q.add_argument("--id", type=nonnegative_int, required=True)
    q.add_argument("--new-baud", type=positive_int, required=True)
    q.set_defaults(func=run_set_baud)

    c = sub.add_parser("calibrate", help="record each joint's zero, direction and range into calibration.yaml "
                                         "(torque off; the operator poses and moves the robot)")
    c.add_argument("robot", help="robot name or folder (its bus.yaml and robot.yaml)")
    c.add_argument("--port", required=True, help="the servo bus's serial port")
    c.add_argument("--bus", choices=BUSES, default=None, help="default: bus.yaml's family")
    c.add_argument("--out", default=None, metavar="FILE", help="default robots/<name>/calibration.yaml")
    c.add_argument("--accept-directions", action="store_true",
                   help="record measured directions that disagree with bus.yaml instead of refusing")
    c.set_defaults(func=run_calibrate)


def _ids(text: str) -> list[int]:
    from simreal.errors import UserError

    try:
        a, _, b = text.partition("-")
        lo, hi = int(a), int(b or a)
    except ValueError:
        raise UserError(f"--ids {text!r}: give A-B, e.g. 1-12") from None
    if not 0 <= lo <= hi <= 253:
        raise UserError(f"--ids {text!r}: ids lie in 0-253")
    return list(range(lo, hi + 1))


def _bus(args):
    from simreal.deploy.driver import DriverError
    from simreal.errors import UserError
    from simreal.servos.bus import ServoBus

    bus = ServoBus(args.port, args.bus, baudrate=args.baud)
    try:
        bus.link.open()
    except DriverError as exc:
        raise UserError(f"--port: {exc}") from None
    return bus


def _refused(exc: Exception) -> int:
    print(f"simreal servos: {exc}", file=sys.stderr)
    return 2


def run_scan(args: argparse.Namespace) -> int:
    from simreal.deploy.driver import DriverError

    ids = _ids(args.ids)
    with _bus(args) as bus:
        try:
            found = bus.scan(ids)
        except DriverError as exc:
            return _refused(exc)
    if args.json:
        print(json.dumps([f.__dict__ for f in found]))
    else:
        for f in found:
            print(f"id {f.servo_id:3d}  {f.model:12s} (model number {f.model_number})  firmware {f.firmware}")
        print(f"{len(found)} servo(s) answered on {args.port} ({args.bus}, {args.baud} baud)", file=sys.stderr)
    return 0


def run_set_id(args: argparse.Namespace) -> int:
    from simreal.deploy.driver import DriverError

    with _bus(args) as bus:
        try:
            if bus.ping(args.id) is None:
                return _refused(f"no servo answers at id {args.id} on {args.port}")
            if bus.ping(args.new_id) is not None:
                return _refused(f"id {args.new_id} is already taken on {args.port}: nothing changed")
            bus.write_eeprom(args.id, "id", args.new_id)
            if bus.ping(args.new_id) is None:
                return _refused(f"servo {args.id} did not answer at its new id {args.new_id}")
        except DriverError as exc:
            return _refused(exc)
    print(f"servo {args.id} is now id {args.new_id}")
    return 0


def run_set_baud(args: argparse.Namespace) -> int:
    from simreal.deploy.driver import DriverError

    with _bus(args) as bus:
        try:
            code = bus.model.baud_code(args.new_baud)
        except ValueError as exc:
            return _refused(f"--new-baud: {exc}")
        try:
            if bus.ping(args.id) is None:
                return _refused(f"no servo answers at id {args.id} on {args.port}")
            bus.write_eeprom(args.id, "baud_rate", code)
        except DriverError as exc:
            return _refused(exc)
    print(f"servo {args.id} now talks at {args.new_baud} baud: scan with --baud {args.new_baud}")
    return 0


class KeyboardOperator:
    """The person at the robot, prompted on stderr and answering with Enter on stdin."""

    def __init__(self, period_s: float = 0.02):
        self.period_s = period_s
        self._done = threading.Event()

    def pose(self) -> None:
        input("  ... in the reference pose? press Enter ")

    def sweeping(self) -> bool:
        if not hasattr(self, "_thread"):
            print("  ... moving them now; press Enter when every joint has been through its range",
                  file=sys.stderr)
            self._thread = threading.Thread(target=lambda: (sys.stdin.readline(), self._done.set()), daemon=True)
            self._thread.start()
        time.sleep(self.period_s)
        return not self._done.is_set()


def run_calibrate(args: argparse.Namespace) -> int:
    from simreal.deploy.driver import DriverError
    from simreal.errors import UserError
    from simreal.hardware.wiring import BUS_FILE, calibration_path, for_family, load_wiring, save_calibration
    from simreal.robot.spec import load_robot
    from simreal.servos.bus import ServoBus
    from simreal.servos.calibrate import calibrate

    spec = load_robot(args.robot, check_mjcf=False)
    wiring = load_wiring(spec) if (spec.root / BUS_FILE).is_file() else None
    bus_name = args.bus or (wiring.family if wiring else None)
    if bus_name is None:
        raise UserError(f"{spec.root / BUS_FILE}: no such file; give --bus")
    if wiring is None or wiring.family != bus_name:
        wiring = for_family(bus_name, directions=wiring.directions if wiring else {})
    out = calibration_path(spec, args.out)
    bus = ServoBus(args.port, wiring.family, wiring.servo, baudrate=wiring.baudrate)
    try:
        bus.link.open()
    except DriverError as exc:
        raise UserError(f"--port: {exc}") from None
    with bus:
        try:
            cal = calibrate(bus, spec, wiring, KeyboardOperator(), accept_directions=args.accept_directions,
                            notify=lambda s: print(s, file=sys.stderr))
        except DriverError as exc:
            raise UserError(f"calibrate: {exc}; nothing written") from None
    save_calibration(cal, out)
    print(f"calibration of {spec.name} written to {out}")
    return 0
