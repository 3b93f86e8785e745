"""Our own policy-gradient algorithms (REINFORCE, REINFORCE+baseline, A2C, PPO), written to be read.

Heavy imports are deferred: `simreal.algos.cli` must load without torch so `simreal --help` is
instant. `from simreal.algos import learn, make, ALGOS` imports the algorithms on first use.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ALGOS", "learn", "make"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from simreal.algos import api
        return getattr(api, name)
    raise AttributeError(f"module 'simreal.algos' has no attribute {name!r}")
