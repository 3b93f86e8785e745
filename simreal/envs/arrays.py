"""Array helpers that give one env and a batch of envs the same floating-point results."""
from __future__ import annotations

import numpy as np


def sum_last(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, left to right. np.sum's pairwise order depends on the array's shape,
    so a (k,) step and an (N, k) batch could differ in the last bit; this never does."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(x.shape[:-1])
    for k in range(x.shape[-1]):
        out = out + x[..., k]
    return out
