"""The policy bundle format: what `simreal export` writes and `simreal deploy` runs.

A bundle is a folder: policy.json (the contract: robot, joints, observation layout, action
scaling, period, file hashes), policy.onnx, weights.npz (the same network as arrays) and
probe.npz (observations with the actions the training policy gave). contract.py is the schema
and its checks against a robot; numpy_mlp.py the network as arrays and its numpy evaluator;
policy.py the loader (`Policy.load`: verify, check against the robot, self-test on the probe)
with an onnxruntime or numpy backend. Depends on simreal.robot only: export writes bundles
through it, deploy reads them, training evaluates them, and none imports another for it.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Policy", "is_bundle"]


def __getattr__(name: str) -> Any:
    if name == "Policy":
        from simreal.bundle.policy import Policy
        return Policy
    if name == "is_bundle":
        from simreal.bundle.contract import is_bundle
        return is_bundle
    raise AttributeError(f"module 'simreal.bundle' has no attribute {name!r}")
