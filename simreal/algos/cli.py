"""`simreal study cartpole`, `sweep` and `entropy` (imports nothing heavy until run)."""
from __future__ import annotations

import argparse

ALGO_CHOICES = ("reinforce", "reinforce_baseline", "a2c", "ppo_simreal", "dqn_sb3", "ppo_sb3")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("study", help="policy-gradient study on CartPole (REINFORCE .. PPO vs DQN)",
                              description="Reproduce the measurements in docs/policy_gradients.md.")
    sub = p.add_subparsers(dest="study", metavar="STUDY", required=True)

    c = sub.add_parser("cartpole", help="all algorithms x seeds: table, results.json, plots")
    c.add_argument("--seeds", type=_positive_int, default=5, help="seeds 0..N-1 (default 5)")
    c.add_argument("--budget", type=_positive_int, default=100_000, help="env steps per run (default 100000)")
    c.add_argument("--out", default="runs/study_cartpole", help="output directory")
    c.add_argument("--algos", nargs="+", choices=ALGO_CHOICES, default=list(ALGO_CHOICES))
    c.add_argument("--workers", type=_positive_int, default=1,
                   help="parallel runs (default 1; use 2 only on an otherwise idle 2-core machine)")
    c.add_argument("--config", default=None, help="study YAML (default configs/algos/cartpole.yaml)")
    c.add_argument("--no-gradient-variance", action="store_true", help="skip the gradient-variance stage")
    c.add_argument("--no-theorem", action="store_true", help="skip the toy-MDP theorem check")
    c.set_defaults(func=_run_cartpole)

    s = sub.add_parser("sweep", help="vary one hyperparameter; plot final return against it")
    s.add_argument("--algo", required=True, choices=ALGO_CHOICES)
    s.add_argument("--param", required=True, choices=("lr", "ent_coef", "gamma"))
    s.add_argument("--values", required=True, nargs="+", type=float)
    s.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1 (default 3)")
    s.add_argument("--budget", type=_positive_int, default=100_000, help="env steps per run (default 100000)")
    s.add_argument("--out", default="runs/study_sweep", help="output directory")
    s.add_argument("--workers", type=_positive_int, default=1)
    s.add_argument("--config", default=None, help="study YAML (default configs/algos/cartpole.yaml)")
    s.add_argument("--env", default=None, help="Gymnasium id to run instead of the config's env "
                   "(e.g. simreal/DeepSea12-v0)")
    s.set_defaults(func=_run_sweep)

    e = sub.add_parser("entropy", help="entropy bonus where exploration is hard: ent_coef x DeepSea sizes",
                       description="Sweep the entropy coefficient on DeepSea chains (sparse, deceptive "
                                   "reward) and count the seeds that learn to reach the reward.")
    e.add_argument("--algo", default="a2c", choices=("a2c", "ppo_simreal"))
    e.add_argument("--sizes", nargs="+", type=_positive_int, default=[6, 8, 10, 12],
                   help="chain sizes N (default 6 8 10 12)")
    e.add_argument("--values", nargs="+", type=float, default=[0.0, 0.01, 0.03, 0.1],
                   help="ent_coef values (default 0 0.01 0.03 0.1)")
    e.add_argument("--seeds", type=_positive_int, default=5, help="seeds 0..N-1 (default 5)")
    e.add_argument("--budget", type=_positive_int, default=100_000, help="env steps per run (default 100000)")
    e.add_argument("--out", default="runs/study_entropy", help="output directory")
    e.add_argument("--workers", type=_positive_int, default=1)
    e.add_argument("--config", default=None, help="study YAML (default configs/algos/deep_sea.yaml)")
    e.set_defaults(func=_run_entropy)


def _run_cartpole(args: argparse.Namespace) -> int:
    from simreal.algos.study import study_cartpole
    study_cartpole(seeds=args.seeds, budget=args.budget, out=args.out, workers=args.workers,
                   algos=tuple(args.algos), config=args.config,
                   gradient_variance=not args.no_gradient_variance, theorem=not args.no_theorem)
    return 0


def _run_sweep(args: argparse.Namespace) -> int:
    from simreal.algos.study import study_sweep
    study_sweep(args.algo, args.param, args.values, seeds=args.seeds, budget=args.budget,
                out=args.out, workers=args.workers, config=args.config, env=args.env)
    return 0


def _run_entropy(args: argparse.Namespace) -> int:
    from simreal.algos.entropy_study import study_entropy
    study_entropy(args.algo, tuple(args.sizes), tuple(args.values), seeds=args.seeds, budget=args.budget,
                  out=args.out, workers=args.workers, config=args.config)
    return 0
