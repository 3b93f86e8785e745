"""What a sweep leaves behind: trials.csv and a terminal table (every trial, its values and its
final figures), best.yaml (the best configuration, averaged over seeds, as a file
`simreal train --config` accepts) and plots (the metric against each swept key; learning
curves of the top trials)."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simreal.sweep.spec import METRICS, SweepSpec, nest
from simreal.sweep.trial import SEED_KEY, trial_name

FIGURES = ("timesteps",) + METRICS + ("mock_fell",)


def trial_rows(spec: SweepSpec, trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trial from {"config", "metrics", "error"} records (Ray's results, flattened)."""
    rows = []
    for t in trials:
        params = {k: t["config"][k] for k in spec.space}
        m = t.get("metrics") or {}
        row = {"trial": trial_name(params, t["config"][SEED_KEY]), "seed": t["config"][SEED_KEY], **params,
               # stopped: ended early by the scheduler (ASHA), so its figures are from part of the run
               "status": "failed" if t.get("error") else "done" if m.get("finished") else "stopped",
               **{f: m.get(f) for f in FIGURES}, "error": (t.get("error") or "")[:200]}
        rows.append(row)
    return rows


def _key(row: dict, spec: SweepSpec) -> str:
    return repr([row[k] for k in spec.space])


def best_config(spec: SweepSpec, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The swept values with the best mean metric over their seeds (trials that ran to the end)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "done" and _finite(r.get(spec.metric)):
            groups.setdefault(_key(r, spec), []).append(r)
    if not groups:
        return None
    sign = 1.0 if spec.mode == "max" else -1.0
    best = max(groups.values(), key=lambda rs: sign * float(np.mean([r[spec.metric] for r in rs])))
    return {"params": {k: best[0][k] for k in spec.space}, "seeds": [r["seed"] for r in best],
            "mean": float(np.mean([r[spec.metric] for r in best]))}


def best_yaml(spec: SweepSpec, best: dict[str, Any]) -> str:
    body = nest({**spec.set, **best["params"]})
    head = (f"# best of a `simreal sweep`: {spec.metric} {best['mean']:.4g} (mean over seeds {best['seeds']})\n"
            f"# train it: simreal train {spec.robot} --algo {spec.algo} --config best.yaml --timesteps {spec.timesteps}\n")
    return head + yaml.safe_dump({"robot": spec.robot, "algo": spec.algo, **body}, sort_keys=False)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    cols = list(rows[0]) if rows else []
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def table(spec: SweepSpec, rows: list[dict[str, Any]]) -> str:
    cols = ["trial", "seed", *spec.space, "status", "timesteps", spec.metric] + [
        f for f in ("eval_return", "eval_forward_velocity", "mock_velocity") if f != spec.metric
        and any(r.get(f) is not None for r in rows)]
    text = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) if text else len(c) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(t) for t in text)])


def plot(spec: SweepSpec, rows: list[dict[str, Any]], histories: dict[str, list[dict]], out: Path,
         top: int = 5) -> list[Path]:
    """metric_vs_<key>.png per swept key, and learning_curves.png of the `top` trials."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    ok = [r for r in rows if r["status"] != "failed" and _finite(r.get(spec.metric))]
    for key, dim in spec.space.items():
        fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
        xs = [r[key] for r in ok]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        labels = sorted({repr(x) for x in xs}) if not numeric else None
        pos = xs if numeric else [labels.index(repr(x)) for x in xs]
        ax.scatter(pos, [r[spec.metric] for r in ok], s=18, color="C0")
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=7)
        if dim.kind == "loguniform" or (numeric and dim.kind in ("grid", "choice") and min(xs, default=1) > 0
                                        and max(xs, default=1) / min(xs, default=1) >= 100):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(spec.metric)
        ax.set_title(f"{spec.robot} {spec.algo}, one dot per trial", fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"metric_vs_{key.replace('.', '_')}.png"
        fig.savefig(path)
        plt.close(fig)
        made.append(path)
    curve = spec.metric if spec.metric != "mock_velocity" else "eval_return"
    sign = -1.0 if spec.mode == "max" else 1.0
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    for r in sorted(ok, key=lambda r: sign * r[spec.metric])[:top]:
        h = [p for p in histories.get(r["trial"], []) if _finite(p.get(curve))]
        ax.plot([p["timesteps"] for p in h], [p[curve] for p in h], marker=".", lw=1.2,
                label=f"{r['trial']} " + ", ".join(f"{k.split('.')[-1]}={_cell(r[k])}" for k in spec.space))
    ax.set_xlabel("timesteps")
    ax.set_ylabel(curve)
    ax.set_title(f"learning curves of the top {min(top, len(ok))} trials", fontsize=9)
    ax.grid(alpha=0.3)
    if ok:
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "learning_curves.png"
    fig.savefig(path)
    plt.close(fig)
    return made + [path]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)
