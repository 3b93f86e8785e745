"""The exported policy network as plain arrays, and a numpy evaluator for robots without onnxruntime.

`MLP` is the one description both backends are built from: export writes it into the ONNX graph
(onnx_graph.py) and into weights.npz + policy.json `network`; the numpy evaluator below computes
the same function, op for op:

    x  = clip((obs - mean) / sqrt(var + eps), -clip, clip)     (normalization, if any)
    x  = act_i(x @ W_i.T + b_i)                                 (each layer)
    z  = min(max(x, low), high)  or  low + (tanh(x) + 1) * 0.5 * (high - low)   (head)
    action        = clip(z, -1, 1)
    action        = clip(action + bound * residual(obs), -1, 1)     (a fine-tuned bundle only)
    joint_targets = default_pose + action_scale * action        (simreal.robot.action)

Only numpy is needed here (and pydantic for the contract), so this runs on a robot's onboard
computer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simreal.bundle.contract import BundleError, LayerModel, NetworkModel

F32 = np.float32
_ZERO, _ONE, _MINUS_ONE, _HALF = F32(0.0), F32(1.0), F32(-1.0), F32(0.5)


@dataclass(frozen=True)
class Dense:
    weight: np.ndarray      # float32 [out, in]
    bias: np.ndarray        # float32 [out]
    activation: str         # tanh | relu | elu | leaky_relu | identity
    alpha: float = 0.0      # ELU alpha / LeakyReLU slope


@dataclass(frozen=True)
class MLP:
    layers: tuple[Dense, ...]
    squash: str                         # "clip" | "tanh"
    low: np.ndarray                     # float32 [n_actions]
    high: np.ndarray
    norm: str = "none"                  # "none" | "standardize"
    norm_precision: str = "float64"     # float64: SB3 VecNormalize; float32: simreal.algos
    obs_mean: np.ndarray | None = None  # float64 [obs_dim]
    obs_var: np.ndarray | None = None
    epsilon: float = 1e-8
    clip: float = 10.0

    @property
    def obs_dim(self) -> int:
        return int(self.layers[0].weight.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.layers[-1].weight.shape[0])

    def norm_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) in the normalization precision, rounded exactly as the trainer rounds."""
        std = np.sqrt(np.asarray(self.obs_var, np.float64) + self.epsilon)
        mean = np.asarray(self.obs_mean, np.float64)
        if self.norm_precision == "float32":
            return mean.astype(F32), std.astype(F32)
        return mean, std

    def arrays(self) -> dict[str, np.ndarray]:
        """What weights.npz holds (names referenced by `network_fields`)."""
        out: dict[str, np.ndarray] = {}
        if self.norm == "standardize":
            out["obs_mean"] = np.asarray(self.obs_mean, np.float64)
            out["obs_var"] = np.asarray(self.obs_var, np.float64)
        for i, layer in enumerate(self.layers):
            out[f"layers.{i}.weight"] = layer.weight
            out[f"layers.{i}.bias"] = layer.bias
        return out

    def network_fields(self) -> dict:
        """policy.json `network` (less `weights`, the file reference)."""
        return {
            "normalization": {"kind": self.norm, "precision": self.norm_precision,
                              "epsilon": float(self.epsilon), "clip": float(self.clip)},
            "layers": [{"weight": f"layers.{i}.weight", "bias": f"layers.{i}.bias",
                        "in_features": int(d.weight.shape[1]), "out_features": int(d.weight.shape[0]),
                        "activation": d.activation, "alpha": float(d.alpha)}
                       for i, d in enumerate(self.layers)],
            "head": {"squash": self.squash, "low": [float(x) for x in self.low],
                     "high": [float(x) for x in self.high]},
        }

    def check_finite(self, where: str) -> None:
        for name, a in self.arrays().items():
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            if bad:
                raise BundleError(f"{where}: array {name} has {bad} non-finite values "
                                  f"(NaN/inf weights; was training diverging?)")


