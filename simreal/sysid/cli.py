"""`simreal sysid record|fit` and `simreal gap` (import-light: registration only)."""
from __future__ import annotations

import argparse
import sys

from simreal.cliargs import nonnegative_float, nonnegative_int, positive_float


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
    f = ssub.add_parser("fit", help="identify servo gains and action delay from a hoisted recording "
                                    "(mujoco.sysid), with 95%% intervals; print the fitted randomization diff")
    f.add_argument("recording", metavar="DIR", help="a `simreal sysid record` folder")
    f.add_argument("--robot", required=True, help="robot name or folder whose robot.yaml the ranges are for")
    f.add_argument("--json", action="store_true", help="print the result as JSON")
    f.add_argument("--write", action="store_true", help="apply the fitted ranges to robot.yaml")
    f.add_argument("--max-delay", type=nonnegative_int, default=2, metavar="STEPS",
                   help="longest action delay searched, in control steps (default 2; each step more costs "
                        "one fit per physics substep)")
    f.set_defaults(func=run_fit)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    g = sub.add_parser("gap", help="the same policy and command on the robot (or mock) and in simulation: "
                                   "velocity, heading, falls, per-joint lag, observation distance")
    g.add_argument("bundle", help="policy bundle folder")
    g.add_argument("--port", required=True, help="serial port or pyserial URL (the mock: `simreal mock-robot`)")
    g.add_argument("--duration", type=positive_float, default=10.0, metavar="S", help="policy seconds (default 10)")
    g.add_argument("--command", default=None, metavar="VX,YAW", help="velocity command, as for deploy")
    g.add_argument("--heading-hold", type=nonnegative_float, default=None, metavar="GAIN",
                   help="heading hold on both sides, as for deploy (0 = off; default: the bundle's trained gain)")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="new folder for gap.json, the robot log, the sim trace and joints.png")
    g.add_argument("--json", action="store_true", help="print the comparison as JSON")
    g.add_argument("--allow-pipeline-mismatch", action="store_true",
                   help="run a bundle trained with a different action pipeline (as for deploy)")
    g.add_argument("--yes", action="store_true", help="do not ask before turning torque on (real robots)")
    g.set_defaults(func=run_gap)


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


def run_fit(args: argparse.Namespace) -> int:
    import json

    from simreal.errors import UserError
    from simreal.robot.spec import load_robot
    from simreal.sysid import ranges
    from simreal.sysid.fit import fit
    from simreal.sysid.recording import RecordingError, load_recording

    try:
        spec = load_robot(args.robot)
    except (KeyError, ValueError) as exc:
        raise UserError(f"--robot {args.robot}: {exc}") from None
    rec = load_recording(args.recording)
    if rec.robot != spec.name:
        raise RecordingError(f"{args.recording}: recorded on robot {rec.robot!r}, --robot is {spec.name!r}")
    result = fit(spec, rec, max_delay=args.max_delay)
    fitted = ranges.fitted_ranges(result)
    path = spec.root / "robot.yaml"
    try:
        new = ranges.updated_yaml(path.read_text(), fitted)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    if args.json:
        print(json.dumps({**result.to_dict(), "ranges": fitted, "robot_yaml": str(path), "written": args.write}))
    else:
        for e in result.estimates:
            print(f"{e.name}: {e.value:.4f} +- {e.ci95:.4f} (95%)"
                  + ("" if e.identified else "; not identified by this recording: its range stays as it is"))
        print(f"command -> actuation delay: {result.delay_s * 1e3:.0f} ms ({result.delay_physics_steps} physics steps; "
              f"action latency {result.action_latency_steps} control steps); rms by delay, rad: "
              + ", ".join(f"{v:.1e}" for v in result.rms_by_delay) + f"; nominal model {result.rms_nominal_rad:.1e}")
        print(ranges.diff(path, new) or "robot.yaml: no change", end="")
    if args.write:
        try:
            ranges.write(path, new)
        except OSError as exc:
            raise UserError(f"--write {path}: {exc.strerror or exc}") from None
        print(f"wrote {path}", file=sys.stderr)
    elif not args.json:
        print("(not written: pass --write to apply)", file=sys.stderr)
    return 0


def run_gap(args: argparse.Namespace) -> int:
    import json

    from simreal.deploy.cli import confirm_torque, exit_code
    from simreal.sysid.gap import format_report, gap

    rep = gap(args.bundle, args.port, duration_s=args.duration, command=args.command, out=args.out,
              confirm=(lambda info: True) if args.yes else confirm_torque,
              allow_pipeline_mismatch=args.allow_pipeline_mismatch, heading_hold=args.heading_hold,
              notify=lambda s: print(s, file=sys.stderr))
    print(json.dumps(rep) if args.json else format_report(rep))
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return exit_code(rep)        # a safe stop on the robot: 1 (130 for a signal), as for deploy
