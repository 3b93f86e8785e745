"""Training configuration: one validated, frozen model built from layered YAML.

Layers, later wins (nested mappings merge key by key, anything else is replaced):
  1. the defaults below (stable-baselines3's own defaults for the algorithm);
  2. the shipped file `configs/<robot>/<algo>.yaml` (if there is one for this robot or env id);
  3. `--config FILE`;
  4. command-line flags (`--timesteps`, `--seed`, `--envs`, `--no-randomize`);
  5. `--set dotted.key=value` (value parsed as YAML: `--set policy.net_arch=[64,64]`).
Every key is checked (unknown keys are errors, never silently ignored) and every error names the
layer that introduced the bad key: `configs/quadruped/ppo.yaml: hyperparams.n_step: unknown key
(did you mean 'n_steps'?)`.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt,
                      SerializeAsAny, ValidationError, field_validator, model_validator)

from simreal.errors import UserError
from simreal.validation import field_problem, unknown_key
from simreal.yamlfiles import config_dirs, read_mapping
from simreal.yamlfiles import parse_set as _parse_set

DEFAULTS = "defaults"


class ConfigError(UserError, ValueError):
    """A configuration problem; the message names the file (or flag) and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---- schedules ---------------------------------------------------------------------------------
_LIN = re.compile(r"^lin_([0-9.eE+-]+)$")


def _check_schedule(v: Any) -> float | str:
    """A positive number, or 'lin_<x>': linear decay from x to 0 over the run (rl-zoo syntax)."""
    if isinstance(v, bool):
        raise ValueError("expected a positive number or 'lin_<number>'")
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or v <= 0:
            raise ValueError("must be a finite number > 0")
        return float(v)
    if isinstance(v, str):
        m = _LIN.match(v.strip())
        try:
            x = float(m.group(1)) if m else float(v)
        except ValueError:
            raise ValueError(f"{v!r} is neither a number nor 'lin_<number>'") from None
        if not math.isfinite(x) or x <= 0:
            raise ValueError("must be a finite number > 0")
        return f"lin_{x:g}" if m else x
    raise ValueError("expected a positive number or 'lin_<number>'")


def schedule(v: float | str):
    """Callable progress_remaining -> value for SB3 (progress runs 1 -> 0 over the run)."""
    if isinstance(v, str):
        start = float(_LIN.match(v).group(1))
        return lambda progress_remaining: progress_remaining * start
    return float(v)


# ---- per-algorithm hyperparameters (names are SB3's constructor arguments) ---------------------
class AlgoParams(_Strict):
    """Base of every algorithm's hyperparameters; subclasses list what the algorithm accepts."""


