"""Write the "policy_gradients" section of BENCHMARKS.md from a `simreal study cartpole` run.

    nice -n 10 python -m simreal.cli study cartpole --out runs/study_cartpole     # ~1-3 h here
    python scripts/bench_policy_gradients.py runs/study_cartpole [--sweeps runs/study_sweep]

Also copies the plots to docs/img/ for docs/policy_gradients.md. Only measured figures: every
number comes from results.json (and the sweep JSONs, if given).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _bench_md import machine_line, update_section  # noqa: E402

from simreal.algos.study import gradient_table, theorem_table  # noqa: E402


def _median(summary: dict, algo: str, key: str) -> float | None:
    return summary.get(algo, {}).get(key, {}).get("median")


def targets(res: dict) -> list[str]:
    s, gv = res["summary"], res.get("gradient_variance", {}).get("estimators", {})
    n = len(res["seeds"])
    lines = []
    ep_b = _median(s, "reinforce_baseline", "episodes_to_threshold")
    ep_r = _median(s, "reinforce", "episodes_to_threshold")
    if "reinforce_baseline" in s:
        ok = ep_b is not None and ep_b <= 300
        lines.append(f"- REINFORCE+baseline, median episodes to 475 over {n} seeds <= 300: "
                     f"**{'met' if ok else 'missed'}** ({ep_b if ep_b is not None else 'not reached'}).")
    if "reinforce" in s:
        slower = ep_r is None and ep_b is not None or (ep_r is not None and ep_b is not None and ep_r > ep_b)
        var_r, var_b = gv.get("reward_to_go", {}).get("trace_cov"), gv.get("baseline", {}).get("trace_cov")
        higher = var_r is not None and var_b is not None and var_r > var_b
        lines.append(f"- plain REINFORCE slower ({ep_r if ep_r is not None else 'not reached'} vs "
                     f"{ep_b} median episodes): **{'met' if slower else 'missed'}**; higher gradient "
                     f"variance (tr Cov {var_r:.3g} vs {var_b:.3g}): **{'met' if higher else 'missed'}**."
                     if var_r is not None and var_b is not None else "")
    if "ppo_simreal" in s:
        st = _median(s, "ppo_simreal", "steps_to_threshold")
        ws = _median(s, "ppo_simreal", "window_start_steps")
        ok = st is not None and st <= 50_000
        lines.append(f"- our PPO reaches 475 in <= 50k env steps: **{'met' if ok else 'missed'}** "
                     f"(median {st:,.0f} steps; the solving 100-episode window began after a median "
                     f"of {ws:,.0f} steps). A 100-episode average of 475 needs at least 47,500 steps "
                     f"inside the window itself, so 50k leaves ~2.5k steps for learning."
                     if st is not None else f"- our PPO reaches 475 in <= 50k env steps: **missed** (not reached)")
    return [x for x in lines if x]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study_dir", type=Path)
    ap.add_argument("--sweeps", type=Path, default=None, help="folder with sweep_*.json from `simreal study sweep`")
    ap.add_argument("--command", default=None, help="the study command as run (for the provenance line)")
    args = ap.parse_args()

    res = json.loads((args.study_dir / "results.json").read_text())
    command = args.command or (f"python -m simreal.cli study cartpole --seeds {len(res['seeds'])} "
                               f"--budget {res['budget']}")
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    for name in ("learning_curves.png", "gradient_variance.png"):
        if (args.study_dir / name).exists():
            shutil.copy(args.study_dir / name, img / f"policy_gradients_{name}")

    md = [f"## Policy gradients on CartPole-v1 (`simreal study cartpole`)", "",
          machine_line(command), "",
          f"{len(res['seeds'])} seeds (0..{len(res['seeds']) - 1}), {res['budget']:,} env steps per run, "
          f"threshold: the average of the last {res['window']} episode returns reaches {res['threshold']:g}. "
          "Wall times are per run, single-threaded, on a 2-core machine shared with other jobs "
          "(they vary with its load).", "", res["table"], ""]
    if "gradient_variance" in res:
        gv = res["gradient_variance"]
        md += [f"Gradient variance at fixed parameters (policy return {gv['policy_mean_return']:.0f}, "
               f"{gv['n_batches']} batches x {gv['batch_episodes']} episodes, same episodes for every "
               f"estimator):", "", gradient_table(gv), ""]
    if "theorem" in res:
        md += ["Policy-gradient theorem on a toy MDP (exact gradient by autograd):", "",
               theorem_table(res["theorem"]), ""]
    md += ["Targets:", "", *targets(res), ""]
    if args.sweeps and args.sweeps.exists():
        for f in sorted(args.sweeps.glob("sweep_*.json")):
            sw = json.loads(f.read_text())
            shutil.copy(f.with_suffix(".png"), img / f"policy_gradients_{f.stem}.png")
            md += [f"Sweep `{sw['algo']}` {sw['param']} ({len(sw['seeds'])} seeds, {sw['budget']:,} steps; "
                   f"`python -m simreal.cli study sweep --algo {sw['algo']} --param {sw['param']} --values "
                   f"{' '.join(f'{r['value']:g}' for r in sw['rows'])} --seeds {len(sw['seeds'])} "
                   f"--budget {sw['budget']}`):", "", sw["table"], ""]
    update_section("policy_gradients", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
