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
    lines = [f"{source}: {heading}"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  field {loc}: {e['msg']}")
    return "\n".join(lines)
