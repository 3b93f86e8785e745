"""`simreal rollout`: a robot's environment without training (render and view: simreal.train.watch)."""
from __future__ import annotations

import argparse

from simreal.cliargs import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="run a randomized rollout on a robot and print what happened")
    p.add_argument("robot", nargs="?", default="quadruped")
    p.add_argument("--steps", type=positive_int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-randomize", action="store_true")
    p.add_argument("--policy", choices=["random", "zero"], default="random",
                   help="random actions, or zero (hold the default pose)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_rollout)


def run_rollout(args: argparse.Namespace) -> int:
    import json

    from simreal.envs.rollout import rollout

    summary = rollout(args.robot, steps=args.steps, seed=args.seed, randomize=not args.no_randomize,
                      policy=args.policy)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{args.robot}: {summary['steps']} steps, {summary['episodes']} episodes, "
          f"{summary['falls']} falls, mean forward velocity {summary['mean_forward_velocity']:+.3f} m/s, "
          f"mean reward {summary['mean_reward']:+.3f}, non-finite observations: {summary['nonfinite']}")
    print("mean reward terms: " + ", ".join(f"{k} {v:+.3f}" for k, v in summary["mean_terms"].items()))
    first = summary["first_randomization"]
    print("first episode randomization: " + ", ".join(
        f"{k}={v if not isinstance(v, float) else round(v, 3)}" for k, v in first.items()
        if not isinstance(v, (list, dict))))
    return 0
