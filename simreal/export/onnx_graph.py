"""Write the exported MLP as an ONNX graph, node by node, with normalization and scaling inside.

We build the graph with onnx.helper rather than torch.onnx.export: the network is a handful of
Gemm/activation nodes, so writing them explicitly keeps the graph identical to the numpy
evaluator's ops (numpy_mlp.py), readable in Netron, and independent of the exporter's version.

    input  obs            float32 [batch, obs_dim]   raw observation, layout in policy.json
    output action         float32 [batch, n_joints]  clipped to [-1, 1]; the runtime feeds it
                                                     back as the `last_action` observation term
                                                     (a fine-tuned bundle adds bound x its
                                                     residual network, then clips again)
    output joint_targets  float32 [batch, n_joints]  radians, policy.json joint order

Opset 17 and IR version 8 so that onnxruntime releases from 1.12 on (what small ARM boards ship
with) can load it.
"""
from __future__ import annotations

import numpy as np

from simreal.bundle.contract import ONNX_INPUT, ONNX_OUTPUTS
from simreal.bundle.numpy_mlp import MLP

OPSET = 17
IR_VERSION = 8
_ACT_OPS = {"tanh": ("Tanh", None), "relu": ("Relu", None), "elu": ("Elu", "alpha"),
            "leaky_relu": ("LeakyRelu", "alpha")}


def build_model(mlp: MLP, default_pose: np.ndarray, action_scale: float, *,
                residual: tuple[MLP, float] | None = None, doc: str = "",
                metadata: dict[str, str] | None = None):
    """The ONNX ModelProto for `mlp` (plus `bound` x a residual MLP: a fine-tuned bundle)
    followed by the action mapping; checked by onnx.checker."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def clip1(x: str, output: str) -> str:
        return node("Clip", [x, const(f"{output}/lo", np.float32(-1.0)), const(f"{output}/hi", np.float32(1.0))],
                    output)

    def network(m: MLP, p: str) -> str:
        """normalize -> layers -> head, node names prefixed by `p`; returns the head's output."""
        x = ONNX_INPUT
        if m.norm == "standardize":
            mean, std = m.norm_arrays()
            f64 = mean.dtype == np.float64
            if f64:   # SB3 VecNormalize works in float64, then casts to float32
                x = node("Cast", [x], f"{p}norm/obs64", to=TensorProto.DOUBLE)
            x = node("Sub", [x, const(f"{p}norm/mean", mean)], f"{p}norm/centered")
            x = node("Div", [x, const(f"{p}norm/std", std)], f"{p}norm/scaled")
            x = node("Clip", [x, const(f"{p}norm/lo", mean.dtype.type(-m.clip)),
                              const(f"{p}norm/hi", mean.dtype.type(m.clip))], f"{p}norm/clipped")
            if f64:
                x = node("Cast", [x], f"{p}norm/out", to=TensorProto.FLOAT)
        for i, d in enumerate(m.layers):
            x = node("Gemm", [x, const(f"{p}layers.{i}.weight", d.weight), const(f"{p}layers.{i}.bias", d.bias)],
                     f"{p}layers.{i}/linear", transB=1)
            if d.activation != "identity":
                op, attr = _ACT_OPS[d.activation]
                x = node(op, [x], f"{p}layers.{i}/{d.activation}", **({attr: float(d.alpha)} if attr else {}))
        if m.squash == "tanh":   # low + (tanh(z) + 1) * 0.5 * (high - low), SB3's unscale_action
            x = node("Tanh", [x], f"{p}head/tanh")
            x = node("Add", [x, const(f"{p}head/one", np.float32(1.0))], f"{p}head/plus1")
            x = node("Mul", [x, const(f"{p}head/half", np.float32(0.5))], f"{p}head/half_")
            x = node("Mul", [x, const(f"{p}head/range", (m.high - m.low).astype(np.float32))], f"{p}head/ranged")
            return node("Add", [x, const(f"{p}head/low", m.low)], f"{p}head/out")
        x = node("Min", [x, const(f"{p}head/high", m.high)], f"{p}head/min")   # min(max(z, low), high)
        return node("Max", [x, const(f"{p}head/low", m.low)], f"{p}head/out")

    if residual is None:
        action = clip1(network(mlp, ""), ONNX_OUTPUTS[0])
    else:   # clip(clip(base) + bound * clip(residual), -1, 1), as numpy_mlp.MLPEvaluator
        base = clip1(network(mlp, ""), "base/action")
        delta = clip1(network(residual[0], "residual/"), "residual/delta")
        step = node("Mul", [delta, const("residual/bound", np.float32(residual[1]))], "residual/scaled")
        action = clip1(node("Add", [base, step], "residual/sum"), ONNX_OUTPUTS[0])
    # joint_targets = default_pose + action_scale * action   (simreal.robot.action.action_to_targets)
    scaled = node("Mul", [action, const("targets/scale", np.float32(action_scale))], "targets/scaled")
    node("Add", [scaled, const("targets/default_pose", np.asarray(default_pose, np.float32))],
         ONNX_OUTPUTS[1])

    n = mlp.action_dim
    graph = helper.make_graph(
        nodes, "simreal_policy",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", mlp.obs_dim])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", n]) for name in ONNX_OUTPUTS],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="simreal", doc_string=doc)
    model.ir_version = IR_VERSION
    for k, v in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=str(v)))
    onnx.checker.check_model(model, full_check=True)
    return model
