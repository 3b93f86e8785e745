"""Velocity sources for fine-tuning on the robot (simreal.finetune.velocity): the mock's ground
truth is privileged and refused on hardware; leg odometry tracks the truth on the shipped
policies; an external tracker's UDP lines become velocities, and stale or bad ones do not."""
from __future__ import annotations

import math
import socket
import time

import numpy as np
import pytest

from simreal import protocol as P
from simreal.finetune.velocity import Onboard, Tracker, VelocityError, make_source, to_heading
from simreal.robot.observation import heading_of
from simreal.robot.spec import load_robot


def test_ground_truth_is_refused_on_a_robot_that_is_not_simulated():
    spec = load_robot("quadruped")
    with pytest.raises(VelocityError, match="privileged"):
        make_source("ground_truth", driver=None, spec=spec, simulated=False)
    assert make_source("ground_truth", driver=None, spec=spec, simulated=True).privileged
    with pytest.raises(VelocityError, match="one of ground_truth, onboard, tracker"):
        make_source("gps", driver=None, spec=spec, simulated=True)


@pytest.mark.parametrize("robot", ["quadruped", "biped"])
def test_leg_odometry_tracks_the_ground_truth_of_the_shipped_policy(robot, tmp_path):
    """5 s of the shipped policy on the lockstep mock: the onboard estimate's mean forward speed
    within 20 % of the truth's (measured: 13 % low on the quadruped, 11 % on the biped)."""
    from simreal.bundle.shipped import shipped_bundle
    from simreal.deploy.plan import RuntimeConfig
    from simreal.deploy.session import deploy
    from simreal.mock.faults import FaultSchedule
    from simreal.mock.gap import load_gap
    from simreal.mock.robot import MockRobot, RobotOptions
    from simreal.mock.threaded import ThreadedMock

    spec = load_robot(robot)
    mock = MockRobot(spec, load_gap(None)[1], FaultSchedule(), 0, RobotOptions(lockstep=True, watchdog_s=0))
    est, pairs = Onboard(spec), []

    def on_cycle(i, row):
        s, truth = row.get("state"), row.get("truth")
        if not s or row["phase"] != "policy":
            return
        v = est.velocity(P.State(int(s["ts"] * 1e6), 0, 0, 0, s["q"], s["dq"], s["quat"], s["gyro"], s["accel"]))
        if v is not None and truth:
            pairs.append((v.vx, to_heading(np.asarray(truth["vel"]), float(heading_of(np.asarray(s["quat"]))))[0]))

    with ThreadedMock(mock) as m:
        deploy(str(shipped_bundle(robot)), m.url, duration_s=5.0, log_path=str(tmp_path / "run.jsonl"), confirm=lambda i: True,
               on_cycle=on_cycle, config=RuntimeConfig(truth_every=1))
    est_v, true_v = np.array(pairs).T
    assert len(pairs) > 150 and true_v.mean() > 0.2
    assert abs(est_v.mean() / true_v.mean() - 1) < 0.2, (est_v.mean(), true_v.mean())


def test_onboard_refuses_a_non_finite_reading():
    est = Onboard(load_robot("quadruped"))
    st = P.State(1000, 0, 0, 0, (math.nan,) * 8, (0.0,) * 8, (1.0, 0, 0, 0), (0, 0, 0), (0, 0, 9.8))
    assert est.velocity(st) is None


def test_tracker_lines_become_heading_frame_velocities_and_stale_ones_none():
    tr = Tracker("127.0.0.1:0", max_age_s=0.15)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert tr.velocity() is None
        yaw = math.pi / 2                     # facing +y: moving +y is forward
        for k in range(4):
            out.sendto(f"{k * 0.02:.3f} 0.0 {k * 0.02 * 0.5:.4f} {yaw}\n".encode(), ("127.0.0.1", tr.port))
            time.sleep(0.01)
        out.sendto(b"garbage line\n0.01 0 0 0\nnan 1 2 3\n", ("127.0.0.1", tr.port))   # bad, out of order, NaN
        time.sleep(0.05)
        v = tr.velocity()
        assert v is not None and abs(v.vx - 0.5) < 1e-6 and abs(v.vy) < 1e-6 and abs(v.yaw_rate) < 1e-9
        assert tr.bad_lines == 3
        time.sleep(0.2)
        assert tr.velocity() is None          # no pose for longer than max_age_s
    finally:
        out.close()
        tr.close()
    with pytest.raises(VelocityError, match="cannot listen"):
        Tracker("127.0.0.1:notaport")