class PPOParams(AlgoParams):
    learning_rate: float | str = 3e-4
    n_steps: PositiveInt = 2048          # steps per env per rollout
    batch_size: PositiveInt = 64
    n_epochs: PositiveInt = 10
    gamma: float = Field(0.99, gt=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    clip_range: float | str = 0.2
    clip_range_vf: PositiveFloat | None = None
    normalize_advantage: bool = True
    ent_coef: float = Field(0.0, ge=0)
    vf_coef: float = Field(0.5, ge=0)
    max_grad_norm: PositiveFloat = 0.5
    use_sde: bool = False
    sde_sample_freq: int = Field(-1, ge=-1)
    target_kl: PositiveFloat | None = None

    @field_validator("learning_rate", "clip_range", mode="before")
    @classmethod
    def _schedules(cls, v: Any) -> float | str:
        return _check_schedule(v)


class OffPolicyParams(AlgoParams):
    """What SAC and CrossQ share: a replay buffer, entropy tuning, updates per env step."""
    learning_rate: float | str = 3e-4
    buffer_size: PositiveInt = 1_000_000
    learning_starts: NonNegativeInt = 100
    batch_size: PositiveInt = 256
    gamma: float = Field(0.99, gt=0, le=1)
    train_freq: PositiveInt = 1
    gradient_steps: int = Field(1, ge=-1)
    ent_coef: float | str = "auto"
    target_entropy: float | Literal["auto"] = "auto"
    use_sde: bool = False
    sde_sample_freq: int = Field(-1, ge=-1)
    use_sde_at_warmup: bool = False

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _schedules(cls, v: Any) -> float | str:
        return _check_schedule(v)

    @field_validator("gradient_steps")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be >= 1, or -1 (as many as environment steps)")
        return v

    @field_validator("ent_coef", mode="before")
    @classmethod
    def _ent(cls, v: Any) -> float | str:
        if isinstance(v, str) and re.fullmatch(r"auto(_[0-9.eE+-]+)?", v):
            return v
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError("expected 'auto', 'auto_<initial>' or a positive number") from None
        if not math.isfinite(x) or x <= 0:
            raise ValueError("must be > 0")
        return x


class SACParams(OffPolicyParams):
    tau: float = Field(0.005, gt=0, le=1)
    target_update_interval: PositiveInt = 1


class CrossQParams(OffPolicyParams):
    """sb3-contrib CrossQ (Bhatt et al., ICLR 2024): SAC without target networks, batch
    renormalization in actor and critics, a wide critic; SAC-level returns at 1 update per step."""
    learning_rate: float | str = 1e-3
    policy_delay: PositiveInt = 3               # critic updates per actor update




class FreeParams(AlgoParams):
    """Hyperparameters of an algorithm that validates its own (simreal.algos)."""
    model_config = ConfigDict(extra="allow", frozen=True)


SB3_PARAMS: dict[str, type[AlgoParams]] = {"ppo": PPOParams, "sac": SACParams, "crossq": CrossQParams}


def own_algos() -> dict[str, type[AlgoParams]]:
    """Our own algorithms (simreal.algos.api.ALGOS), if that package is importable.

    This is where they join `simreal train`; their hyperparameters are checked by their own
    config dataclasses (see TrainConfig._consistent).
    """
    try:
        from simreal.algos import api  # noqa: PLC0415
    except ImportError:
        return {}
    return {name: FreeParams for name in getattr(api, "ALGOS", ())}


def algo_params(algo: str | None = None) -> dict[str, type[AlgoParams]]:
    """Known algorithms -> params model (SB3 ones first; simreal.algos imported only if needed)."""
    if algo in SB3_PARAMS:
        return dict(SB3_PARAMS)
    return {**SB3_PARAMS, **own_algos()}


# ---- the rest of a run -------------------------------------------------------------------------
class EnvConfig(_Strict):
    randomize: bool = True                  # domain randomization (robot envs; ids ignore it)
    kwargs: dict[str, Any] = {}             # passed to make_env (LocomotionEnv or gymnasium.make)
    # auto: batched for robots in robots/ (simreal.train.vec_env), dummy for Gymnasium ids
    vec_env: Literal["auto", "batched", "dummy", "subproc"] = "auto"
    threads: PositiveInt | None = None      # batched: physics threads (None: every core, at most n_envs)


class NormalizeConfig(_Strict):
    """VecNormalize for SB3 algorithms. simreal.algos agents normalize inside themselves
    (hyperparams.norm_obs) and take their network shape from hyperparams (hidden, activation)."""
    obs: bool = True
    reward: bool = False
    clip_obs: PositiveFloat = 10.0
    clip_reward: PositiveFloat = 10.0


class PolicyConfig(_Strict):
    """Network shape; None everywhere means SB3's own default for the algorithm
    (PPO: pi/vf [64, 64] tanh, log_std 0; SAC: [256, 256] relu, log_std -3, 2 critics)."""
    net_arch: list[PositiveInt] | dict[str, list[PositiveInt]] | None = None
    activation: Literal["tanh", "relu", "elu", "leaky_relu"] | None = None
    log_std_init: float | None = None
    ortho_init: bool | None = None           # PPO only
    n_critics: PositiveInt | None = None     # SAC and CrossQ only


class EvalConfig(_Strict):
    every: NonNegativeInt = 50_000           # timesteps between evaluations; 0: only at the end
    episodes: PositiveInt = 5
    randomize: bool | None = None            # None: same as training
    deterministic: bool = True
    command: tuple[float, float] | None = None   # robots: fixed (vx, yaw) for periodic evaluation


class CheckpointConfig(_Strict):
    every: NonNegativeInt = 50_000           # timesteps between checkpoints; 0: only at the end
    keep: PositiveInt = 2                    # latest checkpoints kept (older ones are the fallback)
    replay_buffer: bool = True               # SAC: save the replay buffer for an exact resume


class LogConfig(_Strict):
    tensorboard_every: PositiveInt = 2000    # timesteps between TensorBoard episode summaries
    window: PositiveInt = 20                 # episodes in the live progress means


class TrainConfig(_Strict):
    robot: str                               # robot folder in robots/ or a Gymnasium id
    algo: str
    seed: int = 0
    timesteps: PositiveInt = 1_000_000
    n_envs: PositiveInt = 1
    device: str = "cpu"                      # MLP policies are faster on CPU
    torch_threads: PositiveInt = 1
    env: EnvConfig = EnvConfig()
    normalize: NormalizeConfig = NormalizeConfig()
    policy: PolicyConfig = PolicyConfig()
    hyperparams: SerializeAsAny[AlgoParams] = Field(default_factory=AlgoParams)
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="before")
    @classmethod
    def _typed_hyperparams(cls, data: Any) -> Any:
        if isinstance(data, dict):
            algo = data.get("algo")
            known = algo_params(algo)
            if algo not in known:
                raise ValueError(f"unknown algo {algo!r}; known: {', '.join(known)}")
            hp = data.get("hyperparams", {})
            if not isinstance(hp, known[algo]):
                data = {**data, "hyperparams": known[algo].model_validate(hp or {})}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        hp, pol = self.hyperparams, self.policy
        if self.algo != "ppo" and pol.ortho_init is not None:
            raise ValueError("policy.ortho_init applies to ppo only")
        if self.algo not in ("sac", "crossq") and pol.n_critics is not None:
            raise ValueError("policy.n_critics applies to sac and crossq only")
        if isinstance(pol.net_arch, dict) and self.algo in SB3_PARAMS:
            allowed = {"ppo": {"pi", "vf"}, "sac": {"pi", "qf"}, "crossq": {"pi", "qf"}}.get(self.algo, set(pol.net_arch))
            bad = set(pol.net_arch) - allowed
            if bad:
                raise ValueError(f"policy.net_arch: keys {sorted(bad)} not allowed for {self.algo} "
                                 f"(use {sorted(allowed)})")
        if isinstance(hp, PPOParams):
            rollout = hp.n_steps * self.n_envs
            if rollout < 2:
                raise ValueError("hyperparams.n_steps * n_envs must be > 1")
            if hp.batch_size > rollout:
                raise ValueError(f"hyperparams.batch_size ({hp.batch_size}) exceeds the rollout size "
                                 f"n_steps * n_envs = {rollout}")
        if isinstance(hp, FreeParams):
            from simreal.algos import api  # noqa: PLC0415
            from simreal.algos.common import parse_config  # noqa: PLC0415

            parse_config(api.ALGOS[self.algo].config_cls, hp.model_dump(), where="hyperparams")
        if isinstance(hp, OffPolicyParams) and hp.batch_size > hp.buffer_size:
            raise ValueError(f"hyperparams.batch_size ({hp.batch_size}) exceeds buffer_size "
                             f"({hp.buffer_size})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        """Identity of what is being trained; `timesteps` excluded since a resume may extend it."""
        d = self.to_dict()
        d.pop("timesteps")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


# ---- loading -----------------------------------------------------------------------------------
def default_file(robot: str, algo: str) -> Path | None:
    for d in config_dirs():
        f = d / robot / f"{algo}.yaml"
        if f.is_file():
            return f
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file's mapping; ConfigError names the file (see simreal.yamlfiles)."""
    return read_mapping(path, ConfigError)


def parse_set(items: list[str]) -> dict[str, Any]:
    """--set items as a nested mapping; ConfigError names the item (see simreal.yamlfiles)."""
    return _parse_set(items, ConfigError)


Layer = tuple[str, dict[str, Any]]   # (source name for messages, mapping)


def _merge(base: dict, over: dict, source: str, sources: dict, prefix: tuple = ()) -> dict:
    out = dict(base)
    for k, v in over.items():
        path = prefix + (k,)
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, source, sources, path)
        else:
            out[k] = v
            sources[path] = source
            for p in [p for p in sources if p[:len(path)] == path and p != path]:
                del sources[p]
    return out


