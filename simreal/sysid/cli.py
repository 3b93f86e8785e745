"""`simreal sysid record ROBOT --port PORT --out DIR` (import-light: registration only)."""
from __future__ import annotations

import argparse
import sys

from simreal.cliargs import positive_float


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sysid", help="system identification: record a scripted excitation on the robot or mock")
    ssub = p.add_subparsers(dest="sysid_command", metavar="COMMAND")
    r = ssub.add_parser("record", help="per-joint steps and chirps at bounded amplitude through the deploy "
                                       "runtime, logged with the commands sent and the states read")
    r.add_argument("robot", help="robot name or folder")
    r.add_argument("--port", required=True, help="serial port or pyserial URL (the mock: `simreal mock-robot --hoisted`)")
    r.add_argument("--out", required=True, metavar="DIR", help="new folder for the recording (never overwritten)")
    r.add_argument("--stance", choices=["hoisted", "standing"], default="hoisted",
                   help="how the robot is held: hoisted (base fixed, feet in the air; default) or standing")
    r.add_argument("--amplitude", type=positive_float, default=0.2, metavar="RAD", help="step and chirp amplitude (<= 0.5)")
    r.add_argument("--step-s", type=positive_float, default=0.6, metavar="S", help="length of each step")
    r.add_argument("--chirp-s", type=positive_float, default=3.0, metavar="S", help="length of each joint's chirp")
    r.add_argument("--yes", action="store_true", help="do not ask before turning torque on (real robots)")
    r.set_defaults(func=run_record)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_record(args: argparse.Namespace) -> int:
    from simreal.deploy.cli import confirm_torque, exit_code
    from simreal.deploy.plan import StartRefused
    from simreal.sysid.excitation import Excitation
    from simreal.sysid.record import record

    try:
        ex = Excitation(amplitude=args.amplitude, step_s=args.step_s, chirp_s=args.chirp_s)
    except ValueError as exc:
        raise StartRefused(f"--amplitude/--step-s/--chirp-s: {exc}; torque stays off") from None
    meta = record(args.robot, args.port, args.out, ex, stance=args.stance,
                  confirm=(lambda info: True) if args.yes else confirm_torque, notify=lambda s: print(s, file=sys.stderr))
    return exit_code(meta)
