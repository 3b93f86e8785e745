"""The CartPole study: our four policy-gradient methods against stable-baselines3's DQN and PPO.

`study_cartpole` trains every algorithm on every seed, measures the gradient variance of the
estimators at fixed parameters, checks the policy-gradient theorem on a toy MDP, and writes
results.json, a markdown table and the plots. `study_sweep` varies one hyperparameter.

Every algorithm's episodes are recorded by the same wrapper (TallyWrapper), so "environment
steps" and "episodes" are counted identically for our code and for SB3.
"""
from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from simreal.algos import deep_sea
from simreal.algos.evaluation import GreedyEval, PeriodicEval, first_reaching, held_fraction, mean_at
from simreal.errors import UserError
from simreal.yamlfiles import config_dirs, read_mapping

deep_sea.register()     # the entropy study's task, by id, also in the worker processes

OURS = ("reinforce", "reinforce_baseline", "a2c", "ppo_simreal")
SB3 = {"dqn_sb3": "DQN", "ppo_sb3": "PPO"}
STUDY_ALGOS = OURS + tuple(SB3)
SWEEP_PARAMS = ("lr", "ent_coef", "gamma")
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "algos" / "cartpole.yaml"


class StudyConfigError(UserError, ValueError):
    """The study's YAML or a sweep argument is wrong; the message names the file or flag."""


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
def study_config_path(name: str = "cartpole.yaml") -> Path:
    """configs/algos/NAME in a checkout, or the installed copy (simreal._configs)."""
    return next((d / "algos" / name for d in config_dirs() if (d / "algos" / name).is_file()),
                DEFAULT_CONFIG.with_name(name))


def load_study_config(path: str | Path | None = None) -> dict:
    """The study's YAML (configs/algos/cartpole.yaml by default, or the installed copy)."""
    path = Path(path) if path is not None else study_config_path()
    try:
        cfg = read_mapping(path, StudyConfigError)
    except OSError as e:
        raise StudyConfigError(f"{path}: cannot read study config: {e.strerror or e}") from e
    for key in ("env", "threshold", "window", "algos"):
        if key not in cfg:
            raise StudyConfigError(f"{path}: missing top-level key {key!r}")
    for name, spec in cfg["algos"].items():
        if name not in STUDY_ALGOS:
            raise StudyConfigError(f"{path}: algos.{name}: unknown algorithm; known: {list(STUDY_ALGOS)}")
        if ("config" in spec) == ("sb3" in spec) or ("sb3" in spec) != (name in SB3):
            raise StudyConfigError(f"{path}: algos.{name}: needs exactly one of 'config' (ours) or 'sb3'")
    try:
        cfg["greedy_eval"] = greedy_spec(cfg)
    except (TypeError, ValueError) as e:
        raise StudyConfigError(f"{path}: greedy_eval: {e}") from e
    return cfg


def greedy_spec(cfg: dict) -> GreedyEval:
    """The config's greedy_eval block (every, episodes, seed) as a GreedyEval; defaults if absent."""
    g = cfg.get("greedy_eval") or {}
    return GreedyEval(**{k: int(v) for k, v in g.items()})


def with_param(algo: str, spec: dict, param: str, value: float) -> dict:
    """A copy of one algorithm's spec with lr / ent_coef / gamma set to `value`."""
    if param not in SWEEP_PARAMS:
        raise StudyConfigError(f"--param must be one of {SWEEP_PARAMS}, got {param!r}")
    spec = json.loads(json.dumps(spec))
    if "config" in spec:
        spec["config"][param] = value
        return spec
    key = {"lr": "learning_rate", "ent_coef": "ent_coef", "gamma": "gamma"}[param]
    if algo == "dqn_sb3" and param == "ent_coef":
        raise ValueError("dqn_sb3 has no entropy coefficient; sweep lr or gamma instead")
    old = spec["sb3"].get(key)
    # keep the schedule's shape: a swept "lin_X" learning rate becomes "lin_value"
    spec["sb3"][key] = f"lin_{value}" if isinstance(old, str) and old.startswith("lin_") else value
    return spec


def _sb3_kwargs(sb3: dict) -> dict:
    def value(v: Any) -> Any:
        if isinstance(v, str) and v.startswith("lin_"):
            start = float(v[4:])
            return lambda progress_remaining: progress_remaining * start
        return v
    return {k: value(v) for k, v in sb3.items()}


