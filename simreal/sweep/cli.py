"""`simreal sweep SPEC.yaml` (import-light: registration only)."""
from __future__ import annotations

import argparse
import sys

from simreal.cliargs import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="hyperparameter / randomization sweeps and many seeds on Ray Tune",
                       description="Each trial is an ordinary `simreal train` run under OUT/trials/. "
                                   "See docs/cluster.md. Exits 1 when no trial ran to the end with a "
                                   "finite metric (nothing to call best).")
    p.add_argument("spec", metavar="SPEC.yaml", help="sweep spec (examples in configs/sweeps/)")
    p.add_argument("--address", default=None, help="join an existing Ray cluster (default: start a local one)")
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default runs/sweep-<spec name>)")
    p.add_argument("--max-concurrent", type=positive_int, default=None, metavar="K",
                   help="trials at once (default: as many as the CPUs allow)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a spec field, e.g. timesteps=20000 seeds=2 set.n_envs=4")
    p.set_defaults(func=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simreal.sweep.run import sweep
    from simreal.sweep.spec import load_spec, parse_overrides

    spec = load_spec(args.spec, parse_overrides(args.set))
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.spec).stem}"
    result = sweep(spec, out, address=args.address, max_concurrent=args.max_concurrent, resume=args.resume)
    print(f"wrote {out / 'trials.csv'}" + (f", {out / 'best.yaml'}" if result["best"] else "")
          + f" and {len(result['plots'])} plots", file=sys.stderr)
    return 0 if result["best"] is not None else 1
