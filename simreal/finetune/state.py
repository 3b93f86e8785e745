"""A fine-tuning run's counters and the state file each checkpoint carries (finetune.json)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from simreal.bundle.contract import contract_sha256
from simreal.finetune.learner import ResidualLearner

STATE_FILE = "finetune.json"
FORMAT = "simreal-finetune/1"


@dataclass
class Counters:
    episodes: int = 0
    transitions: int = 0          # in the replay buffer, from the robot
    robot_s: float = 0.0          # policy time on the robot
    falls: int = 0                # episodes ended by a tilt / fall trip
    refused: int = 0              # transitions with a non-finite part, or no velocity estimate
    updates: int = 0
    sim_transitions: int = 0      # the simulated warm-up's (not in the buffer any more)
    wall_s: float = 0.0
    episode_log: list = field(default_factory=list)   # per episode: steps, fell, mean vx and reward, timing


def write_state(d: Path, learner: ResidualLearner, counters: Counters, velocity: str, privileged: bool, bundle: str,
                algo: str, bound: float) -> None:
    """One checkpoint's learner files and finetune.json (counters, learner counters, provenance)."""
    learner.write(d)
    (d / STATE_FILE).write_text(json.dumps({
        "format": FORMAT, "counters": asdict(counters), "learner": learner.counters(),
        "provenance": {"bundle": bundle, "base_sha256": contract_sha256(bundle), "algo": algo, "bound": bound,
                       "velocity": velocity, "privileged_velocity": privileged}}, indent=1))


def read_state(checkpoint_dir: Path) -> dict:
    return json.loads((Path(checkpoint_dir) / STATE_FILE).read_text())