# ---------------------------------------------------------------------------------------------
# One training run
# ---------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Environment steps and finished episodes, shared by all env copies of one run."""

    steps: int = 0
    ends: list[int] = field(default_factory=list)       # global step count at each episode's end
    returns: list[float] = field(default_factory=list)
    on_step: Callable[[int], None] | None = None        # called with the new count after each step


class TallyWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, tally: Tally):
        super().__init__(env)
        self.tally, self.ret = tally, 0.0

    def reset(self, **kwargs: Any):
        self.ret = 0.0
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        obs, r, term, trunc, info = self.env.step(action)
        self.tally.steps += 1
        self.ret += float(r)
        if self.tally.on_step is not None:
            self.tally.on_step(self.tally.steps)
        if term or trunc:
            self.tally.ends.append(self.tally.steps)
            self.tally.returns.append(self.ret)
        return obs, r, term, trunc, info


def run_one(algo: str, seed: int, budget: int, spec: dict, env_id: str = "CartPole-v1",
            greedy: GreedyEval = GreedyEval()) -> dict:
    """Train one algorithm on one seed for `budget` env steps; return its episode record.

    The greedy policy is evaluated every `greedy.every` steps while it trains ("greedy_evals")
    and once more when training ends ("eval_returns"), on the same fixed episodes.
    """
    import torch
    torch.set_num_threads(1)
    periodic = PeriodicEval(env_id, greedy)
    tally = Tally(on_step=periodic.on_step)
    n_envs = int(spec.get("n_envs", 1))
    begin = time.perf_counter()
    if algo in OURS:
        from simreal.algos.api import ALGOS, start
        agent, envs = start(algo, [TallyWrapper(gym.make(env_id), tally) for _ in range(n_envs)],
                            seed, spec["config"])
        periodic.act = agent.predict
        ALGOS[algo].train(agent, envs, budget, None)
    elif algo in SB3:
        import stable_baselines3 as sb3
        from stable_baselines3.common.vec_env import DummyVecEnv
        venv = DummyVecEnv([lambda: TallyWrapper(gym.make(env_id), tally) for _ in range(n_envs)])
        model = getattr(sb3, SB3[algo])("MlpPolicy", venv, seed=seed, verbose=0, device="cpu",
                                        **_sb3_kwargs(spec["sb3"]))
        periodic.act = lambda obs: model.predict(obs, deterministic=True)[0]
        model.learn(total_timesteps=budget)
    else:
        raise ValueError(f"unknown algo {algo!r}; choose from {STUDY_ALGOS}")
    wall = time.perf_counter() - begin
    return {"algo": algo, "seed": seed, "budget": budget, "wall_time_s": wall,
            "steps": tally.steps, "episode_end_steps": tally.ends, "episode_returns": tally.returns,
            "greedy_evals": periodic.points, "eval_returns": periodic.final(periodic.act)}


def _run_job(job: tuple) -> dict:
    return run_one(*job)


def run_jobs(jobs: list[tuple], workers: int = 1, log: Any = print, threshold: float = 475.0,
             window: int = 100) -> list[dict]:
    """Run (algo, seed, budget, spec, env_id, greedy) jobs, sequentially or in a process pool."""
    results: list[dict] = []

    def done(r: dict) -> None:
        results.append(r)
        s = solve_point(r["episode_end_steps"], r["episode_returns"], threshold, window)
        log(f"  {r['algo']:<19} seed {r['seed']}: {r['wall_time_s']:6.1f} s, "
            f"{len(r['episode_returns'])} episodes, "
            f"{'solved at step ' + str(s['steps']) if s else 'not solved'}")

    if workers <= 1:
        for job in jobs:
            done(_run_job(job))
    else:
        import multiprocessing as mp
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for r in pool.map(_run_job, jobs):
                done(r)
    return results


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def solve_point(ends: list[int], returns: list[float], threshold: float = 475.0,
                window: int = 100) -> dict | None:
    """First episode at which the average of the last `window` returns reaches `threshold`.

    Returns {"episodes", "steps", "window_start_steps"} (window_start_steps: env steps before the
    first episode of that window, i.e. what was spent before the solving streak), or None.
    """
    r = np.asarray(returns, dtype=float)
    if len(r) < window:
        return None
    avg = np.convolve(r, np.ones(window) / window, mode="valid")     # avg[i] = mean(r[i:i+window])
    hits = np.flatnonzero(avg >= threshold)
    if not len(hits):
        return None
    i = int(hits[0])
    return {"episodes": i + window, "steps": int(ends[i + window - 1]),
            "window_start_steps": int(ends[i - 1]) if i > 0 else 0}


