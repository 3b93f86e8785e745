"""How simreal words a pydantic validation failure: the source, the field, what is wrong with it.

Robot descriptions, training configs, gap profiles and bundle contracts all report through these,
so a bad file reads the same whichever loader found it.
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence

from pydantic import ValidationError


def field_problem(err: dict) -> str:
    """One pydantic error as text, with the offending value unless the message already shows it."""
    msg = err["msg"].removeprefix("Value error, ")
    if "input" not in err or err["type"] == "missing":
        return msg
    got = repr(err["input"])
    return msg if got in msg else f"{msg} (got {got})"


def unknown_key(key: str, known: Sequence[str]) -> str:
    """'unknown key', with the closest known key (a typo) or the list of known keys."""
    close = difflib.get_close_matches(key, list(known), n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (known: {', '.join(known)})" if known else "unknown key"


def describe_validation_error(source: str, err: ValidationError, heading: str) -> str:
    """'SOURCE: HEADING: field F: problem' on one line; one line per field when several are wrong."""
    problems = [f"field {'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()]
    if len(problems) == 1:
        return f"{source}: {heading}: {problems[0]}"
    return "\n".join([f"{source}: {heading} ({len(problems)} problems)"] + [f"  {p}" for p in problems])


def non_finite_keys(data: object, prefix: str = "") -> list[str]:
    """Dotted keys of every NaN or infinite number in a YAML-like tree (YAML's .nan / .inf)."""
    import math

    if isinstance(data, bool):
        return []
    if isinstance(data, float):
        return [] if math.isfinite(data) else [prefix or "(value)"]
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in non_finite_keys(v, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(data, (list, tuple)):
        return [k for i, v in enumerate(data) for k in non_finite_keys(v, f"{prefix}.{i}" if prefix else str(i))]
    return []


def non_finite_problem(data: object, source: str) -> str | None:
    """'SOURCE: field K: must be a finite number' for the first non-finite value, else None."""
    bad = non_finite_keys(data)
    if not bad:
        return None
    more = f" (and {', '.join(bad[1:])})" if len(bad) > 1 else ""
    return f"{source}: field {bad[0]}: must be a finite number, not NaN or infinity{more}"
