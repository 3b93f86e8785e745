"""`simreal deploy`, `simreal demo`, `simreal log` (and `simreal mock-robot`, from mock_cli).

Import-light: everything heavy is imported inside the command functions.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from simreal.cliargs import nonnegative_float, nonnegative_int, positive_float
from simreal.errors import EXIT_INTERRUPTED

DEPLOY_EPILOG = """\
examples:
  simreal mock-robot quadruped &                      # prints PORT /dev/pts/N
  simreal deploy assets/policies/quadruped --port /dev/pts/N --duration 10
  simreal deploy BUNDLE --port /dev/ttyUSB0 --command vx=0.3 --log run.jsonl
  printf '0.3 0\\n0.5 0\\n' | simreal deploy BUNDLE --port PORT --command-stream
exit codes: 0 ran and stopped cleanly, 1 a safety stop, 2 refused or bad input (torque never on,
no log written if the port never opened), 130 stopped by Ctrl-C / SIGTERM (after torque on: safe
stop done; during the handshake or the prompt: torque never on)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="run a policy bundle on a robot (or mock robot) over a serial port",
                       epilog=DEPLOY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Handshake, check the bundle against the robot, soft start, then run the "
                                   "policy at the bundle's rate behind the safety layer; every cycle is logged.")
    p.add_argument("bundle", metavar="BUNDLE", help="policy bundle folder (policy.json + policy.onnx)")
    p.add_argument("--port", required=True, help="serial port or pyserial URL (a mock robot prints its port)")
    p.add_argument("--duration", type=nonnegative_float, default=10.0, metavar="S",
                   help="seconds of policy control after the soft start (0 = until Ctrl-C; default 10)")
    p.add_argument("--rate", type=positive_float, default=None, metavar="HZ",
                   help="control rate (default: the bundle's control period)")
    p.add_argument("--log", default=None, metavar="FILE", help="run log (JSONL; default runs/deploy/ROBOT-TIME.jsonl)")
    p.add_argument("--command", default=None, metavar="vx=V,yaw=W",
                   help="fixed velocity command (default: the middle of the trained range)")
    p.add_argument("--command-stream", action="store_true",
                   help="read 'VX [YAW]' lines from stdin; zero velocity when none arrives for "
                        "--command-timeout seconds")
    p.add_argument("--command-timeout", type=positive_float, default=0.5, metavar="S",
                   help="with --command-stream: seconds without a line before zero velocity (default 0.5)")
    p.add_argument("--heading-hold", type=nonnegative_float, default=None, metavar="GAIN",
                   help="steer the yaw command back to the starting heading (plus the commanded turn): "
                        "(rad/s) per rad of heading error, inside the trained yaw range; 0 = off "
                        "(default: the gain the bundle was trained with, policy.json heading_hold)")
    p.add_argument("--soft-start", type=positive_float, default=1.0, metavar="S", help="ramp to the default pose (default 1)")
    p.add_argument("--pipelined", action="store_true",
                   help="one transaction per cycle (observe the last COMMAND's reply): for high rates")
    p.add_argument("--truth-every", type=nonnegative_int, default=5, metavar="N",
                   help="mock robots: ground truth every N cycles for the log (0 = start and end only)")
    p.add_argument("--reset-sim", action="store_true",
                   help="simulated robots only: after the handshake, put the robot back at its default pose "
                        "standing (the protocol's SIM_RESET) before pre-flight; refused on hardware")
    p.add_argument("--clear-errors", action="store_true",
                   help="the explicit reset: clear the robot's latched errors / e-stop before starting")
    p.add_argument("--realtime", action="store_true",
                   help="run the loop at real-time priority (SCHED_FIFO, else nice -10; needs root or "
                        "CAP_SYS_NICE, otherwise unchanged) so a busy host does not delay it")
    p.add_argument("--yes", action="store_true", help="do not ask before turning torque on (real robots)")
    p.add_argument("--allow-hash-mismatch", action="store_true",
                   help="accept a bundle whose robot files changed since training")
    p.add_argument("--allow-pipeline-mismatch", action="store_true",
                   help="run a bundle trained with another per-cycle target change limit (or none)")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "numpy"], default="auto")
    p.add_argument("--expect-sha256", metavar="HEX",
                   help="refuse the bundle unless its policy.json has this sha256 (`simreal export --check` prints it)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--bus", choices=["simreal", "feetech", "dynamixel"], default=None,
                   help="what the robot speaks: docs/protocol.md firmware, or bare bus servos (default: "
                        "the robot's bus.yaml if it says `default: true`, else simreal)")
    p.add_argument("--imu-port", default=None, metavar="PORT", help="with --bus feetech|dynamixel: the BNO055 IMU's serial port")
    p.add_argument("--calibration", default=None, metavar="FILE",
                   help="with --bus feetech|dynamixel: joint calibration (default robots/<name>/calibration.yaml)")
    p.set_defaults(func=run_deploy)

    p = sub.add_parser("log", help="look at a deploy run log")
    lsub = p.add_subparsers(dest="log_command", metavar="ACTION")
    q = lsub.add_parser("plot", help="draw joints, attitude, velocity, timing histograms, safety events")
    q.add_argument("log", metavar="LOG")
    q.add_argument("--out", required=True, metavar="DIR")
    q.set_defaults(func=run_log_plot)
    q = lsub.add_parser("show", help="print the run's summary and events")
    q.add_argument("log", metavar="LOG")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_log_show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def exit_code(summary: dict) -> int:
    causes = [t["cause"] for t in summary.get("safe_stops", [])]
    if not causes:
        return 0
    return 130 if causes[0] == "signal" else 1