def spread(values: list[float], n_runs: int) -> dict:
    """Median over all runs, counting a run that never got there as +inf; min and max of the rest."""
    padded = sorted(values) + [math.inf] * (n_runs - len(values))
    median = float(np.median(padded)) if padded else math.inf
    return {"median": median if math.isfinite(median) else None,
            "min": min(values) if values else None, "max": max(values) if values else None}


def _mean_std(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "per_seed": []}
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}


def summarize(runs: list[dict], threshold: float, window: int,
              report_at: int | None = None) -> dict[str, dict]:
    """Per algorithm: the training-average figures, and the greedy-evaluation ones beside them
    (first evaluation reaching `threshold`, the mean at `report_at` steps, each seed's best)."""
    by_algo: dict[str, list[dict]] = {}
    for r in runs:
        by_algo.setdefault(r["algo"], []).append(r)
    out = {}
    for algo, rs in by_algo.items():
        solved = [s for s in (solve_point(r["episode_end_steps"], r["episode_returns"], threshold, window)
                              for r in rs) if s]
        finals = [float(np.mean(r["episode_returns"][-window:])) for r in rs]
        walls = [r["wall_time_s"] for r in rs]
        out[algo] = {
            "n_seeds": len(rs), "n_solved": len(solved),
            "steps_to_threshold": spread([s["steps"] for s in solved], len(rs)),
            "episodes_to_threshold": spread([s["episodes"] for s in solved], len(rs)),
            "window_start_steps": spread([s["window_start_steps"] for s in solved], len(rs)),
            "final_avg_return": {"mean": float(np.mean(finals)), "std": float(np.std(finals)),
                                 "per_seed": finals},
            "greedy_eval_return": _mean_std([float(np.mean(r["eval_returns"])) for r in rs
                                             if r.get("eval_returns")]),
            "wall_time_s": {"mean": float(np.mean(walls)), "std": float(np.std(walls))},
        }
        curves = [r.get("greedy_evals") or [] for r in rs]
        if any(curves):
            reached = [s for s in (first_reaching(c, threshold) for c in curves) if s is not None]
            at = [m for m in (mean_at(c, report_at) for c in curves) if m is not None] if report_at else []
            peaks = [max(float(np.mean(p["returns"])) for p in c) for c in curves if c]
            held = [h for h in (held_fraction(c, threshold) for c in curves) if h is not None]
            out[algo]["greedy"] = {
                "n_reached": len(reached), "steps_to_threshold": spread(reached, len(rs)),
                "report_at": report_at, "at_report": _mean_std(at), "peak": _mean_std(peaks),
                "held_after_reaching": _mean_std(held), "final": out[algo]["greedy_eval_return"]}
    return out


# ---------------------------------------------------------------------------------------------
# Gradient variance at fixed parameters
# ---------------------------------------------------------------------------------------------
def gradient_variance_study(study_cfg: dict, log: Any = print) -> dict:
    """Partly train reinforce_baseline, freeze it, fit a critic, and measure every estimator."""
    import torch

    from simreal.algos.api import learn
    from simreal.algos.common import EnvBatch, collect_episodes, make_value, reward_to_go
    from simreal.algos.gradient_variance import measure

    torch.set_num_threads(1)
    gv = study_cfg["gradient_variance"]
    spec = study_cfg["algos"]["reinforce_baseline"]
    env_id, seed = study_cfg["env"], int(gv["seed"])

    recent: list[float] = []

    def until_target(rec: dict) -> bool:   # returning False ends training
        if rec["event"] == "episode":
            recent.append(rec["episode_return"])
        return not (len(recent) >= 10 and np.mean(recent[-10:]) >= gv["target_return"]) \
            and len(recent) < int(gv["max_warmup_episodes"])
    agent = learn("reinforce_baseline", gym.make(env_id), 10**9, seed, spec["config"], callback=until_target)
    gamma = agent.config.gamma
    envs = EnvBatch([gym.make(env_id)])
    envs.reset(seed=seed + 1)

    def play(n: int) -> list:
        return collect_episodes(agent, envs, n, update_norm=False)

    # a critic fitted afresh to the frozen policy: regress V(s_t) onto Monte-Carlo G_t
    fit = play(int(gv["fit_episodes"]))
    obs = torch.cat([e.obs for e in fit])
    targets = torch.cat([reward_to_go(e.rewards, gamma) for e in fit])
    value = make_value(obs.shape[1], agent.config)
    opt = torch.optim.Adam(value.parameters(), lr=float(gv["fit_lr"]))
    for _ in range(int(gv["fit_steps"])):
        loss = (value(obs).squeeze(-1) - targets).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    explained = 1.0 - float(((value(obs).squeeze(-1) - targets).var() / targets.var()).detach())
    log(f"  frozen policy: mean return {np.mean([float(e.rewards.sum()) for e in fit]):.1f} over "
        f"{len(fit)} episodes; critic explains {explained:.2f} of the return variance")

    # the n of the n-step estimator is A2C's rollout length, so "a2c" is measured as it trains
    n_steps = int(study_cfg["algos"].get("a2c", {}).get("config", {}).get("n_steps", 5))
    stats = measure(agent.policy, value, play, int(gv["n_batches"]), int(gv["batch_episodes"]),
                    gamma, float(gv["gae_lambda"]), n_steps, keep_samples=True)
    for kind, s in stats.items():
        samples = s.pop("samples")
        s["trace_cov_ci90"] = _bootstrap_trace_ci(samples, seed)
    return {"policy_mean_return": float(np.mean([float(e.rewards.sum()) for e in fit])),
            "critic_explained_variance": explained, "warmup_episodes": len(recent),
            "n_batches": int(gv["n_batches"]), "batch_episodes": int(gv["batch_episodes"]),
            "gamma": gamma, "gae_lambda": float(gv["gae_lambda"]), "n_steps": n_steps,
            "estimators": stats}


