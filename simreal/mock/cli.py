"""`simreal mock-robot`: a simulated robot behind a pseudo-terminal (import-light).

The same arguments serve `python -m simreal.mock.cli` (what spawn() runs).
"""
from __future__ import annotations

import argparse
import sys

from simreal.cliargs import nonnegative_float, nonnegative_int, positive_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("robot", nargs="?", default="quadruped", help="robot name or folder (default quadruped)")
    p.add_argument("--gap", default=None, metavar="PROFILE|key=value,...",
                   help="reality gap: a profile in configs/gap (nominal, worn, heavy, slippery), a YAML "
                        "file, key=value overrides on nominal, or PROFILE,key=value,... (default nominal)")
    p.add_argument("--faults", default=None, metavar="SPEC",
                   help="fault schedule, e.g. drop=0.02,corrupt=0.01,stall_at=5:0.5,disconnect_at=20 "
                        "(see simreal/mock/faults.py)")
    p.add_argument("--seed", type=int, default=0, help="seeds sensor noise, jitter and the fault draws")
    p.add_argument("--lockstep", action="store_true",
                   help="no real-time clock: each COMMAND advances exactly one control period "
                        "(deterministic, for unit tests); the watchdog is off")
    p.add_argument("--watchdog-ms", type=nonnegative_int, default=200,
                   help="damp, then torque off, when no valid request arrives for this long while torque "
                        "is on (0 = no watchdog; default 200)")
    p.add_argument("--watchdog-damp", type=nonnegative_float, default=0.3, metavar="S",
                   help="seconds of DAMP before the watchdog turns torque off (default 0.3)")
    p.add_argument("--link-timeout", type=positive_float, default=None, metavar="S",
                   help="the host's reply timeout that late=P:F multiplies (default: robot.yaml's serial timeout, sized from the frames)")
    p.add_argument("--uncalibrated", action="store_true",
                   help="report no joint calibration: TORQUE on is refused (faults.md D4)")
    p.add_argument("--hoisted", action="store_true",
                   help="the base hangs from a stand, feet in the air (for `simreal sysid record`)")
    p.add_argument("--held", action="store_true",
                   help="a person holds the base as it stands until torque goes on (a biped on a bus has no "
                        "SIM_RESET to stand it up)")
    p.add_argument("--duration", type=positive_float, default=None, metavar="S", help="exit by itself after S seconds")
    p.add_argument("--link-file", default=None, metavar="PATH", help="also write the port path here (atomic)")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="write the JSON report (injected faults, counters, ground truth) here on exit")
    p.add_argument("--stdin-lifeline", action="store_true",
                   help="exit when stdin reaches EOF (a parent that dies closes it)")
    p.add_argument("--list-gaps", action="store_true", help="list the named gap profiles and exit")
    p.add_argument("--bus", choices=["simreal", "feetech", "dynamixel"], default="simreal",
                   help="what the robot speaks: docs/protocol.md firmware (default), or bare bus servos "
                        "(Feetech STS / Dynamixel 2.0) with a BNO055 IMU on a second pty (`IMU_PORT ...` line)")
    p.add_argument("--missing-servo", type=nonnegative_int, action="append", metavar="ID",
                   help="bus modes: this servo id never answers (repeatable)")
    p.add_argument("--reversed-joint", action="append", metavar="JOINT",
                   help="bus modes: this joint's servo is mounted the other way round from bus.yaml (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mock-robot", help="simulate a robot (MuJoCo + reality gap + faults) on a "
                                          "pseudo-terminal; prints `PORT /dev/pts/N` first")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simreal.mock.process import run_from_args

    return run_from_args(args)


def main(argv: list[str] | None = None) -> int:
    """`python -m simreal.mock.cli`: the mock robot as its own process (what spawn() starts)."""
    parser = argparse.ArgumentParser(prog="python -m simreal.mock.cli",
                                     description="Simulated robot on a pseudo-terminal.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