def confirm_torque(info) -> bool:
    """Operator gate for real robots: nothing moves until a person says so."""
    if info.simulated:
        return True
    if not sys.stdin.isatty():
        print(f"refusing to power robot {info.robot_name!r} without confirmation: pass --yes", file=sys.stderr)
        return False
    try:
        answer = input(f"robot {info.robot_name!r} (firmware {'.'.join(map(str, info.firmware))}, watchdog "
                       f"{info.watchdog_ms} ms): hoisted and clear? turn torque on [y/N] ")
    except EOFError:                  # Ctrl-D: no answer is a no
        print(file=sys.stderr)
        return False
    return answer.strip().lower() in ("y", "yes")


def _sigterm_is_ctrl_c(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _report(summary: dict, as_json: bool) -> None:
    from simreal.deploy.summary import format_summary

    if as_json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print(format_summary(summary))
        print(f"log: {summary.get('log')}  (plots: simreal log plot {summary.get('log')} --out DIR)")


def run_deploy(args: argparse.Namespace) -> int:
    import dataclasses

    from simreal.deploy.plan import RuntimeConfig

    from simreal.deploy.session import deploy
    from simreal.deploy.safety import SafetyConfig
    from simreal.errors import UserError

    cfg = RuntimeConfig(soft_start_s=args.soft_start, pipelined=args.pipelined, truth_every=args.truth_every,
                        heading_hold=args.heading_hold,
                        clear_errors=args.clear_errors, reset_sim=args.reset_sim,
                        safety=dataclasses.replace(SafetyConfig(), command_timeout_s=args.command_timeout))
    # Until the runtime takes the signals over (and after it gives them back), SIGTERM is a Ctrl-C:
    # loading the bundle or opening the port is cut short with one line, not a silent kill.
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _sigterm_is_ctrl_c)
    try:
        summary, _ = deploy(args.bundle, args.port, duration_s=args.duration or None, rate_hz=args.rate,
                            log_path=args.log, command=args.command,
                            command_stream=sys.stdin if args.command_stream else None, config=cfg,
                            allow_hash_mismatch=args.allow_hash_mismatch,
                            allow_pipeline_mismatch=args.allow_pipeline_mismatch, backend=args.backend,
                            expect_sha256=args.expect_sha256, realtime=args.realtime,
                            confirm=(lambda info: True) if args.yes else confirm_torque,
                            notify=lambda s: print(s, file=sys.stderr), bus=args.bus,
                            imu_port=args.imu_port, calibration=args.calibration)
    except UserError as exc:           # StartRefused (2), StartInterrupted (130), BundleError, ...
        print(f"simreal deploy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:          # before the runtime started (once torque is on it does a safe stop)
        print("simreal deploy: interrupted before torque on: torque was never on, nothing moved",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    _report(summary, args.json)
    return exit_code(summary)


def run_log_plot(args: argparse.Namespace) -> int:
    from simreal.deploy.logplot import plot_log

    try:
        files = plot_log(args.log, args.out)
    except (OSError, ValueError) as exc:
        print(f"simreal log plot: {exc}", file=sys.stderr)
        return 1
    for f in files:
        print(f)
    return 0


def run_log_show(args: argparse.Namespace) -> int:
    from simreal.deploy.runlog import read_log
    from simreal.deploy.summary import format_summary

    try:
        run = read_log(args.log)
    except (OSError, ValueError) as exc:
        print(f"simreal log show: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"header": run.header, "events": run.events, "summary": run.summary,
                          "cycles": len(run.cycles), "truncated": run.truncated}, indent=1, default=str))
        return 0
    print(f"{run.path}: robot {run.header.get('robot')}, {len(run.cycles)} cycles"
          + (" (last line cut off: the process died mid-write)" if run.truncated else ""))
    for e in run.events:
        detail = e.get("detail") or e.get("reason") or e.get("note") or ""
        print(f"  t={e.get('t', 0):8.3f} s  {e['kind']:<16} {e.get('cause', '')} {detail}".rstrip())
    if run.summary:
        print(format_summary(run.summary))
    else:
        print("no summary record: the run did not end normally")
    return 0