def _bootstrap_trace_ci(grads: Any, seed: int, n_boot: int = 1000) -> list[float]:
    """5th and 95th percentiles of tr Cov over bootstrap resamples of the batches."""
    g = np.asarray(grads, dtype=np.float64)
    rng = np.random.default_rng(seed)
    traces = [g[rng.integers(0, len(g), len(g))].var(0, ddof=1).sum() for _ in range(n_boot)]
    return [float(np.percentile(traces, 5)), float(np.percentile(traces, 95))]


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def _fmt_spread(s: dict, n_solved: int, n: int, scale: float = 1.0, unit: str = "") -> str:
    if s["median"] is None:
        return f"not reached ({n_solved}/{n})"
    text = f"{s['median'] / scale:,.0f}{unit} [{s['min'] / scale:,.0f}–{s['max'] / scale:,.0f}]"
    return text + (f" ({n_solved}/{n})" if n_solved < n else "")


def _fmt_fraction(d: dict) -> str:
    return "–" if d["mean"] is None else f"{100 * d['mean']:.0f}% (min {100 * min(d['per_seed']):.0f}%)"


def _fmt_mean_std(d: dict | None) -> str:
    return "–" if not d or d["mean"] is None else f"{d['mean']:.1f} ± {d['std']:.1f}"


def results_table(summary: dict, gv: dict | None, threshold: float, window: int) -> str:
    """Markdown table: one row per algorithm (order of STUDY_ALGOS)."""
    gvar = {"reinforce": "reward_to_go", "reinforce_baseline": "baseline", "a2c": "actor_critic_nstep"}
    lines = [f"| algorithm | env steps to {window}-ep avg {threshold:g}, median [min–max] | "
             f"episodes to it | steps before the solving window | final {window}-ep avg return | "
             f"final greedy eval return | wall time (s) | gradient variance tr Cov |",
             "|---|---|---|---|---|---|---|---|"]
    for algo in [a for a in STUDY_ALGOS if a in summary]:
        s = summary[algo]
        n, k = s["n_seeds"], s["n_solved"]
        var = "–"
        if gv and algo in gvar and gvar[algo] in gv["estimators"]:
            var = f"{gv['estimators'][gvar[algo]]['trace_cov']:.3g}"
        lines.append(f"| {algo} | {_fmt_spread(s['steps_to_threshold'], k, n)} | "
                     f"{_fmt_spread(s['episodes_to_threshold'], k, n)} | "
                     f"{_fmt_spread(s['window_start_steps'], k, n)} | "
                     f"{s['final_avg_return']['mean']:.1f} ± {s['final_avg_return']['std']:.1f} | "
                     f"{_fmt_mean_std(s.get('greedy_eval_return'))} | "
                     f"{s['wall_time_s']['mean']:.0f} ± {s['wall_time_s']['std']:.0f} | {var} |")
    return "\n".join(lines)


