"""How the robot gets back to its start between fine-tuning episodes (`--reset`), pluggable.

    sim       the mock's SIM_RESET puts it at the default pose (simulated robots only; their default)
    operator  a person sets the robot on its feet and presses Enter (hardware's default); q stops
    standup   the scripted stand-up of robots/<name>/standup.yaml runs as the start ramp; the
              operator is asked only after a fall (a stand-up does not right a robot on its side)

Whatever the reset, the next episode is a full deploy start: the start checks (upright, at rest,
the contract) gate torque on exactly as in `simreal deploy`.
"""
from __future__ import annotations

from typing import Callable, Protocol

from simreal.errors import UserError
from simreal.robot.standup import Keyframe, load_standup


class ResetError(UserError, ValueError):
    """--reset names no reset, or one this robot cannot use."""


class Reset(Protocol):
    name: str
    standup: tuple[Keyframe, ...]    # the start ramp's waypoints (none: a plain soft start)
    reset_sim: bool                  # send SIM_RESET before the start checks

    def ready(self, episode: int, last_fell: bool, falls: int) -> bool:
        """Before episode `episode` (0-based): False ends the run (checkpointed, then exported)."""
        ...


class SimReset:
    name, standup, reset_sim = "sim", (), True

    def ready(self, episode: int, last_fell: bool, falls: int) -> bool:
        return True


class OperatorReset:
    """Asks on the keyboard before every episode but the first (or, with a stand-up, after a fall)."""
    name, reset_sim = "operator", False

    def __init__(self, ask: Callable[[str], str] = input, standup: tuple[Keyframe, ...] = ()):
        self.ask, self.standup = ask, standup
        if standup:
            self.name = "standup"

    def ready(self, episode: int, last_fell: bool, falls: int) -> bool:
        if episode == 0 or (self.standup and not last_fell):
            return True
        what = "fell: right it and set it" if last_fell else "ended: set it"
        pose = "sitting or on its belly (the stand-up follows)" if self.standup else "on its feet at the start pose"
        answer = self.ask(f"episode {episode} {what} {pose}, at rest; Enter starts episode {episode + 1}, "
                          f"q ends the run (falls so far: {falls}) > ")
        return answer.strip().lower() not in ("q", "quit")


def make_reset(text: str | None, spec, simulated: bool, ask: Callable[[str], str] = input) -> Reset:
    """`sim` | `operator` | `standup`; default: sim on a simulated robot, operator on hardware."""
    kind = text or ("sim" if simulated else "operator")
    if kind == "sim":
        if not simulated:
            raise ResetError("--reset sim: this robot is not simulated; use operator or standup")
        return SimReset()
    if kind == "operator":
        return OperatorReset(ask)
    if kind == "standup":
        return OperatorReset(ask, load_standup(spec))
    raise ResetError(f"--reset {text!r}: one of sim, operator, standup")
