"""The velocity command as typed on the command line (eval, deploy, demo)."""
import pytest

from simreal.robot.command import parse_command


def test_parse_command_keys_and_defaults():
    assert parse_command("vx=0.4") == (0.4, 0.0)
    assert parse_command("yaw=0.2, vx=-0.1") == (-0.1, 0.2)
    assert parse_command(None, default=(0.3, 0.1)) == (0.3, 0.1)
    assert parse_command("yaw=0.5", default=(0.3, 0.0)) == (0.3, 0.5)


@pytest.mark.parametrize("text, fragment", [("vz=1", "vx=NUMBER"), ("vx=fast", "not a number"),
                                            ("vx=nan", "not finite"), ("0.4", "vx=NUMBER")])
def test_parse_command_rejects_bad_input(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_command(text)
