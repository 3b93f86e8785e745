"""The scripted stand-up (robots/<name>/standup.yaml): loading refuses what would leave a joint's
limits; the start ramp goes through every keyframe to the default pose, through the safety layer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from simreal.deploy.loop import start_ramp
from simreal.robot.standup import StandUpError, load_standup


def test_the_shipped_quadruped_stand_up_loads_within_the_joint_limits(spec):
    kfs = load_standup(spec)
    assert len(kfs) == 2 and all(len(k.pose) == spec.n_joints for k in kfs)
    assert all(np.all(np.asarray(k.pose) >= spec.joint_min) and np.all(np.asarray(k.pose) <= spec.joint_max)
               for k in kfs)


@pytest.mark.parametrize("body, needle", [
    ("keyframes:\n  - {seconds: 1, pose: {fl_knee: 0.5}}\n", "keyframes.0.pose.fl_knee: 0.5 rad is outside"),
    ("keyframes:\n  - {seconds: 1, pose: {tail: 0.1}}\n", "keyframes.0.pose.tail: not a joint"),
    ("keyframes:\n  - {seconds: .nan, pose: {}}\n", "keyframes.0.seconds"),
    ("keyframes: []\n", "keyframes"),
])
def test_a_bad_stand_up_is_refused_naming_the_field(spec, tmp_path, body, needle):
    path = tmp_path / "standup.yaml"
    path.write_text(body)
    with pytest.raises(StandUpError, match="standup.yaml") as e:
        load_standup(spec, path)
    assert needle in str(e.value)


def test_the_ramp_passes_every_keyframe_and_ends_at_the_default_pose(spec):
    kfs = load_standup(spec)
    q0 = np.asarray(spec.default_pose) * 0.2                      # folded, as if lying down
    ramp = start_ramp(q0, kfs, np.asarray(spec.default_pose), 1.0, 0.02)
    assert len(ramp) == 50 + 50 + 50
    np.testing.assert_allclose(ramp[49], kfs[0].pose)
    np.testing.assert_allclose(ramp[99], kfs[1].pose)
    np.testing.assert_allclose(ramp[-1], spec.default_pose)
    assert np.abs(np.diff(ramp, axis=0)).max() < 8.0 * 0.02       # inside the runtime's rate limit
    plain = start_ramp(q0, (), np.asarray(spec.default_pose), 1.0, 0.02)
    assert len(plain) == 50 and np.allclose(plain[-1], spec.default_pose)


def test_deploy_runs_the_stand_up_as_its_soft_start(spec, tmp_path, serve_mock):
    from simreal.bundle.shipped import shipped_bundle
    from simreal.deploy.plan import RuntimeConfig
    from simreal.deploy.session import deploy

    kfs = load_standup(spec)
    m = serve_mock()
    log = tmp_path / "run.jsonl"
    summary, _ = deploy(str(shipped_bundle("quadruped")), m.url, duration_s=0.2, log_path=str(log),
                        config=RuntimeConfig(standup=kfs, reset_sim=True, truth_every=0), confirm=lambda info: True)
    assert summary["end"] == "duration" and not summary["safe_stops"]
    rows = [json.loads(x) for x in log.read_text().splitlines()[1:]]
    soft = [r for r in rows if r.get("phase") == "soft_start"]
    assert len(soft) == 150
    np.testing.assert_allclose(soft[49]["targets"], kfs[0].pose, atol=1e-6)
    np.testing.assert_allclose(soft[99]["targets"], kfs[1].pose, atol=1e-6)
    np.testing.assert_allclose(soft[99]["state"]["q"], kfs[1].pose, atol=0.25)   # the robot followed
