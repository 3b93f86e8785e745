"""Running a policy bundle on a robot (or the mock robot): protocol, driver, safety, runtime.

`from simreal.deploy import Policy` loads the bundle loader on first use, so importing this
package (e.g. for `simreal --help`) stays light.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Policy"]


def __getattr__(name: str) -> Any:
    if name == "Policy":
        from simreal.bundle.policy import Policy   # the bundle loader lives in simreal.bundle
        return Policy
    raise AttributeError(f"module 'simreal.deploy' has no attribute {name!r}")
