"""The one `simreal` command. Each subcommand lives beside the module it drives.

Every entry in COMMAND_MODULES names a module exposing ``register(subparsers)``, which adds
its subcommands with ``set_defaults(func=...)``. Registration must stay import-light (no
torch/mujoco at import time) so that ``simreal --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Order here is the order in `simreal --help`, and it follows the data flow.
COMMAND_MODULES = [
    "simreal.robot.cli",     # robots
    "simreal.envs.cli",      # rollout, view, render
    "simreal.train.cli",     # train, eval
    "simreal.algos.cli",     # study
    "simreal.export.cli",    # export
    "simreal.deploy.cli",    # mock-robot, deploy, demo, log
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simreal",
        description="Sim-to-real toolkit for small legged robots.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a command group not installed: leave it out, loudly
            if e.name != name:
                raise
            print(f"simreal: command module {name} missing; its commands are unavailable", file=sys.stderr)
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
