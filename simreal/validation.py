"""One way to report a pydantic ValidationError: the source file, then one line per bad field."""
from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(source: str, err: ValidationError, heading: str) -> str:
    lines = [f"{source}: {heading}"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  field {loc}: {e['msg']}")
    return "\n".join(lines)
