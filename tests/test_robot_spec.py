"""robot.yaml validation: both shipped robots load, and mistakes name the file and the field."""
import shutil
from pathlib import Path

import pytest
import yaml

from simreal.robot.registry import list_robots, robot_dir
from simreal.robot.spec import RobotSpecError, load_robot


def test_shipped_robots_listed_and_valid(robot):
    assert robot in list_robots()
    spec = load_robot(robot)
    assert spec.n_joints == {"quadruped": 8, "biped": 10}[robot]
    assert len(spec.default_pose) == spec.n_joints
    assert (spec.joint_min <= spec.default_pose).all() and (spec.default_pose <= spec.joint_max).all()
    assert spec.control.substeps * spec.control.physics_dt == pytest.approx(spec.control.period)
    assert len(spec.spec_hash) == 64 and spec.spec_hash == load_robot(robot).spec_hash


@pytest.fixture
def robot_copy(tmp_path) -> Path:
    dst = tmp_path / "quadruped"
    shutil.copytree(robot_dir("quadruped"), dst)
    return dst


def _edit(folder: Path, fn) -> Path:
    path = folder / "robot.yaml"
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))
    return path


def _expect(folder: Path, *fragments: str) -> None:
    with pytest.raises(RobotSpecError) as err:
        load_robot(folder)
    msg = str(err.value)
    for f in fragments:
        assert f in msg, msg


def test_unknown_key(robot_copy):
    _edit(robot_copy, lambda d: d["servo"].update(kpp=3.0))
    _expect(robot_copy, "robot.yaml", "servo.kpp")


def test_posture_joint_must_be_a_joint(robot_copy):
    _edit(robot_copy, lambda d: d["task"].update(posture_joints=["fl_hip", "tail"]))
    _expect(robot_copy, "robot.yaml", "task.posture_joints", "'tail'")


def test_min_greater_than_max(robot_copy):
    def f(d):
        d["joints"][2].update(min=1.0, max=-1.0)
    _edit(robot_copy, f)
    _expect(robot_copy, "robot.yaml", "joints.2", "min 1.0 > max -1.0")


def test_non_positive_period(robot_copy):
    _edit(robot_copy, lambda d: d["control"].update(period=0))
    _expect(robot_copy, "robot.yaml", "control.period")


def test_physics_dt_must_divide_period(robot_copy):
    _edit(robot_copy, lambda d: d["control"].update(physics_dt=0.003))
    _expect(robot_copy, "control", "must divide")


def test_joint_not_in_mjcf(robot_copy):
    _edit(robot_copy, lambda d: d["joints"][0].update(name="fl_hipp"))
    _expect(robot_copy, "robot.yaml", "joints.0.name", "fl_hipp")


def test_missing_joint(robot_copy):
    _edit(robot_copy, lambda d: d["joints"].pop())
    _expect(robot_copy, "robot.yaml", "field joints", "rr_knee")


def test_missing_required_field(robot_copy):
    _edit(robot_copy, lambda d: d.pop("control"))
    _expect(robot_copy, "robot.yaml", "field control")


def test_duplicate_servo_id(robot_copy):
    _edit(robot_copy, lambda d: d["joints"][1].update(servo_id=1))
    _expect(robot_copy, "duplicate joint servo_id")


def test_bad_randomization_range(robot_copy):
    _edit(robot_copy, lambda d: d["randomization"].update(friction=[1.5, 0.5]))
    _expect(robot_copy, "randomization", "friction")


def test_unknown_reward_term_rejected(robot_copy):
    from simreal.envs.locomotion import LocomotionEnv

    _edit(robot_copy, lambda d: d["task"]["reward_scales"].update(speeed=1.0))
    with pytest.raises(ValueError, match="speeed"):
        LocomotionEnv(load_robot(robot_copy))


def test_broken_mjcf_names_the_file(robot_copy):
    xml = robot_copy / "quadruped.xml"
    xml.write_text(xml.read_text().replace("</worldbody>", "", 1))
    _expect(robot_copy, "scene.xml", "MuJoCo cannot load")


def test_not_yaml(robot_copy):
    (robot_copy / "robot.yaml").write_text("joints: [\n")
    _expect(robot_copy, "robot.yaml", "not valid YAML")


def test_unknown_robot_lists_known():
    with pytest.raises(KeyError, match="quadruped"):
        load_robot("hexapod")


def test_new_robot_is_a_folder_not_code(tmp_path, monkeypatch):
    """A robot dropped into a folder on SIMREAL_ROBOT_PATH is found and registered."""
    dst = tmp_path / "myquad"
    shutil.copytree(robot_dir("quadruped"), dst)
    _edit(dst, lambda d: d.update(name="myquad"))
    monkeypatch.setenv("SIMREAL_ROBOT_PATH", str(tmp_path))
    assert "myquad" in list_robots()
    assert load_robot("myquad").root == dst
