"""The study's figures: learning curves, gradient variance, hyperparameter sweeps (matplotlib, Agg)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

COLORS = {"reinforce": "#d62728", "reinforce_baseline": "#ff7f0e", "a2c": "#2ca02c",
          "ppo_simreal": "#1f77b4", "dqn_sb3": "#9467bd", "ppo_sb3": "#7f7f7f"}
SMOOTH = 20   # episodes in the running mean drawn for each seed


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def curve_on_grid(ends: list[int], returns: list[float], grid: np.ndarray, smooth: int = SMOOTH) -> np.ndarray:
    """Running mean of the last `smooth` episode returns, as a step function of env steps."""
    r = np.asarray(returns, dtype=float)
    if not len(r):
        return np.full(len(grid), np.nan)
    c = np.cumsum(np.insert(r, 0, 0.0))
    k = np.arange(1, len(r) + 1)
    lo = np.maximum(k - smooth, 0)
    running = (c[k] - c[lo]) / (k - lo)
    idx = np.searchsorted(np.asarray(ends), grid, side="right") - 1     # last episode ended by x
    return np.where(idx >= 0, running[np.clip(idx, 0, None)], np.nan)


def _median_iqr(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and inter-quartile range across seeds (rows), ignoring seeds with no value yet."""
    with warnings.catch_warnings():   # all-NaN columns before any seed's first episode
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanpercentile(curves, [25, 50, 75], axis=0)
    return q[1], q[0], q[2]


def greedy_on_grid(points: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, mean greedy return) of a run's periodic evaluations."""
    return (np.array([p["steps"] for p in points], dtype=float),
            np.array([np.mean(p["returns"]) for p in points], dtype=float))


def learning_curves(runs: list[dict], path: Path, budget: int, threshold: float | None = None,
                    title: str = "CartPole-v1") -> None:
    """One panel per algorithm on shared axes: the training running mean and the greedy
    evaluations, each as the median across seeds with an inter-quartile band."""
    plt = _plt()
    algos = list(dict.fromkeys(r["algo"] for r in runs))
    cols = min(3, len(algos))
    rows = -(-len(algos) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=100, sharex=True,
                             sharey=True, squeeze=False)
    grid = np.linspace(0, budget, 300)
    for ax, algo in zip(axes.flat, algos):
        rs = [r for r in runs if r["algo"] == algo]
        color = COLORS.get(algo, "C0")
        train = np.array([curve_on_grid(r["episode_end_steps"], r["episode_returns"], grid) for r in rs])
        med, lo, hi = _median_iqr(train)
        ax.plot(grid, med, color=color, lw=1.4, label=f"training, {SMOOTH}-episode mean")
        ax.fill_between(grid, lo, hi, color=color, alpha=0.18, lw=0)
        evals = [greedy_on_grid(r["greedy_evals"]) for r in rs if r.get("greedy_evals")]
        if evals and all(len(x) == len(evals[0][0]) for x, _ in evals):
            x = evals[0][0]
            med, lo, hi = _median_iqr(np.array([y for _, y in evals]))
            ax.plot(x, med, color="k", lw=1.2, ls="--", marker=".", ms=4, label="greedy evaluation")
            ax.fill_between(x, lo, hi, color="k", alpha=0.10, lw=0)
        if threshold is not None:
            ax.axhline(threshold, color="k", ls=":", lw=0.8)
        ax.set_title(f"{algo} ({len(rs)} seeds)", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(algos):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("environment steps")
    for ax in axes[:, 0]:
        ax.set_ylabel("episode return")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{title}: median across seeds, band = inter-quartile range", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gradient_variance(gv: dict, path: Path) -> None:
    plt = _plt()
    kinds = list(gv["estimators"])
    traces = [gv["estimators"][k]["trace_cov"] for k in kinds]
    ci = np.array([gv["estimators"][k]["trace_cov_ci90"] for k in kinds])
    err = np.abs(ci.T - np.array(traces))
    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=100)
    ax.bar(range(len(kinds)), traces, yerr=err, capsize=4, color="#4c72b0")
    ax.set_xticks(range(len(kinds)), kinds, rotation=15, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("tr Cov of gradient estimate")
    ax.set_title(f"Gradient variance at fixed parameters (policy return ~{gv['policy_mean_return']:.0f}, "
                 f"{gv['n_batches']} batches x {gv['batch_episodes']} episodes, 90% CI)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sweep(result: dict, path: Path) -> None:
    plt = _plt()
    rows = result["rows"]
    x = np.array([r["value"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.errorbar(x, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], marker="o", capsize=4,
                color=COLORS.get(result["algo"], "C0"), label="final 100-episode training average, mean ± std")
    for r in rows:
        ax.scatter([r["value"]] * len(r["final_avg_return"]), r["final_avg_return"], s=12, color="k",
                   alpha=0.5, zorder=3)
    greedy = [r.get("greedy_eval_return", {}).get("mean") for r in rows]
    if all(g is not None for g in greedy):
        ax.plot(x, greedy, ls="--", marker="s", mfc="none", color="0.4", label="greedy eval, mean over seeds")
    if result["param"] == "lr" and np.all(x > 0):
        ax.set_xscale("log")
    ax.set_xlabel(result["param"])
    ax.set_ylabel("return")
    ax.set_title(f"{result['algo']}: sensitivity to {result['param']} "
                 f"({result['budget']:,} steps, dots = seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def entropy(result: dict, path: Path) -> None:
    """Seeds whose final greedy policy reaches DeepSea's reward, against ent_coef, per chain size."""
    plt = _plt()
    rows = result["rows"]
    values = sorted({r["ent_coef"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for i, n in enumerate(sorted({r["size"] for r in rows})):
        rs = {r["ent_coef"]: r for r in rows if r["size"] == n}
        y = [rs[v]["n_final_greedy_at_reward"] / rs[v]["n_seeds"] if v in rs else np.nan for v in values]
        ax.plot(range(len(values)), y, marker="o", color=f"C{i}", label=f"N = {n}")
    ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("ent_coef")
    ax.set_ylabel("fraction of seeds reaching the reward (final greedy policy)")
    ax.set_title(f"{result['algo']} on DeepSea-N, {result['budget']:,} steps, "
                 f"{len(result['seeds'])} seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
