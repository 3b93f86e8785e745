"""Export: a trained policy -> a bundle folder that carries its own contract (see contract.py).

    export_bundle(actor, normalizer, spec, out_dir, recorded_obs, training=...)   a torch actor
    write_bundle(mlp, ref_action, spec, out_dir, obs, training=..., residual=...)  the core
    export_run(run_dir, out_dir)                                                  a run directory

The bundle is written into a temporary sibling folder and renamed into place only after it has
been loaded back with both backends and passed the parity check, so a failed export never
leaves a half-written bundle where a runtime could pick it up.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from simreal.bundle.contract import (CONTRACT_FILE, FORMAT, ONNX_FILE, PARITY_FILE, PROBE_FILE,
                                     RESIDUAL_FILE, RUN_SUBDIR, WEIGHTS_FILE, is_bundle, BundleError, Contract, file_ref,
                                     robot_fields, trained_commands, validation_message)
from simreal.export.parity import PARITY_FORMAT, latency_us, max_abs_diff
from simreal.files import replace_dir

PARITY_TOLERANCE = 1e-5     # max |training policy - ONNX graph| on the recorded observations
PROBE_SIZE = 64             # observations kept in probe.npz for the loader's self-test


class ExportError(RuntimeError):
    """The policy could not be exported; nothing was written at the destination."""


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    contract: Contract
    parity: dict


# ---- the core -------------------------------------------------------------------------------------
def training_fields(spec, *, algo: str, timesteps: int, seed: int, randomize: bool,
                    randomization_scale: float = 1.0, config_sha256: str | None = None,
                    source: str | None = None) -> dict[str, Any]:
    r = spec.randomization
    return {"algo": algo, "timesteps": int(timesteps), "seed": int(seed), "randomize": bool(randomize),
            "randomization_scale": float(randomization_scale),
            "action_latency_steps": list(r.action_latency_steps),
            "imu_latency_steps": list(r.imu_latency_steps),
            "noise": r.noise.model_dump(), "randomization": r.model_dump(mode="json"),
            "config_sha256": config_sha256, "source": source}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("simreal", "torch", "onnx", "onnxruntime", "stable_baselines3"):
        try:
            out[mod] = str(__import__(mod).__version__)
        except (ImportError, AttributeError):
            pass
    return out


def _git() -> dict[str, Any]:
    from simreal.train.run import git_revision

    return git_revision()


def _write_contract(path: Path, data: dict) -> Contract:
    from pydantic import ValidationError

    try:
        contract = Contract.model_validate(data)
    except ValidationError as e:   # our own bug, or bad metadata passed in
        raise ExportError(validation_message(f"{path} (being written)", e)) from None
    path.write_text(dumps(contract.model_dump(mode="json")))
    return contract


def dumps(data: Any) -> str:
    """JSON with one field per line but short lists of numbers/strings kept on one line."""
    def enc(v: Any, indent: str) -> str:
        inner = indent + " "
        if isinstance(v, dict) and v:
            items = [f"{inner}{json.dumps(k)}: {enc(x, inner)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + indent + "}"
        if isinstance(v, list) and v and not all(isinstance(x, (int, float, str, bool)) or x is None
                                                for x in v):
            return "[\n" + ",\n".join(inner + enc(x, inner) for x in v) + "\n" + indent + "]"
        return json.dumps(v, allow_nan=False)
    return enc(data, "") + "\n"


def _probe_rows(n_obs: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_obs - 1, min(PROBE_SIZE, n_obs)).round().astype(int))


def export_bundle(actor, normalizer, spec, out_dir: str | Path, recorded_obs: np.ndarray, *,
                  training: dict[str, Any], **kwargs) -> ExportResult:
    """Write a bundle for `actor` (torch: normalized obs -> action, see extract.py).

    normalizer: simreal.train.normalizer.Normalizer (or None); spec: the RobotSpec trained on;
    recorded_obs: [N, obs_dim] raw observations (a few thousand) for the parity check;
    training: `training_fields(...)`; the keyword arguments are write_bundle's.
    """
    from simreal.export.extract import mlp_from_actor, reference_actions

    obs = checked_observations(recorded_obs, spec)
    mlp = mlp_from_actor(actor, normalizer)
    return write_bundle(mlp, reference_actions(actor, normalizer, obs), spec, out_dir, obs, training=training,
                        **kwargs)


def checked_observations(recorded_obs: np.ndarray, spec) -> np.ndarray:
    from simreal.robot.observation import layout_for

    size = layout_for(spec).size
    obs = np.asarray(recorded_obs, np.float32)
    if obs.ndim != 2 or obs.shape[1] != size or len(obs) == 0:
        raise ExportError(f"recorded observations have shape {list(obs.shape)}, expected "
                          f"[N, {size}] for robot {spec.name}")
    if not np.all(np.isfinite(obs)):
        raise ExportError("recorded observations contain NaN/inf")
    return obs


@dataclass(frozen=True)
class Residual:
    """What a fine-tuned bundle adds: bound x `mlp` (tanh onto [-1, 1]); `finetune` is its
    contract's FinetuneModel fields."""
    mlp: Any
    bound: float
    finetune: dict[str, Any]


