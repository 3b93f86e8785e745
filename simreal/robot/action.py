"""The ONE action mapping: policy output in [-1, 1] -> joint position targets in radians.

The simulator env calls it, and export bakes the same numbers into the ONNX graph.
"""
from __future__ import annotations

import numpy as np


def action_to_targets(action: np.ndarray, default_pose: np.ndarray, action_scale: float) -> np.ndarray:
    """targets = default + scale * clip(a, -1, 1)."""
    return default_pose + action_scale * np.clip(action, -1.0, 1.0)


def targets_to_action(targets: np.ndarray, default_pose: np.ndarray, action_scale: float) -> np.ndarray:
    """Inverse of action_to_targets (for actions already inside [-1, 1])."""
    return (np.asarray(targets) - default_pose) / action_scale