def greedy_table(summary: dict, threshold: float, greedy: GreedyEval) -> str:
    """Markdown table of the greedy evaluations taken while training (one row per algorithm)."""
    at = next((s["greedy"]["report_at"] for s in summary.values() if "greedy" in s), None)
    lines = [f"| algorithm | env steps to a greedy {threshold:g} (first of the evaluations every "
             f"{greedy.every:,} steps), median [min–max] | greedy return at {at or 0:,} steps | "
             f"best greedy evaluation | later evaluations still at {threshold:g} | "
             f"final greedy eval return |", "|---|---|---|---|---|---|"]
    for algo in [a for a in STUDY_ALGOS if a in summary and "greedy" in summary[a]]:
        g, n = summary[algo]["greedy"], summary[algo]["n_seeds"]
        lines.append(f"| {algo} | {_fmt_spread(g['steps_to_threshold'], g['n_reached'], n)} | "
                     f"{_fmt_mean_std(g['at_report'])} | {_fmt_mean_std(g['peak'])} | "
                     f"{_fmt_fraction(g['held_after_reaching'])} | {_fmt_mean_std(g['final'])} |")
    return "\n".join(lines)


def gradient_table(gv: dict) -> str:
    base = gv["estimators"].get("reward_to_go", {}).get("trace_cov")
    lines = ["| estimator (psi_t) | tr Cov of g | 90% bootstrap CI | relative to reward-to-go |",
             "|---|---|---|---|"]
    for kind, s in gv["estimators"].items():
        lo, hi = s["trace_cov_ci90"]
        rel = f"{s['trace_cov'] / base:.2g}×" if base else "–"
        lines.append(f"| {kind} | {s['trace_cov']:.3g} | {lo:.3g}–{hi:.3g} | {rel} |")
    return "\n".join(lines)


