"""Does an entropy bonus help exploration? `simreal study entropy` measures it on DeepSea.

On CartPole every positive coefficient lowered A2C's return (docs/policy_gradients.md, section 5):
CartPole needs no exploration. DeepSea (simreal/algos/deep_sea.py) needs nothing else: its only
reward sits at the end of a chain whose every step towards it is punished. For each chain size
and coefficient, over several seeds, this counts the seeds whose greedy policy ends at the reward,
the training episodes that found it, and when each seed's greedy policy first reached it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from simreal.algos.evaluation import first_reaching
from simreal.algos.study import (StudyConfigError, load_study_config, run_jobs, spread, study_config_path,
                                 with_param)

DEFAULT_SIZES = (6, 8, 10, 12)
DEFAULT_VALUES = (0.0, 0.01, 0.03, 0.1)


def summarize_entropy(runs: list[dict], threshold: float) -> list[dict]:
    """One row per (size, ent_coef): how many seeds learned to reach the reward, and how fast."""
    rows = []
    for key in dict.fromkeys((r["size"], r["value"]) for r in runs):
        rs = [r for r in runs if (r["size"], r["value"]) == key]
        final_ok = [float(np.mean(r["eval_returns"])) >= threshold for r in rs]
        found = [sum(x >= threshold for x in r["episode_returns"]) for r in rs]
        first = [first_reaching(r["greedy_evals"], threshold) for r in rs]
        rows.append({"size": key[0], "ent_coef": key[1], "n_seeds": len(rs),
                     "n_final_greedy_at_reward": int(sum(final_ok)),
                     "episodes_at_reward": found,
                     "greedy_first_at_reward": spread([f for f in first if f is not None], len(rs)),
                     "final_avg_return": float(np.mean([np.mean(r["episode_returns"][-100:]) for r in rs]))})
    return rows


def entropy_table(rows: list[dict]) -> str:
    lines = ["| chain size N | random policy finds it (per episode) | ent_coef | seeds whose final greedy "
             "policy reaches the reward | training episodes that reached it, per seed | env steps until "
             "the greedy policy first reaches it, median [min–max] | final 100-ep avg return |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["greedy_first_at_reward"]
        first = "never" if s["median"] is None and s["min"] is None else (
            f"{'not by most seeds' if s['median'] is None else format(s['median'], ',.0f')} "
            f"[{s['min']:,.0f}–{s['max']:,.0f}]")
        lines.append(f"| {r['size']} | 1 in {2 ** (r['size'] - 1):,} | {r['ent_coef']:g} | "
                     f"{r['n_final_greedy_at_reward']}/{r['n_seeds']} | "
                     f"{', '.join(str(x) for x in r['episodes_at_reward'])} | {first} | "
                     f"{r['final_avg_return']:.2f} |")
    return "\n".join(lines)


def study_entropy(algo: str = "a2c", sizes: tuple[int, ...] = DEFAULT_SIZES,
                  values: tuple[float, ...] = DEFAULT_VALUES, seeds: int = 5, budget: int = 100_000,
                  out: str | Path = "runs/study_entropy", workers: int = 1, config: str | None = None,
                  log: Any = print) -> dict:
    from simreal.algos import plots
    from simreal.algos.deep_sea import SIZES

    cfg = load_study_config(config or study_config_path("deep_sea.yaml"))
    if algo not in cfg["algos"]:
        raise StudyConfigError(f"--algo {algo!r} has no entry in {config or 'deep_sea.yaml'}; "
                         f"known: {list(cfg['algos'])}")
    bad = [n for n in sizes if n not in SIZES]
    if bad:
        raise StudyConfigError(f"--sizes {bad}: DeepSea is registered for sizes {list(SIZES)}")
    threshold, window = float(cfg["threshold"]), int(cfg["window"])
    jobs, keys = [], []
    for n in sizes:
        for v in values:
            spec = with_param(algo, cfg["algos"][algo], "ent_coef", v)
            for s in range(seeds):
                jobs.append((algo, s, budget, spec, f"simreal/DeepSea{n}-v0", cfg["greedy_eval"]))
                keys.append((n, v))
    log(f"entropy on DeepSea: {algo}, sizes {list(sizes)}, ent_coef {list(values)}, {seeds} seeds, "
        f"{budget:,} env steps each")
    runs = [{**r, "size": n, "value": v} for r, (n, v) in zip(run_jobs(jobs, workers, log, threshold, window),
                                                                keys)]
    rows = summarize_entropy(runs, threshold)
    result = {"algo": algo, "budget": budget, "seeds": list(range(seeds)), "threshold": threshold,
              "config": {**cfg, "greedy_eval": vars(cfg["greedy_eval"])}, "runs": runs, "rows": rows,
              "table": entropy_table(rows)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"entropy_{algo}.json").write_text(json.dumps(result, indent=1))
    plots.entropy(result, out / f"entropy_{algo}.png")
    log("")
    log(result["table"])
    log(f"\nwrote {out / f'entropy_{algo}.json'}, {out / f'entropy_{algo}.png'}")
    return result
