"""A fine-tuned bundle: the simulation policy plus bound x a residual network (policy.json
`residual`). Both backends compute clip(base + bound * residual, -1, 1); no action leaves the
bound; a damaged or mis-declared residual is refused."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import tiny_bundle
from simreal.bundle.contract import BundleError, load_arrays
from simreal.bundle.numpy_mlp import MLP, Dense, mlp_from_arrays
from simreal.bundle.policy import Policy
from simreal.export.bundle import Residual, write_bundle

BOUND = 0.25


def residual_mlp(d: int, n: int, seed: int = 1) -> MLP:
    rng = np.random.default_rng(seed)
    f = np.float32
    return MLP((Dense((rng.normal(size=(16, d)) * 0.5).astype(f), rng.normal(size=16).astype(f), "relu"),
                Dense((rng.normal(size=(n, 16)) * 0.5).astype(f), rng.normal(size=n).astype(f), "identity")),
               "tanh", -np.ones(n, f), np.ones(n, f))


def by_hand(mlp: MLP, obs: np.ndarray) -> np.ndarray:
    h = np.maximum(obs @ mlp.layers[0].weight.T + mlp.layers[0].bias, 0)
    return np.tanh(h @ mlp.layers[1].weight.T + mlp.layers[1].bias)


@pytest.fixture(scope="module")
def bundles(spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("residual")
    base = Policy.load(tiny_bundle(root / "base", spec), spec)
    c = base.contract
    weights = load_arrays(base.bundle_dir / c.network.weights.path)
    base_mlp = mlp_from_arrays(weights, c.network, "weights")
    res = residual_mlp(c.obs_dim, c.action_dim)
    obs = np.random.default_rng(2).normal(size=(500, c.obs_dim)).astype(np.float32)
    ref = np.clip(base.infer_batch(obs)[0] + BOUND * by_hand(res, obs), -1, 1)
    info = {"source": "runs/ft", "base_sha256": "0" * 64, "algo": "crossq", "robot_s": 60.0, "transitions": 3000,
            "episodes": 6, "falls": 1, "sim_warmup": 100, "velocity": "ground_truth", "privileged_velocity": True}
    write_bundle(base_mlp, ref, spec, root / "tuned", obs, training=c.training.model_dump(mode="json"),
                 residual=Residual(res, BOUND, info), git={}, latency_calls=20)
    return base, root / "tuned", obs


@pytest.mark.parametrize("backend", ["onnxruntime", "numpy"])
def test_both_backends_add_the_bounded_residual(bundles, spec, backend):
    base, tuned, obs = bundles
    p = Policy.load(tuned, spec, backend=backend)
    assert p.contract.residual.bound == BOUND and p.contract.residual.finetune.falls == 1
    a, targets = p.infer_batch(obs)
    a_base = base.infer_batch(obs)[0]
    res = mlp_from_arrays(load_arrays(tuned / "residual.npz"), p.contract.residual.network, "r")
    np.testing.assert_allclose(a, np.clip(a_base + BOUND * by_hand(res, obs), -1, 1), atol=2e-6)
    assert np.abs(a - a_base).max() <= BOUND + 1e-6 and np.abs(a - a_base).max() > 0.5 * BOUND
    np.testing.assert_allclose(targets, np.asarray(spec.default_pose) + spec.control.action_scale * a, atol=2e-6)
    one = p.infer(obs[7])
    np.testing.assert_allclose(one[0], a[7], atol=1e-6)


def test_a_damaged_residual_is_refused(bundles, spec, tmp_path):
    _, tuned, _ = bundles
    bad = tmp_path / "bad"
    shutil.copytree(tuned, bad)
    arrays = dict(np.load(bad / "residual.npz"))
    arrays["layers.0.bias"] = arrays["layers.0.bias"] + 0.01
    np.savez(bad / "residual.npz", **arrays)
    with pytest.raises(BundleError, match="residual.network.weights"):
        Policy.load(bad, spec)


def test_a_residual_head_that_could_leave_the_bound_is_refused(bundles, spec, tmp_path):
    _, tuned, _ = bundles
    bad = tmp_path / "bad"
    shutil.copytree(tuned, bad)
    data = json.loads((bad / "policy.json").read_text())
    data["residual"]["network"]["head"]["high"] = [3.0] * spec.n_joints
    (bad / "policy.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"residual.network.head must be tanh onto \[-1, 1\]"):
        Policy.load(bad, spec)


def test_a_non_finite_residual_is_never_exported(bundles, spec, tmp_path):
    from simreal.export.bundle import ExportError

    base, _, obs = bundles
    c = base.contract
    base_mlp = mlp_from_arrays(load_arrays(base.bundle_dir / c.network.weights.path), c.network, "weights")
    res = residual_mlp(c.obs_dim, c.action_dim)
    res.layers[0].weight[3, 2] = np.nan
    with pytest.raises(ExportError, match="residual network: array layers.0.weight has 1 non-finite"):
        write_bundle(base_mlp, base.infer_batch(obs)[0], spec, tmp_path / "nan", obs,
                     training=c.training.model_dump(mode="json"), residual=Residual(res, BOUND, {}), git={})
    assert not (tmp_path / "nan").exists()
