"""The one home for reading YAML and for where simreal looks for its files.

Robots (robot.yaml), training configs and gap profiles are all read by `read_mapping` (a
mapping or nothing; no NaN or infinity anywhere in it), overridden by `parse_set`
(`dotted.key=value`) and found through `search_dirs` ($ENV_VAR entries, then the folder in a
source checkout, then the copy shipped inside the installed package). Each caller passes its
own error class, so a bad file is reported by the loader that was reading it.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import yaml

from simreal.errors import UserError
from simreal.validation import non_finite_problem

CHECKOUT = Path(__file__).resolve().parents[1]      # the repository root, in a source checkout
CONFIG_ENV_VAR = "SIMREAL_CONFIG_PATH"


def search_dirs(env_var: str | None, checkout_folder: str, shipped_package: str) -> list[Path]:
    """$env_var entries (os.pathsep separated), then CHECKOUT/checkout_folder, then the shipped copy."""
    dirs = [Path(p) for p in os.environ.get(env_var, "").split(os.pathsep) if p] if env_var else []
    checkout = CHECKOUT / checkout_folder
    if checkout.is_dir():
        dirs.append(checkout)
    try:   # data folders without __init__.py are namespace packages: ask for their locations
        spec = importlib.util.find_spec(shipped_package)
    except ModuleNotFoundError:
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        shipped = Path(loc)
        if shipped.is_dir() and shipped.resolve() != checkout.resolve() and shipped not in dirs:
            dirs.append(shipped)
    return dirs


def config_dirs() -> list[Path]:
    """Where training configs (ROBOT/ALGO.yaml) and gap profiles (gap/NAME.yaml) are found."""
    return search_dirs(CONFIG_ENV_VAR, "configs", "simreal._configs")


def read_mapping(path: str | Path, error: type[Exception] = UserError) -> dict[str, Any]:
    """A YAML file's top-level mapping ({} for an empty file); `error` names the file and what is wrong."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    problem = non_finite_problem(data, str(path))
    if problem:
        raise error(problem)
    return data


def parse_value(text: str) -> Any:
    """YAML scalar/list parsing, plus numbers YAML 1.1 leaves as strings ('3e-4', '1_000')."""
    try:
        v = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(v, str):
        for conv in (int, float):
            try:
                return conv(v)
            except ValueError:
                pass
    return v


def parse_set(items: list[str], error: type[Exception] = UserError) -> dict[str, Any]:
    """['a.b=1', 'c=x'] -> nested dict; errors name the offending item."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise error(f"--set {item!r}: expected dotted.key=value")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise error(f"--set {item!r}: {p} was already given a value")
            node = child
        node[leaf] = parse_value(text)
        problem = non_finite_problem(node[leaf], f"--set {item!r}")
        if problem:
            raise error(problem.replace(": field (value)", ""))
    return out
