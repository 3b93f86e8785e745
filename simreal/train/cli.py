"""`simreal train` and `simreal eval` (heavy imports happen inside the commands)."""
from __future__ import annotations

import argparse
import sys

from simreal.cliargs import nonnegative_float, positive_float, positive_int
from simreal.errors import UserError

TRAIN_EPILOG = """\
examples:
  simreal train quadruped --algo ppo
  simreal train Walker2d-v5 --algo sac --timesteps 1e6 --seed 1
  simreal train quadruped --algo ppo --set hyperparams.learning_rate=1e-4 policy.net_arch=[128,128]
  simreal train --resume runs/quadruped-ppo-20250101-120000-s0 --timesteps 4e6
  simreal train biped --algo ppo --init-from runs/biped-ppo-... --set hyperparams.learning_rate=1e-4
Hyperparameters come from configs/<robot>/<algo>.yaml, then --config, then flags, then --set."""


def _steps(text: str) -> int:
    """'1e6', '1_000_000', '250000' -> int."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of steps: {text!r}") from None
    if value <= 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"steps must be a positive whole number, got {text!r}")
    return int(value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a policy with PPO or SAC (stable-baselines3)",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("robot", nargs="?", metavar="ROBOT",
                   help="robot folder in robots/ or a Gymnasium id such as Walker2d-v5")
    p.add_argument("--algo", metavar="{ppo,sac,crossq,...}", help="ppo, sac, crossq (sb3-contrib), or one of simreal.algos")
    p.add_argument("--timesteps", type=_steps, metavar="N", help="total environment steps")
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--envs", type=int, metavar="K", help="parallel environments (n_envs)")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/<robot>-<algo>-<time>-s<seed>)")
    p.add_argument("--no-randomize", action="store_true", help="turn domain randomization off")
    p.add_argument("--config", metavar="FILE", help="YAML overrides on top of the shipped defaults")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. hyperparams.gamma=0.98 (value parsed as YAML)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    p.add_argument("--init-from", metavar="RUN|CHECKPOINT",
                   help="start the network and observation statistics from another run (its best "
                        "checkpoint, else its latest) or a checkpoint folder: fine-tuning")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run_train)

    p = sub.add_parser("eval", help="evaluate a trained run: return, velocity, tracking, falls")
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="run directory, SB3 .zip (with --trust-checkpoint) or exported bundle")
    p.add_argument("--episodes", type=positive_int, default=10, metavar="N")
    p.add_argument("--no-randomize", action="store_true")
    p.add_argument("--video", metavar="FILE", help="write an mp4 of the episodes")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--checkpoint", default="auto", metavar="WHICH",
                   help="best, latest, auto (best if present) or a checkpoint folder")
    p.add_argument("--seed", type=int, help="seed of the first episode (default: the run's eval seed)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow pickle-based files (stable-baselines3 .zip/.pkl); they can run code")
    p.add_argument("--command", metavar="vx=V,yaw=W",
                   help="fixed velocity command for robot envs (default: sampled per episode)")
    p.add_argument("--heading-hold", type=nonnegative_float, default=None, metavar="GAIN",
                   help="steer the observed yaw command back to the starting heading, as `simreal deploy` "
                        "does; 0 = off (default: as trained, the bundle's or run's heading_hold)")
    p.set_defaults(func=run_eval)

    for name, helptext in (("render", "write a video of a run's or bundle's policy walking (or a robot's "
                                      "zero/random actions), with an overlay"),
                           ("view", "watch a run's or bundle's policy in the interactive MuJoCo viewer "
                                    "(needs a display)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("target", metavar="RUN_OR_BUNDLE",
                       help="run directory, policy bundle (e.g. assets/policies/quadruped), or robot name")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--command", metavar="vx=V,yaw=W", help="fixed velocity command (default: sampled)")
        p.add_argument("--randomize", action="store_true", help="a randomized robot (default: nominal)")
        p.add_argument("--policy", choices=["zero", "random"], default="zero",
                       help="for a robot name: hold the default pose, or random actions")
        if name == "render":
            p.add_argument("--out", default="clip.mp4", metavar="FILE")
            p.add_argument("--seconds", type=positive_float, default=10.0, metavar="S")
            p.add_argument("--width", type=positive_int, metavar="PX", help="default 480")
            p.add_argument("--height", type=positive_int, metavar="PX", help="default 360")
            p.add_argument("--fps", type=positive_int, metavar="F", help="default 25 (every 2nd control step)")
            p.add_argument("--no-overlay", action="store_true")
            p.add_argument("--shadows", action="store_true",
                           help="shadows and multisampling (prettier; ~5x slower on software OpenGL)")
            p.set_defaults(func=run_render)
        else:
            p.add_argument("--seconds", type=positive_float, metavar="S", help="stop after S s (default: "
                                                                               "until the window closes)")
            p.set_defaults(func=run_view)

    p = sub.add_parser("runs", help="list training runs: robot, algorithm, steps, last evaluation, status")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="where to look (default runs/)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_runs)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simreal.train.config import ConfigError, dump_yaml, parse_set, read_yaml, resolve

    if args.resume:
        conflicting = [f for f, v in (("ROBOT", args.robot), ("--algo", args.algo), ("--seed", args.seed),
                                      ("--envs", args.envs), ("--out", args.out), ("--config", args.config),
                                      ("--set", args.set), ("--no-randomize", args.no_randomize),
                                      ("--init-from", args.init_from)) if v]
        if conflicting:
            return _error(f"--resume continues a run with its own config.yaml; only --timesteps may "
                          f"change (got {', '.join(conflicting)})")
        from simreal.train.checkpoint import CheckpointError
        from simreal.train.run import RunError, resume

        try:
            summary = resume(Path(args.resume), timesteps=args.timesteps,
                             progress=not args.no_progress, argv=sys.argv[1:])
        except (RunError, CheckpointError, ConfigError) as e:
            return _error(str(e))
        print(summary.line())
        return 0

    if not args.robot or not args.algo:
        return _error("give ROBOT and --algo (or --resume DIR)")
    try:
        layers = []
        if args.config:
            layers.append((args.config, read_yaml(Path(args.config))))
        flags = {}
        if args.timesteps is not None:
            flags["timesteps"] = args.timesteps
        if args.seed is not None:
            flags["seed"] = args.seed
        if args.envs is not None:
            flags["n_envs"] = args.envs
        if args.no_randomize:
            flags["env"] = {"randomize": False}
        if flags:
            layers.append(("command line", flags))
        if args.set:
            layers.append(("--set", parse_set(args.set)))
        cfg = resolve(args.robot, args.algo, layers)
    except ConfigError as e:
        return _error(str(e))
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    _check_robot(args.robot)
    from simreal.train.checkpoint import CheckpointError
    from simreal.train.run import RunError, train

    try:
        summary = train(cfg, Path(args.out) if args.out else None, progress=not args.no_progress,
                        argv=sys.argv[1:], init_from=Path(args.init_from) if args.init_from else None)
    except (RunError, CheckpointError) as e:
        return _error(str(e))
    print(summary.line())
    return 0


def _check_robot(name: str) -> None:
    """Fail early, before a run directory exists, on a name that is neither a robot nor an id."""
    import gymnasium as gym

    from simreal.robot.registry import list_robots

    if name not in list_robots() and name not in gym.registry:
        robots = ", ".join(list_robots()) or "none"
        raise UserError(f"{name!r} is neither a robot ({robots}) nor a registered Gymnasium id "
                        f"(e.g. Walker2d-v5)")


def run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simreal.train.checkpoint import CheckpointError
    from simreal.train.evaluate import evaluate_path, to_json
    from simreal.train.sb3 import UntrustedContentError

    from simreal.robot.command import parse_command

    try:
        command = parse_command(args.command) if args.command else None
        result, source = evaluate_path(
            Path(args.run_dir), episodes=args.episodes,
            randomize=False if args.no_randomize else None,
            video=Path(args.video) if args.video else None, checkpoint=args.checkpoint,
            seed=args.seed, trust=args.trust_checkpoint, command=command, heading_hold=args.heading_hold)
    except (CheckpointError, UntrustedContentError, FileNotFoundError, ValueError) as e:
        return _error(str(e))
    if command is not None:
        source["command"] = list(command)
    if args.json:
        print(to_json(result, source))
    else:
        where = source.get("checkpoint") or source.get("bundle")
        print(f"{source['robot']} {source['algo']} · {where} (step {source['step']:,}) · "
              f"{result.episodes} episodes · {result.line()}")
        if args.video:
            print(f"video: {args.video}")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from simreal.train.runs import find_runs, format_row, read_run

    top = Path(args.dir)
    if not top.is_dir():
        raise UserError(f"{top}: no such folder (runs are written to runs/ by default)")
    rows = [read_run(p) for p in find_runs(top)]
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
    elif not rows:
        print(f"no runs under {top} (start one: simreal train quadruped --algo ppo)")
    else:
        for r in rows:
            print(format_row(r))
    return 0


def _command(text: str | None) -> tuple[float, float] | None:
    from simreal.robot.command import parse_command

    try:
        return parse_command(text) if text else None
    except ValueError as e:
        raise UserError(str(e)) from None


def run_render(args: argparse.Namespace) -> int:
    from simreal.train.watch import render_clip

    out = render_clip(args.target, args.out, seconds=args.seconds, seed=args.seed, policy=args.policy,
                      command=_command(args.command), randomize=args.randomize, width=args.width,
                      height=args.height, fps=args.fps, overlay=not args.no_overlay,
                      shadows=args.shadows)
    print(f"wrote {out['out']} ({out['frames']} frames, {out['seconds']:g} s of robot time, "
          f"{out['falls']} falls; took {out['wall_s']:.1f} s)")
    return 0


def run_view(args: argparse.Namespace) -> int:
    from simreal.train.watch import view

    return view(args.target, seed=args.seed, policy=args.policy, command=_command(args.command),
                randomize=args.randomize, seconds=args.seconds)
