"""Is the first half of our 100k-step DQN run the zoo's 50k-step run? (docs/policy_gradients.md)

    python scripts/dqn_zoo_budget.py [--seed 0] [--every 2500]

Runs SB3's DQN with the study's settings twice on one seed: 50,000 steps with the zoo's
exploration_fraction 0.16, and 100,000 steps with the study's 0.08 (the same 8,000 steps of
epsilon decay). Prints both runs' greedy evaluations up to 50,000 steps and exits 0 if they are
identical at every point, 1 if not.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simreal.algos.evaluation import GreedyEval  # noqa: E402
from simreal.algos.study import load_study_config, run_one  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=2500)
    args = ap.parse_args()
    base = load_study_config()["algos"]["dqn_sb3"]
    curves = {}
    for budget, fraction in ((50_000, 0.16), (100_000, 0.08)):
        spec = copy.deepcopy(base)
        spec["sb3"]["exploration_fraction"] = fraction
        run = run_one("dqn_sb3", args.seed, budget, spec, greedy=GreedyEval(every=args.every))
        curves[budget] = [(p["steps"], float(np.mean(p["returns"]))) for p in run["greedy_evals"]
                          if p["steps"] <= 50_000]
        print(f"{budget:>7,} steps, exploration_fraction {fraction}: "
              + " ".join(f"{m:.0f}" for _, m in curves[budget]))
    same = curves[50_000] == curves[100_000]
    print(f"identical at all {len(curves[50_000])} evaluations up to 50,000 steps: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
