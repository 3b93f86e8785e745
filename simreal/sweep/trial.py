"""One trial of a sweep: an ordinary `simreal train` run in OUT/trials/<name>, reporting each
periodic evaluation to Ray Tune as it trains.

The run directory's name comes from the trial's values and seed, so a trial that Ray starts
again (after a failure, a preemption or `--resume`) finds its own run and continues it from the
latest checkpoint instead of starting over: `simreal train --resume`, by another caller.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from simreal.sweep.spec import SweepSpec, trial_config

SEED_KEY = "seed"


def trial_name(params: dict[str, Any], seed: int) -> str:
    """A stable, readable folder name: a digest of the swept values, then the seed."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{digest}-s{seed}"


def eval_metrics(step: int, d: dict[str, Any]) -> dict[str, float]:
    """The reported figures from an evaluation's EvalResult.to_dict()."""
    out = {"timesteps": int(step), "eval_return": d.get("mean_return"),
           "eval_forward_velocity": d.get("mean_forward_velocity"),
           "eval_progress_velocity": d.get("mean_progress_velocity"),
           "eval_tracking_error": d.get("mean_tracking_error"), "eval_fall_rate": d.get("fall_rate")}
    out["mock_velocity"] = None      # measured after training (mock_eval); every report has every metric
    return {k: (math.nan if v is None else float(v)) for k, v in out.items()}


def run_trial(config: dict[str, Any], spec: SweepSpec, out: Path, report: Any) -> dict[str, Any]:
    """Train (or continue) the trial's run; `report(metrics)` after every evaluation and once
    at the end (with the mock robot's figures when the spec asks for them)."""
    from simreal.train.layout import RunPaths
    from simreal.train.run import resume, train

    params = {k: v for k, v in config.items() if k != SEED_KEY}
    seed = int(config[SEED_KEY])
    run_dir = out / "trials" / trial_name(params, seed)
    last: dict[str, Any] = {}

    def on_eval(step: int, result: Any) -> None:
        last.clear()
        last.update(eval_metrics(step, result.to_dict()))
        report(dict(last))

    if RunPaths(run_dir).config.is_file():
        summary = resume(run_dir, timesteps=spec.timesteps, progress=False, on_eval=on_eval)
    else:
        summary = train(trial_config(spec, params, seed), run_dir, progress=False, on_eval=on_eval)
    if not last:        # a run already complete when started again: its recorded last evaluation
        last.update(eval_metrics(summary.timesteps, summary.final_eval or last_recorded_eval(run_dir)))
    final = {**last, "timesteps": int(summary.timesteps), "run_dir": str(run_dir), "finished": True}
    if spec.mock_eval is not None:
        final.update(mock_evaluation(run_dir, spec.robot, spec.mock_eval.profile, spec.mock_eval.seconds))
    report(final)
    return final


def last_recorded_eval(run_dir: Path) -> dict[str, Any]:
    """The last row of the run's evaluations.csv as EvalResult.to_dict() keys ({} if none)."""
    import csv

    from simreal.train.layout import RunPaths

    path = RunPaths(run_dir).evaluations
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    return {k: float(v) for k, v in rows[-1].items() if v not in ("", None)} if rows else {}


def mock_evaluation(run_dir: Path, robot: str, profile: str, seconds: float) -> dict[str, Any]:
    """Export the run's policy and run it on the lockstep mock robot under a gap profile:
    forward velocity (the mock's ground truth: forward distance / policy time) and a fall."""
    from simreal.deploy.session import deploy
    from simreal.export.bundle import export_run
    from simreal.mock.process import spawn

    bundle = run_dir / "bundle"
    if not bundle.is_dir():
        export_run(run_dir, bundle, eval_episodes=0, log=lambda s: None)
    with spawn(robot, gap=profile, lockstep=True) as m:
        summary, _ = deploy(str(bundle), m.port, duration_s=seconds, log_path=str(run_dir / f"mock-{profile}.jsonl"))
    policy_s = summary.get("policy_s") or 0.0
    fwd = summary.get("forward_m")
    return {"mock_profile": profile,
            "mock_velocity": float(fwd / policy_s) if fwd is not None and policy_s > 0 else math.nan,
            "mock_fell": float(bool(summary.get("fallen")) or bool(summary.get("safe_stops")))}
