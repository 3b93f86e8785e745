"""The policies shipped with simreal (assets/policies/<robot>): what the demo walks and drills deploy."""
from __future__ import annotations

from pathlib import Path

from simreal.yamlfiles import search_dirs


def shipped_bundle(robot: str = "quadruped") -> Path:
    """assets/policies/<robot> in a checkout, else the copy inside the installed package."""
    rel = Path("policies") / robot
    dirs = search_dirs(None, "assets", "simreal._assets")
    for d in dirs:
        if (d / rel / "policy.json").is_file():
            return d / rel
    raise FileNotFoundError(f"no shipped {robot} bundle (looked in {', '.join(str(d / rel) for d in dirs)}); "
                            f"run `simreal demo --robot {robot} --train-first`")
