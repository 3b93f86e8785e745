"""Load a policy bundle for the runtime: verify it, check it against the robot, run it.

    policy = Policy.load("assets/policies/quadruped")          # robot from policy.json
    build = policy.observation_builder()                       # the env's observation function
    obs = build(state, last_action, command)
    action, joint_targets = policy.infer(obs)                  # action feeds back as last_action

`Policy.load` refuses, naming the file and field, a bundle that is malformed (schema), damaged
(size/sha256 of policy.onnx, weights.npz, probe.npz), non-finite, or made for another robot
(joints, default pose, action scale, period, observation layout; robot hash unless overridden).
A fine-tuned bundle's residual network (policy.json `residual`) is checked and run the same way.
It then runs the chosen backend on the bundle's probe observations and refuses it if it does
not reproduce the training-time policy. Backends: onnxruntime (policy.onnx), or a numpy
evaluator of the same network (weights.npz) where onnxruntime is not installed.
Only JSON, ONNX and allow_pickle=False .npz files are read; nothing is unpickled.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from simreal.bundle.contract import (CONTRACT_FILE, ONNX_INPUT, ONNX_OUTPUTS, BundleError,
                                     Contract, check_against_spec, contract_sha256, load_arrays,
                                     read_contract, verify_file)
from simreal.bundle.numpy_mlp import MLPEvaluator, mlp_from_arrays
from simreal.robot.observation import ObservationBuilder, ObservationLayout

Backend = Literal["auto", "onnxruntime", "numpy"]
# Load-time self-test: what the probe is for. It answers one question: does THIS backend on THIS
# machine compute the policy that was trained, to within what matters for control? It is held to
# the tolerance the export itself enforced (contract.parity_tolerance, 1e-5 by default: measured
# backend-to-backend and training-to-ONNX differences are ~7e-7, so another CPU's float32
# rounding has >10x room, and a change of the policy moving an action by 2e-5 is refused).
# Integrity against accidents (a truncated, corrupted or mixed-up file) rests on the sha256 of
# every file in policy.json; a deliberate edit whose author also rewrites the hashes and the probe
# is beyond any self-check: pin the contract's own digest (Policy.load(expect_sha256=...),
# `simreal deploy --expect-sha256`), which policy.json's file hashes chain to every file.


class NonFiniteObservation(ValueError):
    """infer() was given NaN/inf; the caller must not act on it."""


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OrtBackend:
    """onnxruntime, one thread, with the batch-1 input and outputs bound to fixed buffers."""

    name = "onnxruntime"

    def __init__(self, path: Path, obs_dim: int, n: int, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  (onnxruntime raises its own exception types)
            raise BundleError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from None
        ins = [(i.name, i.shape) for i in self.session.get_inputs()]
        outs = [o.name for o in self.session.get_outputs()]
        if [name for name, _ in ins] != [ONNX_INPUT] or ins[0][1][-1] != obs_dim:
            raise BundleError(f"{path}: graph inputs {ins}, {CONTRACT_FILE} says "
                              f"{ONNX_INPUT} [batch, {obs_dim}]")
        if outs != list(ONNX_OUTPUTS):
            raise BundleError(f"{path}: graph outputs {outs}, {CONTRACT_FILE} says {list(ONNX_OUTPUTS)}")
        self._in = np.zeros((1, obs_dim), np.float32)
        self._action = np.zeros((1, n), np.float32)
        self._targets = np.zeros((1, n), np.float32)
        io = self.session.io_binding()
        io.bind_input(ONNX_INPUT, "cpu", 0, np.float32, [1, obs_dim], self._in.ctypes.data)
        for name, buf in zip(ONNX_OUTPUTS, (self._action, self._targets)):
            io.bind_output(name, "cpu", 0, np.float32, [1, n], buf.ctypes.data)
        self._io = io

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, t = self.session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: np.asarray(obs, np.float32)})
        return a, t

    def run_one(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._in[0] = obs
        self.session.run_with_iobinding(self._io)
        return self._action[0].copy(), self._targets[0].copy()


class NumpyBackend:
    name = "numpy"

    def __init__(self, evaluator: MLPEvaluator):
        self.evaluator = evaluator
        self.run = evaluator.run
        self.run_one = evaluator.run_one


@dataclass
class Policy:
    """A verified bundle, ready to act. Build with `Policy.load`."""
    bundle_dir: Path
    contract: Contract
    layout: ObservationLayout
    backend: OrtBackend | NumpyBackend
    warnings: list[str] = field(default_factory=list)

    # ---- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, bundle_dir: str | Path, spec=None, *, allow_hash_mismatch: bool = False,
             backend: Backend = "auto", expect_sha256: str | None = None) -> "Policy":
        """Verify and load BUNDLE_DIR; `spec` defaults to the robot named in policy.json.

        expect_sha256: the digest of policy.json this bundle must have (it pins every file, as
        policy.json holds their hashes): the one check a deliberate edit cannot pass."""
        bundle_dir = Path(bundle_dir)
        if backend not in ("auto", "onnxruntime", "numpy"):
            raise ValueError(f"backend must be auto, onnxruntime or numpy, not {backend!r}")
        if expect_sha256 is not None:
            got = contract_sha256(bundle_dir)
            if got != expect_sha256.strip().lower():
                raise BundleError(f"{bundle_dir / CONTRACT_FILE}: sha256 {got}, expected {expect_sha256} "
                                  "(--expect-sha256): not the bundle that was pinned")
        contract = read_contract(bundle_dir)
        onnx_path = verify_file(bundle_dir, contract.onnx.file, "onnx.file")
        weights_path = verify_file(bundle_dir, contract.network.weights, "network.weights")
        probe_path = verify_file(bundle_dir, contract.probe, "probe")
        if spec is None:
            from simreal.robot.spec import load_robot

            # the MJCF check needs mujoco, which a robot may not have; the hash covers the MJCF
            spec = load_robot(contract.robot, check_mjcf=False)
        warns = check_against_spec(contract, spec, allow_hash_mismatch=allow_hash_mismatch)

        # the numpy network is always checked (finite, shapes): it is the readable copy of the
        # weights, and the one a robot without onnxruntime runs
        mlp = mlp_from_arrays(load_arrays(weights_path), contract.network, str(weights_path))
        residual = None
        if contract.residual is not None:
            res_path = verify_file(bundle_dir, contract.residual.network.weights, "residual.network.weights")
            residual = (mlp_from_arrays(load_arrays(res_path), contract.residual.network, str(res_path)),
                        contract.residual.bound)
        pose = np.asarray(contract.default_pose)
        if backend == "auto":
            backend = "onnxruntime" if onnxruntime_available() else "numpy"
        if backend == "onnxruntime":
            be: OrtBackend | NumpyBackend = OrtBackend(onnx_path, contract.obs_dim, contract.action_dim)
        else:
            be = NumpyBackend(MLPEvaluator(mlp, pose, contract.action_scale, residual))
        policy = cls(bundle_dir, contract, ObservationLayout.from_dict(
            contract.observation.model_dump()), be, warns)
        policy._self_test(probe_path)
        return policy

    def _self_test(self, probe_path: Path) -> None:
        probe = load_arrays(probe_path)
        missing = {"obs", "action", "joint_targets"} - set(probe)
        if missing:
            raise BundleError(f"{probe_path}: missing arrays {sorted(missing)}")
        obs = probe["obs"]
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise BundleError(f"{probe_path}: obs has shape {list(obs.shape)}, expected "
                              f"[n, {self.obs_dim}]")
        action, targets = self.backend.run(obs)
        for name, got in (("action", action), ("joint_targets", targets)):
            want = probe[name]
            if got.shape != want.shape:
                raise BundleError(f"{probe_path}: {name} has shape {list(want.shape)}, the "
                                  f"{self.backend.name} backend gives {list(got.shape)}")
            if not np.all(np.isfinite(got)):
                raise BundleError(f"{self.bundle_dir}: the {self.backend.name} backend outputs "
                                  f"non-finite {name} on the probe observations (NaN/inf weights?)")
            err, tol = float(np.max(np.abs(got - want))), self.contract.parity_tolerance
            if not err <= tol:
                raise BundleError(
                    f"{self.bundle_dir}: the {self.backend.name} backend differs from the training-time "
                    f"policy recorded in {probe_path.name} by {err:.3g} in {name} (allowed "
                    f"{tol:g}); the bundle's files do not belong together")

    # ---- acting ---------------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return self.contract.obs_dim

    @property
    def joint_names(self) -> list[str]:
        return self.contract.joint_names

    @property
    def default_pose(self) -> np.ndarray:
        return np.asarray(self.contract.default_pose)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def observation_builder(self) -> ObservationBuilder:
        """The environment's observation function, driven by this bundle's layout and pose."""
        return ObservationBuilder(self.layout, self.default_pose)

    def infer(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One observation [obs_dim] -> (action in [-1, 1], joint targets in rad), float32.

        Raises NonFiniteObservation on NaN/inf and ValueError on a wrong shape."""
        x = obs if isinstance(obs, np.ndarray) and obs.dtype == np.float32 else np.asarray(obs, np.float32)
        if x.shape != (self.contract.obs_dim,):
            raise ValueError(f"observation has shape {list(x.shape)}, the policy takes "
                             f"[{self.contract.obs_dim}]")
        if not np.isfinite(x).all():
            bad = [int(i) for i in np.flatnonzero(~np.isfinite(x))]
            raise NonFiniteObservation(f"observation has non-finite entries at {bad[:8]} "
                                       f"({self._term_of(bad[0])})")
        return self.backend.run_one(x)

    def infer_batch(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[batch, obs_dim] -> (actions, joint targets) [batch, n]; no finiteness check."""
        return self.backend.run(np.asarray(obs, np.float32))

    def _term_of(self, index: int) -> str:
        i = index % self.layout.frame_size
        for t in self.layout.terms:
            if i < t.size:
                return f"term {t.name}[{i}], frame {index // self.layout.frame_size}"
            i -= t.size
        return "?"
