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


def learning_curves(runs: list[dict], path: Path, budget: int, threshold: float | None = None) -> None:
    plt = _plt()
    grid = np.linspace(0, budget, 300)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    for algo in dict.fromkeys(r["algo"] for r in runs):
        curves = np.array([curve_on_grid(r["episode_end_steps"], r["episode_returns"], grid)
                           for r in runs if r["algo"] == algo])
        with warnings.catch_warnings():   # all-NaN columns before any seed's first episode
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
        color = COLORS.get(algo)
        ax.plot(grid, mean, label=f"{algo} ({len(curves)} seeds)", color=color, lw=1.6)
        ax.fill_between(grid, np.clip(mean - std, 0, None), mean + std, color=color, alpha=0.15, lw=0)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls=":", lw=1)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"episode return ({SMOOTH}-episode running mean)")
    ax.set_title("CartPole-v1: mean over seeds, band = ±1 std")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
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
