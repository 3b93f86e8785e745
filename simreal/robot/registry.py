"""Where robots are found: one folder per robot, holding robot.yaml and its MJCF.

Search order (first hit wins), reported by `simreal robots --paths`:
1. every directory in $SIMREAL_ROBOT_PATH (os.pathsep separated);
2. `robots/` beside the package, in a source checkout;
3. the copy shipped inside the installed package (`simreal._robots`), after `pip install .`.
"""
from __future__ import annotations

from pathlib import Path

from simreal.errors import UserError
from simreal.yamlfiles import search_dirs

ENV_VAR = "SIMREAL_ROBOT_PATH"


class UnknownRobot(UserError, KeyError):
    """No robot folder of that name on the search path (a KeyError, so `except KeyError` still works)."""

    def __str__(self) -> str:          # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def search_path() -> list[Path]:
    return search_dirs(ENV_VAR, "robots", "simreal._robots")


def list_robots() -> list[str]:
    names: dict[str, None] = {}
    for root in search_path():
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if (d / "robot.yaml").is_file():
                names.setdefault(d.name, None)
    return list(names)


def robot_dir(name: str) -> Path:
    for root in search_path():
        d = root / name
        if (d / "robot.yaml").is_file():
            return d
    raise UnknownRobot(f"unknown robot {name!r}; known: {', '.join(list_robots()) or 'none'} "
                   f"(searched: {', '.join(map(str, search_path()))})")
