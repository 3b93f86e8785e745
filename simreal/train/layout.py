"""Names of the files in a run directory (the layout itself is documented in run.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path: return self.root / "config.yaml"
    @property
    def run_json(self) -> Path: return self.root / "run.json"
    @property
    def metrics(self) -> Path: return self.root / "metrics.csv"
    @property
    def evaluations(self) -> Path: return self.root / "evaluations.csv"
    @property
    def tensorboard(self) -> Path: return self.root / "tb"
    @property
    def checkpoints(self) -> Path: return self.root / "checkpoints"
    @property
    def best(self) -> Path: return self.root / "best"
    @property
    def normalizer(self) -> Path: return self.root / "normalizer.json"
    @property
    def curve(self) -> Path: return self.root / "learning_curve.png"
    @property
    def summary(self) -> Path: return self.root / "summary.json"
    @property
    def lock(self) -> Path: return self.root / ".lock"
