"""`simreal sweep SPEC`: the trials on Ray Tune, then the table, best.yaml and the plots.

Without --address a local Ray instance is started, sized to this machine (one CPU per trial);
with --address it joins an existing cluster. A failed or preempted trial is retried
(spec.max_failures) and continues from its run's latest checkpoint; --resume continues an
interrupted sweep with Ray's Tuner.restore. Results land under OUT: trials/<name>/ (ordinary run
directories), ray/ (Tune's experiment state), trials.csv, best.yaml and the plots.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from simreal.errors import UserError
from simreal.sweep import results
from simreal.sweep.spec import SweepSpec
from simreal.sweep.trial import SEED_KEY, run_trial, trial_name

EXPERIMENT = "tune"


def param_space(spec: SweepSpec, tune: Any) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for key, dim in spec.space.items():
        v = getattr(dim, dim.kind)
        space[key] = {"grid": tune.grid_search, "choice": tune.choice,
                      "uniform": lambda b: tune.uniform(*b), "loguniform": lambda b: tune.loguniform(*b)}[dim.kind](v)
    space[SEED_KEY] = spec.seeds[0] if spec.search == "optuna" else tune.grid_search(spec.seeds)
    return space


def sweep(spec: SweepSpec, out: str | Path, *, address: str | None = None, max_concurrent: int | None = None,
          resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    import ray          # the cluster extra; a missing one is reported as such (simreal.errors)
    from ray import tune

    out = Path(out).resolve()
    state = out / "ray" / EXPERIMENT
    if resume and not state.is_dir():
        raise UserError(f"--resume: {out} holds no sweep to continue (no {state})")
    if not resume and state.is_dir():
        raise UserError(f"--out {out}: already holds a sweep; continue it with --resume or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=1))

    def trainable(config: dict[str, Any]) -> None:
        run_trial(config, spec, out, tune.report)

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    trainable = tune.with_resources(trainable, {"cpu": 1})
    if resume:
        tuner = tune.Tuner.restore(str(state), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(trainable, param_space=param_space(spec, tune),
                           tune_config=_tune_config(spec, tune, max_concurrent),
                           run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(out / "ray"), verbose=0,
                                                     failure_config=tune.FailureConfig(max_failures=spec.max_failures)))
    grid = tuner.fit()
    trials, histories = [], {}
    for r in grid:
        trials.append({"config": r.config, "metrics": r.metrics, "error": None if r.error is None else str(r.error)})
        name = trial_name({k: r.config[k] for k in spec.space}, r.config[SEED_KEY])
        df = r.metrics_dataframe
        histories[name] = [] if df is None else df.to_dict("records")
    rows = results.trial_rows(spec, trials)
    results.write_csv(rows, out / "trials.csv")
    best = results.best_config(spec, rows)
    if best is not None:
        (out / "best.yaml").write_text(results.best_yaml(spec, best))
    plots = results.plot(spec, rows, histories, out)
    log(results.table(spec, rows))
    failed = sum(r["status"] == "failed" for r in rows)
    log(f"\n{len(rows)} trials ({failed} failed); "
        + (f"best {spec.metric} {best['mean']:.4g} with {best['params']} -> {out / 'best.yaml'}" if best else
           "no trial finished with a finite metric"))
    return {"rows": rows, "best": best, "plots": [str(p) for p in plots], "out": str(out)}


def _tune_config(spec: SweepSpec, tune: Any, max_concurrent: int | None) -> Any:
    search_alg = scheduler = None
    if spec.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch
        search_alg = OptunaSearch(seed=spec.seeds[0])
    if spec.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler
        # max_t past the budget: a trial reaching its last evaluation is not stopped before
        # its final report (and mock evaluation)
        scheduler = ASHAScheduler(time_attr="timesteps", max_t=2 * spec.timesteps,
                                  grace_period=max(1, spec.grace_steps))
    return tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=search_alg, scheduler=scheduler,
                           num_samples=1 if spec.search == "grid" else spec.num_samples,
                           max_concurrent_trials=max_concurrent)
