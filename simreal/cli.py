"""The one `simreal` command. Each subcommand lives beside the module it drives.

Every entry in COMMAND_MODULES names a module exposing ``register(subparsers)``, which adds
its subcommands with ``set_defaults(func=...)``. Registration must stay import-light (no
torch/mujoco at import time) so that ``simreal --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from simreal.errors import (EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_INTERRUPTED, MissingDependency,
                            UserError, missing_extra)

# Order here is the order in `simreal --help`, and it follows the data flow.
COMMAND_MODULES = [
    "simreal.robot.cli",     # robots
    "simreal.envs.cli",      # rollout, view, render
    "simreal.train.cli",     # train, eval
    "simreal.algos.cli",     # study
    "simreal.export.cli",    # export
    "simreal.mock.cli",      # mock-robot
    "simreal.deploy.cli",    # deploy, log
    "simreal.servos.cli",    # servos, calibrate: bare bus servos on the bench
    "simreal.finetune.cli",  # finetune: learning on the robot through deploy
    "simreal.sysid.cli",     # sysid record
    "simreal.faults.cli",    # faults: the fault matrix's drills
    "simreal.sweep.cli",     # sweep: Ray Tune (the cluster extra)
    "simreal.demo",          # demo: mock robot + deploy, the main job without hardware
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simreal",
        description="Sim-to-real toolkit for small legged robots.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show Python tracebacks (also SIMREAL_DEBUG=1)")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a command group not installed: leave it out, loudly
            if e.name != name:
                raise
            print(f"simreal: command module {name} missing; its commands are unavailable", file=sys.stderr)
            continue
        module.register(sub)
    _add_debug_flag(sub)
    return parser


def _add_debug_flag(sub: argparse._SubParsersAction) -> None:
    """`--debug` is accepted after any subcommand too, and every --help ends with the exit codes."""
    for p in set(sub.choices.values()):
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show Python tracebacks (also SIMREAL_DEBUG=1)")
        if p.epilog is None:
            p.epilog = EXIT_CODES_HELP
        elif EXIT_CODES_HELP not in p.epilog and "exit codes:" not in p.epilog:
            p.epilog = f"{p.epilog}\n{EXIT_CODES_HELP}"
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug_flag(action)


def report_error(command: str, exc: BaseException) -> int:
    """One line for an error that escaped a command, and its exit code (see simreal.errors)."""
    prefix = f"simreal {command}" if command else "simreal"
    if isinstance(exc, ModuleNotFoundError) and missing_extra(exc, command) is not None:
        exc = missing_extra(exc, command)
    if isinstance(exc, (UserError, MissingDependency)):
        print(f"{prefix}: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, OSError) and exc.filename is not None:
        # a path the user gave that cannot be read or written: name it
        print(f"{prefix}: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{prefix}: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
          file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False)) or os.environ.get("SIMREAL_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every error ends in one line and an exit code
        if debug:
            traceback.print_exc()
        return report_error(args.subcommand, exc)


if __name__ == "__main__":
    sys.exit(main())
