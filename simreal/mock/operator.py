"""A scripted person for the mock robot's bench procedures (simreal.servos.calibrate.Operator):
holds the reference pose, then moves every joint to its upper limit, down to its lower limit and
back, in `steps` reads per leg of the sweep."""
from __future__ import annotations

import numpy as np


class MockOperator:
    def __init__(self, robot, *, steps: int = 20, overshoot: float = 0.05):
        self.robot, self.steps = robot, steps
        spec = robot.spec
        d, lo, hi = spec.default_pose, spec.joint_min - overshoot, spec.joint_max + overshoot
        legs = [(d, hi), (hi, lo), (lo, d)]
        self.path = [a + (b - a) * k / steps for a, b in legs for k in range(1, steps + 1)]
        self._k = 0

    def pose(self) -> None:
        self.robot.hold_joints(self.robot.spec.default_pose)
        self._k = 0

    def sweeping(self) -> bool:
        if self._k >= len(self.path):
            self.robot.hold_joints(self.robot.spec.default_pose)
            return False
        self.robot.hold_joints(np.asarray(self.path[self._k]))
        self._k += 1
        return True