def _source_of(loc: tuple, sources: dict) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            return sources[loc[:n]]
    return DEFAULTS


def _model_at(loc: tuple, algo: str) -> type[BaseModel] | None:
    """The model class whose fields live at `loc` (for 'did you mean')."""
    model: Any = TrainConfig
    for part in loc:
        if model is TrainConfig and part == "hyperparams":
            model = algo_params(algo).get(algo)
            continue
        field = getattr(model, "model_fields", {}).get(part)
        ann = getattr(field, "annotation", None)
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return None
    return model


def _describe(err: dict, algo: str, sources: dict) -> str:
    loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
    loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))  # union tags
    key = ".".join(map(str, loc)) or "(top level)"
    source = _source_of(loc, sources)
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1], algo)
        fields = list(getattr(model, "model_fields", {}) if model else [])
        return f"{source}: {key}: {unknown_key(str(loc[-1]), fields)}"
    if not loc:  # a cross-field rule: its message starts with the key it blames
        msg = err["msg"].removeprefix("Value error, ")
        m = re.match(r"([a-z_]+(?:\.[a-z_]+)*)", msg)
        blamed = tuple(m.group(1).split(".")) if m else ()
        return f"{_source_of(blamed, sources) if blamed else source}: {msg}"
    return f"{source}: {key}: {field_problem(err)}"