def theorem_table(th: dict) -> str:
    lines = ["| estimator (psi_t) | ‖mean − exact‖ / ‖exact‖ | error in standard errors | "
             "max per-parameter \\|z\\| | tr Cov |", "|---|---|---|---|---|"]
    for kind, s in th["estimators"].items():
        z = s["max_abs_z"]
        lines.append(f"| {kind} | {s['rel_error_of_mean']:.3f} | {s['error_in_stderrs']:.2f} | "
                     f"{z:.2f} | {s['trace_cov']:.3g} |" if z < 1e4 else
                     f"| {kind} | {s['rel_error_of_mean']:.3f} | {s['error_in_stderrs']:.2f} | "
                     f"> 10⁴ | {s['trace_cov']:.3g} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The two studies
# ---------------------------------------------------------------------------------------------
def study_cartpole(seeds: int = 5, budget: int = 100_000, out: str | Path = "runs/study_cartpole",
                   workers: int = 1, algos: tuple[str, ...] = STUDY_ALGOS, config: str | None = None,
                   gradient_variance: bool = True, theorem: bool = True, log: Any = print) -> dict:
    from simreal.algos import plots

    cfg = load_study_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = [a for a in algos if a not in cfg["algos"]]
    if unknown:
        raise ValueError(f"algorithm(s) {unknown} have no entry in the study config")
    threshold, window, env_id = float(cfg["threshold"]), int(cfg["window"]), cfg["env"]

    result: dict[str, Any] = {"env": env_id, "threshold": threshold, "window": window,
                              "budget": budget, "seeds": list(range(seeds)), "nproc": os.cpu_count()}
    if theorem:
        from simreal.algos.toy_mdp import check_theorem
        log("policy-gradient theorem on a toy MDP (exact gradient vs Monte-Carlo estimators)")
        result["theorem"] = check_theorem()
    if gradient_variance:
        log("gradient variance at fixed parameters")
        result["gradient_variance"] = gradient_variance_study(cfg, log)

    greedy = cfg["greedy_eval"]
    result["config"] = {**cfg, "greedy_eval": vars(greedy)}
    log(f"training {len(algos)} algorithms x {seeds} seeds, {budget:,} env steps each "
        f"(greedy evaluation every {greedy.every:,} steps, {greedy.episodes} episodes)")
    jobs = [(a, s, budget, cfg["algos"][a], env_id, greedy) for a in algos for s in range(seeds)]
    runs = run_jobs(jobs, workers, log, threshold, window)
    result["runs"] = runs
    result["summary"] = summarize(runs, threshold, window, cfg.get("report_at"))
    result["table"] = results_table(result["summary"], result.get("gradient_variance"), threshold, window)
    result["greedy_table"] = greedy_table(result["summary"], threshold, greedy)

    (out / "results.json").write_text(json.dumps(result, indent=1))
    plots.learning_curves(runs, out / "learning_curves.png", budget, threshold)
    if "gradient_variance" in result:
        plots.gradient_variance(result["gradient_variance"], out / "gradient_variance.png")
    log("")
    log(result["table"])
    log("")
    log(result["greedy_table"])
    if "gradient_variance" in result:
        log("")
        log(gradient_table(result["gradient_variance"]))
    if "theorem" in result:
        log("")
        log(theorem_table(result["theorem"]))
    log(f"\nwrote {out / 'results.json'}, {out / 'learning_curves.png'}"
        + (f", {out / 'gradient_variance.png'}" if "gradient_variance" in result else ""))
    return result


def sweep_summary(runs: list[dict], values: list[float], param: str, threshold: float,
                  window: int) -> dict:
    """Per swept value: final training average, greedy evaluation, how many seeds solved."""
    rows = []
    for v in values:
        rs = [r for r in runs if r["value"] == v]
        finals = [float(np.mean(r["episode_returns"][-window:])) for r in rs]
        greedy = [float(np.mean(r["eval_returns"])) for r in rs if r.get("eval_returns")]
        solved = [solve_point(r["episode_end_steps"], r["episode_returns"], threshold, window) for r in rs]
        rows.append({"value": v, "final_avg_return": finals, "mean": float(np.mean(finals)),
                     "std": float(np.std(finals)), "greedy_eval_return": _mean_std(greedy),
                     "n_solved": sum(s is not None for s in solved),
                     "steps_to_threshold": [s["steps"] if s else None for s in solved],
                     "greedy_steps_to_threshold": [first_reaching(r.get("greedy_evals") or [], threshold)
                                                   for r in rs]})
    table = "\n".join(
        [f"| {param} | final {window}-ep avg return, mean ± std | per seed | greedy eval return "
         f"| greedy reached {threshold:g} | solved (training avg) |", "|---|---|---|---|---|---|"]
        + [f"| {r['value']:g} | {r['mean']:.1f} ± {r['std']:.1f} | "
           f"{', '.join(f'{x:.0f}' for x in r['final_avg_return'])} | "
           f"{_fmt_mean_std(r['greedy_eval_return'])} | "
           f"{sum(x is not None for x in r['greedy_steps_to_threshold'])}/{len(rs)} | "
           f"{r['n_solved']}/{len(r['final_avg_return'])} |"
           for r in rows])
    return {"rows": rows, "table": table}


def study_sweep(algo: str, param: str, values: list[float], seeds: int = 3, budget: int = 100_000,
                out: str | Path = "runs/study_sweep", workers: int = 1, config: str | None = None,
                env: str | None = None, log: Any = print) -> dict:
    from simreal.algos import plots

    cfg = load_study_config(config)
    if algo not in cfg["algos"]:
        raise ValueError(f"--algo {algo!r} has no entry in the study config; known: {list(cfg['algos'])}")
    if not values:
        raise ValueError("--values needs at least one value")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threshold, window, env_id = float(cfg["threshold"]), int(cfg["window"]), env or cfg["env"]
    if env_id not in gym.registry:
        raise StudyConfigError(f"--env {env_id!r}: no such Gymnasium environment")
    jobs, keys = [], []
    for v in values:
        spec = with_param(algo, cfg["algos"][algo], param, v)
        for s in range(seeds):
            jobs.append((algo, s, budget, spec, env_id, cfg["greedy_eval"]))
            keys.append(v)
    log(f"sweeping {algo} {param} over {values} on {env_id}, {seeds} seeds, {budget:,} env steps each")
    runs = run_jobs(jobs, workers, log, threshold, window)
    result = {"algo": algo, "param": param, "env": env_id, "threshold": threshold,
              "budget": budget, "seeds": list(range(seeds)),
              "runs": [{**r, "value": k} for r, k in zip(runs, keys)]}
    result.update(sweep_summary(result["runs"], values, param, threshold, window))
    stem = f"sweep_{algo}_{param}" + (f"_{env_id.split('/')[-1]}" if env else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    plots.sweep(result, out / f"{stem}.png")
    log("")
    log(result["table"])
    log(f"\nwrote {out / (stem + '.json')}, {out / (stem + '.png')}")
    return result
