"""A fine-tuning run -> a bundle: the simulation policy's network plus the learned residual.

The result is an ordinary bundle (simreal.export writes and checks it: ONNX and numpy backends
against the learner's own torch actor) whose policy.json `residual` states the bound and where it
came from (the run, the base bundle's digest, robot minutes, the velocity source). The parity
observations are the robot's own, from the run's replay buffer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from simreal.bundle.contract import contract_sha256, load_arrays, verify_file
from simreal.bundle.numpy_mlp import mlp_from_arrays
from simreal.bundle.policy import Policy
from simreal.export.bundle import ExportError, ExportResult, Residual, write_bundle
from simreal.finetune.learner import ResidualLearner

N_OBS = 3000


def export_finetuned(run_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> ExportResult:
    """The latest valid checkpoint of the fine-tuning run in RUN_DIR as a bundle at OUT_DIR."""
    from simreal.export.extract import mlp_from_actor, reference_actions
    from simreal.finetune.state import read_state
    from simreal.robot.spec import load_robot
    from simreal.train.checkpoint import CheckpointStore
    from simreal.train.policy_module import deterministic_actor

    run_dir = Path(run_dir)
    ckpt = CheckpointStore(run_dir / "checkpoints").latest_valid()
    state = read_state(ckpt.path)
    prov, counters = state["provenance"], state["counters"]
    if contract_sha256(prov["bundle"]) != prov["base_sha256"]:
        raise ExportError(f"{prov['bundle']}: not the bundle this run fine-tuned (policy.json sha256 changed)")
    base = Policy.load(prov["bundle"])
    spec = load_robot(base.contract.robot)
    learner = ResidualLearner(base.obs_dim, spec.n_joints, algo=prov["algo"])
    learner.read(ckpt.path, state["learner"])
    obs = learner.observations()
    if len(obs) == 0:
        raise ExportError(f"{run_dir}: no transitions yet, nothing was learned to export")
    obs = obs[np.unique(np.linspace(0, len(obs) - 1, min(N_OBS, len(obs))).round().astype(int))]

    actor = deterministic_actor(learner.model)
    bound = float(prov["bound"])
    ref = np.clip(base.infer_batch(obs)[0] + bound * reference_actions(actor, None, obs), -1.0, 1.0)
    weights = verify_file(base.bundle_dir, base.contract.network.weights, "network.weights")
    base_mlp = mlp_from_arrays(load_arrays(weights), base.contract.network, str(weights))
    finetune = {"source": str(run_dir), "base_sha256": prov["base_sha256"], "algo": prov["algo"],
                "robot_s": counters["robot_s"], "transitions": counters["transitions"],
                "episodes": counters["episodes"], "falls": counters["falls"],
                "sim_warmup": counters.get("sim_transitions", 0),
                "velocity": prov["velocity"], "privileged_velocity": prov["privileged_velocity"]}
    return write_bundle(base_mlp, ref, spec, out_dir, obs, training=base.contract.training.model_dump(mode="json"),
                        residual=Residual(mlp_from_actor(actor), bound, finetune), overwrite=overwrite,
                        latency_calls=500, commands=base.contract.command_kwargs())
