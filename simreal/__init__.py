"""simreal: train legged-robot policies in MuJoCo, export them, run them over a serial link.

`import simreal` is light (no torch, mujoco or gymnasium): a robot computer with only the runtime
installed imports it too. The Gymnasium ids `simreal/<Robot>-v0` are registered by
`import simreal.envs` (which needs the `sim` extra), or without any import through Gymnasium's
module form: `gymnasium.make("simreal.envs:simreal/Quadruped-v0")`.
"""
from __future__ import annotations

__version__ = "0.1.0"
