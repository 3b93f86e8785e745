"""Write the "policy_gradients" section of BENCHMARKS.md from a `simreal study cartpole` run.

    nice -n 10 python -m simreal.cli study cartpole --workers 2     # ~20-30 min on 2 idle cores
    python -m simreal.cli study entropy --workers 2                  # ~10 min
    python scripts/bench_policy_gradients.py runs/study_cartpole [--sweeps runs/study_sweep] \
        [--entropy runs/study_entropy]

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

from simreal.algos import plots  # noqa: E402
from simreal.algos.study import gradient_table, sweep_summary, theorem_table  # noqa: E402


def _median(summary: dict, algo: str, key: str) -> float | None:
    return summary.get(algo, {}).get(key, {}).get("median")


def _n(x: float | None, fmt: str = ",.0f") -> str:
    return "not reached" if x is None else format(x, fmt)


def targets(res: dict) -> list[str]:
    """The issue's three targets, each marked met / missed from the measured summary."""
    s, gv = res["summary"], res.get("gradient_variance", {}).get("estimators", {})
    n = len(res["seeds"])
    lines = []
    ep_b = _median(s, "reinforce_baseline", "episodes_to_threshold")
    ep_r = _median(s, "reinforce", "episodes_to_threshold")
    if "reinforce_baseline" in s:
        ok = ep_b is not None and ep_b <= 300
        lines.append(f"- REINFORCE+baseline reaches a 100-episode average of 475 in a median of <= 300 "
                     f"episodes over {n} seeds: **{'met' if ok else 'missed'}** ({_n(ep_b)} episodes; "
                     f"{s['reinforce_baseline']['n_solved']}/{n} seeds reached it).")
    if "reinforce" in s and "reinforce_baseline" in s:
        slower = ep_b is not None and (ep_r is None or ep_r > ep_b)
        lines.append(f"- plain REINFORCE measurably slower: **{'met' if slower else 'missed'}** "
                     f"({s['reinforce']['n_solved']}/{n} seeds reached 475, median episodes: {_n(ep_r)}; "
                     f"with the baseline {s['reinforce_baseline']['n_solved']}/{n} and {_n(ep_b)}).")
        var_r, var_b = gv.get("reward_to_go", {}).get("trace_cov"), gv.get("baseline", {}).get("trace_cov")
        if var_r is not None and var_b is not None:
            lines.append(f"- plain REINFORCE has higher gradient variance: **{'met' if var_r > var_b else 'missed'}** "
                         f"(tr Cov {var_r:.3g} against {var_b:.3g}, {var_r / var_b:.0f}x, same parameters "
                         f"and episodes).")
    if "ppo_simreal" in s:
        st = _median(s, "ppo_simreal", "steps_to_threshold")
        ws = _median(s, "ppo_simreal", "window_start_steps")
        ok = st is not None and st <= 50_000
        why = ("" if ok or st is None else
               f" The solving window began after a median of {_n(ws)} steps; a 100-episode average of "
               f"475 needs at least 47,500 steps inside the window itself, so a 50k total would leave "
               f"~2,500 steps for learning.")
        lines.append(f"- our PPO reaches 475 in <= 50k environment steps, by the 100-episode training "
                     f"average: **{'met' if ok else 'missed'}** (median {_n(st)} steps).{why}")
        g = s["ppo_simreal"].get("greedy")
        if g:
            gs = g["steps_to_threshold"]["median"]
            ok = gs is not None and gs <= 50_000
            lines.append(f"- our PPO reaches 475 in <= 50k environment steps, by greedy evaluation (every "
                         f"{res['config']['greedy_eval']['every']:,} steps, "
                         f"{res['config']['greedy_eval']['episodes']} fixed episodes): "
                         f"**{'met' if ok else 'missed'}** (median {_n(gs)} steps, "
                         f"{g['n_reached']}/{n} seeds).")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study_dir", type=Path)
    ap.add_argument("--sweeps", type=Path, default=None, help="folder with sweep_*.json from `simreal study sweep`")
    ap.add_argument("--entropy", type=Path, default=None,
                    help="folder with entropy_*.json from `simreal study entropy`")
    ap.add_argument("--command", default=None, help="the study command as run (for the provenance line)")
    args = ap.parse_args()

    res = json.loads((args.study_dir / "results.json").read_text())
    command = args.command or (f"python -m simreal.cli study cartpole --seeds {len(res['seeds'])} "
                               f"--budget {res['budget']} --workers 2")
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    for name in ("learning_curves.png", "gradient_variance.png"):
        if (args.study_dir / name).exists():
            shutil.copy(args.study_dir / name, img / f"policy_gradients_{name}")

    md = ["## Policy gradients on CartPole-v1 (`simreal study cartpole`)", "",
          machine_line(command), "",
          f"{len(res['seeds'])} seeds (0..{len(res['seeds']) - 1}), {res['budget']:,} env steps per run, "
          f"threshold: the average of the last {res['window']} episode returns reaches {res['threshold']:g}. "
          "Wall times are per run, single-threaded, two runs at a time (`--workers 2`) on a 2-core "
          "machine shared with other jobs: they vary with its load.", "", res["table"], ""]
    if "greedy_table" in res:
        ge = res["config"]["greedy_eval"]
        md += [f"Greedy evaluation while training (every {ge['every']:,} steps, {ge['episodes']} episodes "
               f"from the same reset seeds {ge['seed']}.., argmax action, no epsilon):", "",
               res["greedy_table"], ""]
    if "gradient_variance" in res:
        gv = res["gradient_variance"]
        md += [f"Gradient variance at fixed parameters (policy return {gv['policy_mean_return']:.0f}, "
               f"{gv['n_batches']} batches x {gv['batch_episodes']} episodes, same episodes for every "
               f"estimator):", "", gradient_table(gv), ""]
    if "theorem" in res:
        md += ["Policy-gradient theorem on a toy MDP (exact gradient by autograd):", "",
               theorem_table(res["theorem"]), ""]
    md += ["Targets:", "", *targets(res), ""]
    if not (args.sweeps and args.sweeps.exists()):
        md += ["Hyperparameter sweeps: not rerun with this study run; docs/policy_gradients.md section 5 "
               "has the last measured tables and the commands.", ""]
    else:
        for f in sorted(args.sweeps.glob("sweep_*.json")):
            sw = json.loads(f.read_text())
            # tables and figures are rebuilt from the recorded runs (same data, current layout)
            sw.update(sweep_summary(sw["runs"], [r["value"] for r in sw["rows"]], sw["param"],
                                    res["threshold"], res["window"]))
            plots.sweep(sw, img / f"policy_gradients_{f.stem}.png")
            md += [f"Sweep `{sw['algo']}` {sw['param']} ({len(sw['seeds'])} seeds, {sw['budget']:,} steps; "
                   f"`python -m simreal.cli study sweep --algo {sw['algo']} --param {sw['param']} --values "
                   + " ".join(format(r["value"], "g") for r in sw["rows"]) + f" --seeds {len(sw['seeds'])} "
                   f"--budget {sw['budget']}`):", "", sw["table"], ""]
    for f in sorted(args.entropy.glob("entropy_*.json")) if args.entropy and args.entropy.exists() else []:
        en = json.loads(f.read_text())
        shutil.copy(f.with_suffix(".png"), img / f"policy_gradients_{f.stem}.png")
        md += [f"Entropy bonus on DeepSea-N, `{en['algo']}` ({len(en['seeds'])} seeds, {en['budget']:,} steps; "
               f"`python -m simreal.cli study entropy --algo {en['algo']} --sizes "
               + " ".join(str(n) for n in dict.fromkeys(r["size"] for r in en["rows"])) + " --values "
               + " ".join(format(v, "g") for v in dict.fromkeys(r["ent_coef"] for r in en["rows"]))
               + f" --seeds {len(en['seeds'])} --budget {en['budget']} --workers 2`):", "", en["table"], ""]
    update_section("policy_gradients", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
