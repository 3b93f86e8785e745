"""Measuring a bundle: agreement between implementations, and inference latency at batch 1.

Shared by the export (parity.json) and scripts/bench_inference.py (BENCHMARKS.md), so both
report the same statistic measured the same way.
"""
from __future__ import annotations

import gc
import time
from typing import Callable

import numpy as np

PARITY_FORMAT = "simreal-parity/1"


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| in float64 (NaN anywhere counts as infinitely different)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float("inf") if not np.all(np.isfinite(d)) else float(d.max(initial=0.0))


def latency_us(fn: Callable[[np.ndarray], object], inputs: np.ndarray, n: int = 5000,
               warmup: int = 500) -> dict[str, float]:
    """p50/p99/max of fn(one input) in microseconds, cycling through `inputs` (rows).

    The garbage collector is paused while timing, as a control loop would keep it out of the
    way; each call is timed on its own with perf_counter_ns.
    """
    rows = [np.ascontiguousarray(r) for r in inputs]
    for i in range(warmup):
        fn(rows[i % len(rows)])
    times = np.empty(n)
    enabled = gc.isenabled()
    gc.disable()
    try:
        clock = time.perf_counter_ns
        for i in range(n):
            x = rows[i % len(rows)]
            t0 = clock()
            fn(x)
            times[i] = clock() - t0
    finally:
        if enabled:
            gc.enable()
    us = times / 1e3
    return {"p50_us": round(float(np.percentile(us, 50)), 2),
            "p99_us": round(float(np.percentile(us, 99)), 2),
            "max_us": round(float(us.max()), 2), "n": n}
