"""`simreal finetune` (import-light)."""
from __future__ import annotations

import argparse
import sys

from simreal.cliargs import nonnegative_float, nonnegative_int, positive_float, positive_int
from simreal.finetune import BOUND


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a bundle on the robot (or the mock): episodes of `deploy` "
                                        "with a bounded learning residual (CrossQ or SAC), checkpointed")
    p.add_argument("bundle", metavar="RUN_OR_BUNDLE",
                   help="a bundle, or a training run (exported first into OUT/base)")
    p.add_argument("--port", required=True, help="the robot's serial port (a mock robot prints its port)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--steps", type=positive_int, help="transitions to learn from, in all")
    g.add_argument("--minutes", type=positive_float, help="robot minutes (policy time), in all")
    p.add_argument("--algo", choices=["crossq", "sac"], default="crossq")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/finetune/ROBOT-TIME)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    p.add_argument("--velocity", default=None, metavar="SOURCE",
                   help="ground_truth (the mock only: privileged), onboard (IMU + leg kinematics) or "
                        "tracker:HOST:PORT (UDP lines `t x y yaw`); default ground_truth on the mock, else onboard")
    p.add_argument("--reset", choices=["sim", "operator", "standup"], default=None,
                   help="between episodes: sim (the mock's reset; its default), operator (Enter when the robot "
                        "stands; hardware's default; q ends the run) or standup (robots/NAME/standup.yaml as the "
                        "start ramp, the operator only after a fall)")
    p.add_argument("--episode-seconds", type=positive_float, default=10.0, metavar="S")
    p.add_argument("--bound", type=positive_float, default=BOUND,
                   help=f"the most fine-tuning may change an action (action units, default {BOUND:g})")
    p.add_argument("--sim-warmup", type=nonnegative_int, default=5000, metavar="N",
                   help="simulated transitions the critic is warmed up on before the robot's first "
                        "update (fresh runs; 0: none)")
    p.add_argument("--actor-delay", type=nonnegative_float, default=30.0, metavar="S",
                   help="robot seconds during which only the critic learns (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--yes", action="store_true", help="do not ask before each episode's torque on")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from simreal.deploy.cli import confirm_torque
    from simreal.errors import EXIT_INTERRUPTED, UserError
    from simreal.export.bundle import ExportError
    from simreal.finetune.learner import NonFiniteUpdate
    from simreal.finetune.session import Interrupted, Stalled, finetune
    from simreal.finetune.velocity import VelocityError

    if args.resume and args.out and Path(args.out) != Path(args.resume):
        raise UserError("--out and --resume name different folders: give one")
    out = args.resume or args.out or f"runs/finetune/{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        c = finetune(args.bundle, args.port, out, steps=args.steps, minutes=args.minutes, algo=args.algo,
                     resume=bool(args.resume), velocity=args.velocity, episode_s=args.episode_seconds,
                     bound=args.bound, seed=args.seed, sim_warmup=args.sim_warmup, actor_delay_s=args.actor_delay,
                     reset=args.reset,
                     confirm=(lambda info: True) if args.yes else confirm_torque,
                     notify=lambda s: print(s, file=sys.stderr))
    except Interrupted as exc:
        print(f"simreal finetune: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Stalled as exc:
        print(f"simreal finetune: {exc}", file=sys.stderr)
        return 1
    except NonFiniteUpdate as exc:      # between episodes: torque is already off
        print(f"simreal finetune: {exc}; the run is checkpointed with those weights, torque is off", file=sys.stderr)
        return 1
    except (VelocityError, FileExistsError) as exc:
        raise UserError(str(exc)) from None
    except ExportError as exc:        # after the last episode: torque is off, the run is checkpointed
        raise UserError(f"{exc}; the run in {out} is checkpointed, --resume {out} exports it again") from None
    print(f"fine-tuned {c.episodes} episodes, {c.transitions} transitions ({c.robot_s / 60:.1f} robot minutes), "
          f"{c.falls} falls, {c.refused} refused; run in {out}, fine-tuned bundle {Path(out) / 'bundle'}")
    return 0