def write_bundle(mlp, ref_action: np.ndarray, spec, out_dir: str | Path, obs: np.ndarray, *,
                 training: dict[str, Any], residual: Residual | None = None, git: dict[str, Any] | None = None,
                 evaluate: Callable[[Any], dict] | None = None, overwrite: bool = False,
                 tolerance: float = PARITY_TOLERANCE, latency_calls: int = 2000,
                 extra: Callable[[Path], None] | None = None,
                 commands: dict[str, Any] | None = None) -> ExportResult:
    """Write the bundle of `mlp` (numpy_mlp.MLP, plus a residual when fine-tuned) whose
    training-time actions on `obs` are `ref_action`; both backends must reproduce them.

    commands: the training env's kwargs for the command layer (`command_vx`, `command_yaw`,
    `heading_hold`; robot.yaml's ranges and no hold where absent): the runtime clamps to those
    ranges and, by default, holds the heading with that gain.

    evaluate(policy) -> figures stored in policy.json; extra(staging_dir) may add files (e.g.
    the training checkpoint) before the bundle is moved in.
    """
    import onnx

    from simreal.bundle.policy import Policy
    from simreal.export.onnx_graph import IR_VERSION, OPSET, build_model
    from simreal.robot.action import action_to_targets
    from simreal.robot.observation import layout_for

    out_dir = Path(out_dir)
    if out_dir.exists() and not (overwrite and (is_bundle(out_dir) or not any(out_dir.iterdir()))):
        raise ExportError(f"{out_dir}: exists" + (" and is not a bundle; refusing to replace it"
                                                  if overwrite else "; pass --force to replace it"))
    layout = layout_for(spec)
    obs = checked_observations(obs, spec)
    nets = [("policy network", mlp)] + ([("residual network", residual.mlp)] if residual else [])
    for where, m in nets:
        try:
            m.check_finite(where)
        except BundleError as e:
            raise ExportError(str(e)) from None
        if (m.obs_dim, m.action_dim) != (layout.size, spec.n_joints):
            raise ExportError(f"the {where} maps {m.obs_dim} -> {m.action_dim}, robot {spec.name} "
                              f"needs {layout.size} -> {spec.n_joints}")
    ref_action = np.asarray(ref_action, np.float32)
    ref_targets = action_to_targets(ref_action, spec.default_pose, spec.control.action_scale)
    if not (np.all(np.isfinite(ref_action))):
        raise ExportError("the training-time policy outputs NaN/inf on the recorded observations")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        fields = robot_fields(spec) | trained_commands(spec, commands or {})
        doc = (f"simreal policy for robot {spec.name} ({training.get('algo')}): obs[batch, "
               f"{layout.size}] raw observation -> action[batch, {spec.n_joints}] in [-1, 1], "
               f"joint_targets[batch, {spec.n_joints}] rad in order {spec.joint_names}. "
               f"See policy.json.")
        model = build_model(mlp, spec.default_pose, spec.control.action_scale, doc=doc,
                            residual=(residual.mlp, residual.bound) if residual else None,
                            metadata={"contract": FORMAT, "robot": spec.name,
                                      "robot_hash": spec.spec_hash})
        onnx.save_model(model, str(stage / ONNX_FILE))
        np.savez(stage / WEIGHTS_FILE, **mlp.arrays())
        rows = _probe_rows(len(obs))
        np.savez(stage / PROBE_FILE, obs=obs[rows], action=ref_action[rows],
                 joint_targets=ref_targets[rows].astype(np.float32))
        data = {
            "format": FORMAT, **fields,
            "onnx": {"file": file_ref(stage / ONNX_FILE).model_dump(), "opset": OPSET,
                     "ir_version": IR_VERSION},
            "network": {"weights": file_ref(stage / WEIGHTS_FILE).model_dump(), **mlp.network_fields()},
            "residual": None,
            "probe": file_ref(stage / PROBE_FILE).model_dump(),
            "parity_tolerance": tolerance,
            "training": training,
            "provenance": {"git": git if git is not None else _git(),
                           "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "versions": _versions()},
            "evaluation": None,
        }
        if residual is not None:
            np.savez(stage / RESIDUAL_FILE, **residual.mlp.arrays())
            data["residual"] = {"bound": residual.bound, "finetune": residual.finetune, "network": {
                "weights": file_ref(stage / RESIDUAL_FILE).model_dump(), **residual.mlp.network_fields()}}
        _write_contract(stage / CONTRACT_FILE, data)

        # load it back the way a robot would, with both backends, and measure them
        try:
            policies = {b: Policy.load(stage, spec, backend=b) for b in ("onnxruntime", "numpy")}
        except BundleError as e:
            raise ExportError(f"the exported bundle fails its own load check: {e}") from None
        outputs = {b: p.infer_batch(obs) for b, p in policies.items()}
        report: dict[str, Any] = {"format": PARITY_FORMAT, "observations": int(len(obs)),
                                  "tolerance": tolerance, "max_abs_diff": {}, "latency_batch1": {}}
        diffs = report["max_abs_diff"]
        for b, (a, t) in outputs.items():
            singles = [policies[b].infer(o) for o in obs[rows]]   # batch-1 path
            diffs[f"training_vs_{b}"] = {
                "action": max_abs_diff(a, ref_action), "joint_targets": max_abs_diff(t, ref_targets),
                "action_batch1": max_abs_diff(np.stack([s[0] for s in singles]), ref_action[rows])}
        diffs["numpy_vs_onnxruntime"] = {
            "action": max_abs_diff(outputs["numpy"][0], outputs["onnxruntime"][0]),
            "joint_targets": max_abs_diff(outputs["numpy"][1], outputs["onnxruntime"][1])}
        worst = {k: max(v.values()) for k, v in diffs.items()}
        report["passed"] = all(w < tolerance for w in worst.values())
        if not report["passed"]:
            raise ExportError(f"parity check failed (tolerance {tolerance:g}): "
                              + ", ".join(f"{k} {w:.3g}" for k, w in worst.items()))
        for b, p in policies.items():
            report["latency_batch1"][b] = latency_us(p.infer, obs[:256], n=latency_calls,
                                                     warmup=min(200, latency_calls))
        report["machine"] = {"machine": platform.machine(), "nproc": os.cpu_count(),
                             "onnxruntime_threads": 1}
        (stage / PARITY_FILE).write_text(dumps(report))

        if evaluate is not None:
            data["evaluation"] = evaluate(policies["onnxruntime"])
            _write_contract(stage / CONTRACT_FILE, data)
        if extra is not None:
            extra(stage)
        contract = Contract.model_validate(data)
        replace_dir(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return ExportResult(out_dir, contract, report)


# ---- from a run directory ------------------------------------------------------------------------
def record_observations(env, act: Callable[[np.ndarray], np.ndarray], n: int, seed: int) -> np.ndarray:
    """n raw observations from rollouts of `act` (raw obs -> action) in `env`, resetting on ends."""
    out = np.empty((n, env.observation_space.shape[0]), np.float32)
    obs, _ = env.reset(seed=seed)
    episode = 0
    for i in range(n):
        out[i] = obs
        obs, _, terminated, truncated, _ = env.step(act(obs))
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    return out


def _recorded_evaluation(run_dir: Path, step: int) -> dict | None:
    import csv

    path = run_dir / "evaluations.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("timesteps") and int(r["timesteps"]) == step]
    if not rows:
        return None

    def num(v: str):
        try:
            x = float(v)
        except ValueError:
            return v
        return None if x != x else x
    return {"source": "evaluations.csv (during training)", **{k: num(v) for k, v in rows[-1].items()}}


def _copy_checkpoint(run_dir: Path, ckpt_dir: Path, step: int, meta: dict) -> Callable[[Path], None]:
    """extra() for export_bundle: BUNDLE/run/ as a minimal run directory load_run() accepts."""
    def write(stage: Path) -> None:
        from simreal.train.checkpoint import MANIFEST, CheckpointStore, verify
        from simreal.train.layout import RunPaths

        verify(ckpt_dir)   # refuse to copy a checkpoint that changed since it was loaded
        dest = RunPaths(stage / RUN_SUBDIR)
        dest.root.mkdir()
        src = RunPaths(run_dir)
        for p in (src.config, src.run_json):
            if p.is_file():
                shutil.copy2(p, dest.root / p.name)

        def files(d: Path) -> None:
            for f in sorted(ckpt_dir.iterdir()):
                if f.is_file() and f.name not in (MANIFEST, "replay_buffer.npz"):
                    shutil.copy2(f, d / f.name)
        CheckpointStore(dest.checkpoints, keep=1).save(step, files, meta=meta)
        shutil.copy2(ckpt_dir / "normalizer.json", dest.normalizer)
    return write


def export_run(run_dir: str | Path, out_dir: str | Path, *, checkpoint: str = "auto",
               trust: bool = False, n_obs: int = 3000, eval_episodes: int | None = None,
               with_checkpoint: bool = False, overwrite: bool = False, seed: int | None = None,
               log: Callable[[str], None] = lambda s: None) -> ExportResult:
    """`simreal export RUN_DIR --out BUNDLE_DIR`: PPO, SAC or one of simreal.algos."""
    import torch

    from simreal.export.extract import reference_actions
    from simreal.robot.registry import list_robots
    from simreal.robot.spec import load_robot
    from simreal.train.envs import eval_kwargs, make_single
    from simreal.train.evaluate import EVAL_SEED_OFFSET, evaluate_policy
    from simreal.train.policy_module import deterministic_actor
    from simreal.train.snapshot import load_run

    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    loaded = load_run(run_dir, checkpoint=checkpoint, trust=trust)
    cfg = loaded.config
    if cfg.robot not in list_robots():
        raise ExportError(f"{run_dir}: trained on {cfg.robot!r}, which is not a robot in robots/; "
                          f"only robot policies can be exported as bundles")
    spec = load_robot(cfg.robot)
    actor = deterministic_actor(loaded.model)
    log(f"loaded {cfg.algo} policy for {cfg.robot} from {loaded.source} (step {loaded.step:,})")

    env_kwargs = eval_kwargs(cfg.env.kwargs)
    env = make_single(cfg.robot, cfg.env.randomize, env_kwargs)
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    try:
        log(f"recording {n_obs} observations from rollouts of the training policy ...")
        obs = record_observations(
            env, lambda o: reference_actions(actor, loaded.normalizer, o[None])[0], n_obs, seed)
    finally:
        env.close()

    episodes = cfg.eval.episodes if eval_episodes is None else eval_episodes
    randomize_eval = cfg.eval.randomize if cfg.eval.randomize is not None else cfg.env.randomize

    def evaluate(policy) -> dict | None:
        if episodes <= 0:
            return _recorded_evaluation(run_dir, loaded.step)
        log(f"evaluating the exported ONNX policy: {episodes} episodes ...")
        r = evaluate_policy(policy, episodes=episodes, randomize=randomize_eval,
                            seed=cfg.seed + EVAL_SEED_OFFSET, env_kwargs=env_kwargs)
        return {"source": "export (the bundle's ONNX graph in simulation)", "step": loaded.step,
                "randomize": randomize_eval, "seed": cfg.seed + EVAL_SEED_OFFSET, **r.to_dict()}

    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    training = training_fields(
        spec, algo=cfg.algo, timesteps=loaded.step, seed=cfg.seed, randomize=cfg.env.randomize,
        randomization_scale=float(env_kwargs.get("randomization_scale", 1.0)),
        config_sha256=cfg.sha256(), source=str(loaded.source))
    extra = None
    if with_checkpoint:
        if not Path(loaded.source).is_dir():
            raise ExportError(f"{loaded.source}: --with-checkpoint needs a simreal checkpoint folder")
        extra = _copy_checkpoint(run_dir, Path(loaded.source), loaded.step,
                                 {"robot": cfg.robot, "algo": cfg.algo})
    return export_bundle(actor, loaded.normalizer, spec, out_dir, obs, training=training,
                         git={"training": info.get("git"), "export": _git()},
                         evaluate=evaluate, overwrite=overwrite, extra=extra, commands=env_kwargs)
