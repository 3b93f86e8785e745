"""A sweep's SPEC.yaml: what to train, over which space, judged by which metric.

    robot: quadruped
    algo: ppo
    timesteps: 300000
    seeds: 3                         # seeds 0..2 (or a list: [0, 4, 7])
    metric: eval_return              # a figure each trial reports (METRICS), maximized
    search: grid                     # grid | random | optuna
    num_samples: 1                   # random / optuna: configurations drawn
    scheduler: none                  # none | asha (early stopping on the periodic evaluations)
    grace_steps: 100000              # asha: never stop a trial before this many steps
    max_failures: 1                  # a failed trial is retried from its latest checkpoint
    set: {n_envs: 16}                # fixed overrides for every trial (dotted keys, as --set)
    space:                           # dotted config keys -> one of
      hyperparams.learning_rate: {loguniform: [1.0e-4, 1.0e-3]}
      hyperparams.ent_coef: {grid: [0.0, 0.01]}       # also: uniform [lo, hi], choice [...]
    mock_eval: {profile: worn, seconds: 10}           # optional: also on the mock robot

Everything is checked here, before Ray starts: unknown keys, empty spaces, non-finite or
reversed bounds, and each value of the space against the training config's own schema.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simreal.errors import UserError
from simreal.yamlfiles import parse_value, read_mapping

METRICS = ("eval_return", "eval_forward_velocity", "eval_progress_velocity", "eval_tracking_error",
           "eval_fall_rate", "mock_velocity")
MINIMIZED = {"eval_tracking_error", "eval_fall_rate"}
KINDS = ("grid", "choice", "uniform", "loguniform")


class SpecError(UserError, ValueError):
    """The SPEC is wrong; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dimension(_Strict):
    """One swept key: exactly one of grid / choice (lists of values) or uniform / loguniform [lo, hi]."""
    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _one(self) -> "Dimension":
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"needs exactly one of {', '.join(KINDS)}, got {given or 'none'}")
        kind = given[0]
        v = getattr(self, kind)
        if kind in ("grid", "choice"):
            if not v:
                raise ValueError(f"{kind}: empty list")
            bad = [x for x in v if isinstance(x, float) and not math.isfinite(x)]
            if bad:
                raise ValueError(f"{kind}: non-finite value {bad[0]}")
        else:
            lo, hi = v
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"{kind}: bounds must be finite, got [{lo}, {hi}]")
            if not lo < hi:
                raise ValueError(f"{kind}: lower bound {lo} must be below upper bound {hi}")
            if kind == "loguniform" and lo <= 0:
                raise ValueError(f"loguniform: bounds must be positive, got [{lo}, {hi}]")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    def probes(self) -> list[Any]:
        """Values that must all make a valid training config: every listed value, or both bounds."""
        return list(getattr(self, self.kind))


class MockEval(_Strict):
    profile: str = "nominal"
    seconds: float = Field(default=10.0, gt=0, le=600)


class SweepSpec(_Strict):
    robot: str
    algo: str
    timesteps: int = Field(gt=0)
    seeds: list[int] = Field(min_length=1)
    metric: Literal[METRICS] = "eval_return"  # type: ignore[valid-type]
    search: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = Field(default=1, gt=0)
    scheduler: Literal["none", "asha"] = "none"
    grace_steps: int = Field(default=0, ge=0)
    max_failures: int = Field(default=1, ge=0)
    set: dict[str, Any] = {}
    space: dict[str, Dimension] = Field(min_length=1)
    mock_eval: MockEval | None = None

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        return list(range(v)) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        kinds = {k: d.kind for k, d in self.space.items()}
        if self.search == "grid" and any(k != "grid" for k in kinds.values()):
            raise ValueError("search: grid takes only grid dimensions; use search: random or optuna "
                             f"for {[k for k, v in kinds.items() if v != 'grid']}")
        if self.search == "optuna" and any(k == "grid" for k in kinds.values()):
            raise ValueError("search: optuna cannot take grid dimensions; use choice instead")
        if self.search == "optuna" and len(self.seeds) > 1:
            raise ValueError("search: optuna proposes one configuration per trial: give one seed, "
                             "or use search: random for several seeds per configuration")
        if self.metric == "mock_velocity" and self.mock_eval is None:
            raise ValueError("metric: mock_velocity needs a mock_eval block")
        if self.metric == "mock_velocity" and self.scheduler == "asha":
            raise ValueError("scheduler: asha needs a metric reported while training, not mock_velocity")
        clash = set(self.set) & set(self.space)
        if clash:
            raise ValueError(f"set and space both give {sorted(clash)}")
        return self

    @property
    def mode(self) -> str:
        return "min" if self.metric in MINIMIZED else "max"


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"hyperparams.gamma": 0.9} -> {"hyperparams": {"gamma": 0.9}} (what `train --config` reads)."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def trial_config(spec: SweepSpec, params: dict[str, Any], seed: int):
    """The TrainConfig one trial trains: shipped defaults, then `set`, then its swept values."""
    from simreal.train.config import resolve

    layer = nest({**spec.set, **params, "timesteps": spec.timesteps, "seed": seed})
    return resolve(spec.robot, spec.algo, [("sweep spec", layer)])


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set` items (KEY=VALUE, the value read as YAML) as {key: value}; SpecError names the item."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE")
        out[key] = parse_value(text)
    return out


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Read and check SPEC, with overrides of its fields: `timesteps=20000`, `seeds=2`, or a
    key inside set / mock_eval / space (`set.n_envs=4`, `mock_eval.profile=worn`)."""
    data = read_mapping(path, SpecError)
    for key, value in (overrides or {}).items():
        head, _, rest = key.partition(".")
        if rest and head in ("set", "space", "mock_eval"):
            data[head] = {**(data.get(head) or {}), rest: value}
        else:
            data[key] = value
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise SpecError(f"{path}: {where}: {err['msg']}") from None
    check_space(spec, path)
    return spec


def check_space(spec: SweepSpec, path: str | Path) -> None:
    """Every probe value must give a valid training config (unknown keys, wrong types, bounds)."""
    from simreal.train.config import ConfigError

    try:
        trial_config(spec, {k: d.probes()[0] for k, d in spec.space.items()}, spec.seeds[0])
    except ConfigError as e:
        raise SpecError(f"{path}: set/space: {e}") from None
    for key, dim in spec.space.items():
        for value in dim.probes():
            try:
                trial_config(spec, {**{k: d.probes()[0] for k, d in spec.space.items()}, key: value},
                             spec.seeds[0])
            except ConfigError as e:
                raise SpecError(f"{path}: space.{key}: value {value!r}: {e}") from None
