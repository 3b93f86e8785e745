"""Joint calibration: where each servo reads 0 rad, which way it turns, how far it moves.

With torque off, the operator (1) holds the robot in its reference pose (robot.yaml's default
pose), then (2) moves every joint toward its upper limit first and then through its whole range.
Step 1 gives each joint's raw ticks at its default angle; the first clear move of step 2 gives the
direction (moving toward `max` must increase the angle); the extremes give the range of motion.
A direction that disagrees with bus.yaml (a servo mounted the other way round, or bus.yaml wrong)
and a joint that never moved are refused, so a reversed joint never reaches torque on.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

import numpy as np

from simreal.hardware.wiring import BusWiring, Calibration, JointCalibration, WiringError, now_text
from simreal.servos.bus import ServoBus

MOVE_TICKS = 60          # a move this large (~5 degrees) away from the reference decides the direction
POSE_READS = 10


class Operator(Protocol):
    def pose(self) -> None:
        """Return once the robot is held still in its reference pose."""

    def sweeping(self) -> bool:
        """Called between reads while the joints are moved; False once the operator is done."""


def calibrate(bus: ServoBus, spec, wiring: BusWiring, operator: Operator, *,
              accept_directions: bool = False, notify: Callable[[str], None] = lambda s: None) -> Calibration:
    ids = [j.servo_id for j in spec.joints]
    names = [j.name for j in spec.joints]
    found = {f.servo_id: f for f in bus.scan(ids)}
    missing = [f"{n} (id {i})" for n, i in zip(names, ids) if i not in found]
    if missing:
        raise WiringError(f"calibrate: no reply from {', '.join(missing)} on {bus.url}")
    wrong = [f"{n} (id {i}) is {found[i].model}" for n, i in zip(names, ids) if found[i].model != wiring.model]
    if wrong:
        raise WiringError(f"calibrate: bus.yaml says {wiring.model}, but " + "; ".join(wrong))
    bus.torque_off(ids)
    notify("torque is off. Hold the robot in its reference pose (robot.yaml default pose), still.")
    operator.pose()
    ref = np.median([bus.sync_read("present_position", ids) for _ in range(POSE_READS)], axis=0)
    notify("Now move every joint toward its upper limit first, then through its whole range.")
    lo, hi = ref.copy(), ref.copy()
    first_move = np.zeros(len(ids))
    while operator.sweeping():
        t = np.asarray(bus.sync_read("present_position", ids), dtype=float)
        lo, hi = np.minimum(lo, t), np.maximum(hi, t)
        undecided = (first_move == 0) & (np.abs(t - ref) >= MOVE_TICKS)
        first_move[undecided] = np.sign(t - ref)[undecided]
    still = [n for n, m in zip(names, first_move) if m == 0]
    if still:
        raise WiringError(f"calibrate: {', '.join(still)} never moved {MOVE_TICKS} ticks from the reference "
                          "pose; nothing written")
    m = bus.model
    joints, reversed_ = {}, []
    for i, j in enumerate(spec.joints):
        d = int(first_move[i])
        want = wiring.directions.get(j.name, 1)
        if d != want:
            reversed_.append(f"{j.name} turns {'+' if d > 0 else '-'} toward its max, bus.yaml says direction {want}")
        zero = int(round(ref[i] - d * j.default * m.ticks_per_rev / (2 * math.pi)))
        joints[j.name] = JointCalibration(servo_id=j.servo_id, zero=zero, direction=d, range=(int(lo[i]), int(hi[i])))
    if reversed_ and not accept_directions:
        raise WiringError("calibrate: reversed joint(s): " + "; ".join(reversed_) + ". A servo is mounted the "
                          "other way round or bus.yaml is wrong: fix one, or pass --accept-directions to record "
                          "what was measured; nothing written")
    cal = Calibration(robot=spec.name, family=wiring.family, model=wiring.model, created=now_text(), joints=joints)
    for j in spec.joints:
        a, b = sorted(cal.to_rad(j.name, t, m) for t in cal.joints[j.name].range)
        if a > j.min + 0.05 or b < j.max - 0.05:
            notify(f"warning: {j.name} moved over [{a:.2f}, {b:.2f}] rad, robot.yaml allows [{j.min}, {j.max}]")
    return cal
