"""The locomotion environment, its rewards, randomization, servo model, sensors and physics.

Importing this package registers `simreal/<Robot>-v0` with Gymnasium for every robot folder
found (see simreal.robot.registry), so `gymnasium.make("simreal.envs:simreal/Quadruped-v0")`
works from a bare interpreter.
"""
from __future__ import annotations

from simreal.envs.registration import register_all

register_all()