def resolve(robot: str, algo: str, layers: list[Layer] = ()) -> TrainConfig:
    """Merge defaults, the shipped file for (robot, algo) and `layers`, then validate."""
    sources: dict[tuple, str] = {}
    data: dict[str, Any] = {"robot": robot, "algo": algo}
    known = algo_params(algo)
    if algo not in known:
        raise ConfigError(f"--algo {algo!r}: unknown algorithm; known: {', '.join(known)}")
    shipped = default_file(robot, algo)
    all_layers = ([(str(shipped), read_yaml(shipped))] if shipped else []) + list(layers)
    for source, layer in all_layers:
        for fixed in ("robot", "algo"):
            if fixed in layer and layer[fixed] != data[fixed]:
                raise ConfigError(f"{source}: {fixed}: is {layer[fixed]!r} but this run is for "
                                  f"{data[fixed]!r}")
        data = _merge(data, layer, source, sources)
    return validate(data, sources)


def validate(data: dict[str, Any], sources: dict | None = None) -> TrainConfig:
    sources = sources or {}
    algo = data.get("algo")
    known = algo_params(algo)
    if algo not in known:
        raise ConfigError(f"{_source_of(('algo',), sources)}: algo: unknown algorithm {algo!r}; "
                          f"known: {', '.join(known)}")
    # Validate hyperparameters on their own first, so their errors carry the 'hyperparams.' path.
    hp = data.get("hyperparams") or {}
    if not isinstance(hp, dict):
        raise ConfigError(f"{_source_of(('hyperparams',), sources)}: hyperparams: expected a mapping")
    try:
        typed = known[algo].model_validate(hp)
        return TrainConfig.model_validate({**data, "hyperparams": typed})
    except ValidationError as e:
        prefix = ("hyperparams",) if e.title == known[algo].__name__ else ()
        lines = [_describe({**err, "loc": prefix + tuple(err["loc"])}, algo, sources)
                 for err in e.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def load_resolved(path: Path) -> TrainConfig:
    """A run's config.yaml (already resolved): validated again, nothing merged."""
    data = read_yaml(path)
    return validate(data, {(k,): str(path) for k in data})


def dump_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