def mlp_from_arrays(arrays: dict[str, np.ndarray], net: NetworkModel, where: str) -> MLP:
    """Rebuild the MLP from weights.npz and policy.json `network`, checking names, shapes, dtypes
    and finiteness; BundleError names the array or field."""
    def get(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        if name not in arrays:
            raise BundleError(f"{where}: no array {name!r} (listed in policy.json field network)")
        a = arrays[name]
        if a.shape != shape or a.dtype != dtype:
            raise BundleError(f"{where}: array {name} is {a.dtype}{list(a.shape)}, "
                              f"policy.json says {np.dtype(dtype)}{list(shape)}")
        return a

    layers = []
    for i, lm in enumerate(net.layers):
        layers.append(_dense(lm, get(lm.weight, (lm.out_features, lm.in_features), F32),
                             get(lm.bias, (lm.out_features,), F32)))
    n_obs = net.layers[0].in_features
    norm = net.normalization
    mean = var = None
    if norm.kind == "standardize":
        mean = get("obs_mean", (n_obs,), np.float64)
        var = get("obs_var", (n_obs,), np.float64)
        if np.any(var < 0):
            raise BundleError(f"{where}: array obs_var has negative entries")
    mlp = MLP(tuple(layers), net.head.squash, np.asarray(net.head.low, F32),
              np.asarray(net.head.high, F32), norm.kind, norm.precision, mean, var,
              norm.epsilon, norm.clip)
    mlp.check_finite(where)
    return mlp


def _dense(lm: LayerModel, w: np.ndarray, b: np.ndarray) -> Dense:
    return Dense(np.ascontiguousarray(w), np.ascontiguousarray(b), lm.activation, lm.alpha)


# ---- evaluation ---------------------------------------------------------------------------------
def _activate(kind: str, alpha: float, x: np.ndarray, tmp: np.ndarray) -> None:
    """In place; `tmp` is scratch of x's shape."""
    if kind == "tanh":
        np.tanh(x, out=x)
    elif kind == "relu":
        np.maximum(x, _ZERO, out=x)
    elif kind == "elu":           # x if x > 0 else alpha * (exp(x) - 1)
        np.minimum(x, _ZERO, out=tmp)
        np.expm1(tmp, out=tmp)
        tmp *= F32(alpha)
        np.maximum(x, _ZERO, out=x)
        x += tmp
    elif kind == "leaky_relu":    # x if x > 0 else alpha * x
        np.minimum(x, _ZERO, out=tmp)
        tmp *= F32(alpha)
        np.maximum(x, _ZERO, out=x)
        x += tmp
    elif kind != "identity":
        raise ValueError(f"unknown activation {kind!r}")


class _Net:
    """One MLP's forward pass to its clipped output in [-1, 1], with buffers per batch shape."""

    def __init__(self, mlp: MLP):
        self.mlp = mlp
        self.weights_t = [np.ascontiguousarray(d.weight.T) for d in mlp.layers]  # [in, out]
        if mlp.norm == "standardize":
            self.mean, self.std = mlp.norm_arrays()
            self.clip = self.mean.dtype.type(mlp.clip)
        self.range = (mlp.high - mlp.low).astype(F32)

    def workspace(self, batch: tuple[int, ...]) -> dict:
        """Buffers for observations of shape batch + (obs_dim,); () is one 1-D observation."""
        mlp = self.mlp
        return {"norm": np.empty(batch + (mlp.obs_dim,), self.mean.dtype) if mlp.norm == "standardize"
                else None,
                "in": np.empty(batch + (mlp.obs_dim,), F32),
                "h": [np.empty(batch + (d.weight.shape[0],), F32) for d in mlp.layers],
                "tmp": [np.empty(batch + (d.weight.shape[0],), F32) for d in mlp.layers],
                "act": np.empty(batch + (mlp.action_dim,), F32)}

    def forward(self, obs: np.ndarray, ws: dict) -> np.ndarray:
        """clip(head(layers(normalize(obs))), -1, 1), in ws["act"]."""
        mlp = self.mlp
        x = obs
        if mlp.norm == "standardize":
            n = ws["norm"]
            np.subtract(obs, self.mean, out=n)
            np.divide(n, self.std, out=n)
            np.minimum(n, self.clip, out=n)
            np.maximum(n, -self.clip, out=n)
            x = ws["in"]
            x[...] = n                      # float64 -> float32 when precision is float64
        for d, wt, h, tmp in zip(mlp.layers, self.weights_t, ws["h"], ws["tmp"]):
            np.dot(x, wt, out=h)           # x @ W.T  (dot beats matmul on tiny arrays)
            h += d.bias
            _activate(d.activation, d.alpha, h, tmp)
            x = h
        a = ws["act"]
        if mlp.squash == "tanh":
            np.tanh(x, out=a)
            a += _ONE
            a *= _HALF
            a *= self.range
            a += mlp.low
        else:
            np.minimum(x, mlp.high, out=a)
            np.maximum(a, mlp.low, out=a)
        np.minimum(a, _ONE, out=a)
        np.maximum(a, _MINUS_ONE, out=a)
        return a


class MLPEvaluator:
    """obs [B, obs_dim] float32 -> (action, joint_targets) [B, n] float32, in numpy.

    With a residual (a fine-tuned bundle): action = clip(mlp(obs) + bound * residual(obs), -1, 1).
    `run(obs)` works for any batch; `run_one(obs)` reuses buffers sized for one observation, so
    the per-step path on a robot allocates only the two arrays it returns.
    """

    def __init__(self, mlp: MLP, default_pose: np.ndarray, action_scale: float,
                 residual: tuple[MLP, float] | None = None):
        self.mlp = mlp
        self.default = np.asarray(default_pose, F32)
        self.scale = F32(action_scale)
        self.nets = [_Net(mlp)] + ([_Net(residual[0])] if residual else [])
        self.bound = F32(residual[1]) if residual else None
        self._one = self._workspace(())

    def _workspace(self, batch: tuple[int, ...]) -> list[dict]:
        return [net.workspace(batch) for net in self.nets]

    def _forward(self, obs: np.ndarray, ws: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        a = self.nets[0].forward(obs, ws[0])
        if self.bound is not None:
            delta = self.nets[1].forward(obs, ws[1])
            delta *= self.bound
            a += delta
            np.minimum(a, _ONE, out=a)
            np.maximum(a, _MINUS_ONE, out=a)
        targets = a * self.scale
        targets += self.default
        return a.copy(), targets

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = np.asarray(obs, F32)
        if obs.ndim != 2 or obs.shape[1] != self.mlp.obs_dim:
            raise ValueError(f"expected observations of shape [batch, {self.mlp.obs_dim}], "
                             f"got {list(obs.shape)}")
        return self._forward(obs, self._workspace(obs.shape[:1]))

    def run_one(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One float32 observation [obs_dim] -> (action [n], joint_targets [n])."""
        return self._forward(obs, self._one)
