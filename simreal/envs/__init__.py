"""The locomotion environment, its rewards, randomization, servo model, sensors and physics.

Importing this package registers `simreal/<Robot>-v0` with Gymnasium for every robot folder
found (see simreal.robot.registry), so `gymnasium.make("simreal.envs:simreal/Quadruped-v0")`
works from a bare interpreter. Without the `sim` extra (a runtime-only install) there is nothing
to register, and `simreal.envs.cli` still loads so `simreal --help` lists its commands.
"""
from __future__ import annotations

try:
    from simreal.envs.registration import register_all
except ModuleNotFoundError as exc:
    if exc.name != "gymnasium":
        raise
else:
    register_all()
