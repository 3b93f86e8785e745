"""Names of the files in a run directory (the layout itself is documented in run.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simreal.bundle.contract import CONTRACT_FILE, RUN_SUBDIR, is_bundle


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


def policy_source(path: str | Path) -> tuple[str, Path]:
    """("bundle" | "run", path) for a folder any policy-taking command was given."""
    p = Path(path)
    if is_bundle(p):
        return "bundle", p
    if (p / "config.yaml").is_file() or (p.is_file() and p.suffix == ".zip"):
        return "run", p
    raise FileNotFoundError(f"{p}: neither a policy bundle ({CONTRACT_FILE}) nor a training run "
                            f"directory (config.yaml)")


def training_run_of(path: str | Path) -> Path:
    """The run directory to fine-tune from: the path itself, or a bundle's `run/` folder."""
    kind, p = policy_source(path)
    if kind == "run":
        return p
    run = p / RUN_SUBDIR
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{p}: this bundle carries no training checkpoint ({RUN_SUBDIR}/); "
                                f"re-export it from its run directory with --with-checkpoint")
    return run
