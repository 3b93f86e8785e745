"""The velocity command (the observation's `command` term) as people type it: 'vx=0.4,yaw=0.1'."""
from __future__ import annotations

import math


def parse_command(text: str | None, default: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """'vx=0.4,yaw=0.1' (either key optional) -> (vx m/s, yaw rad/s); missing keys keep `default`."""
    vx, yaw = default
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in ("vx", "yaw"):
            raise ValueError(f"--command item {item!r}: expected vx=NUMBER or yaw=NUMBER")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"--command {key}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"--command {key}: {value!r} is not finite")
        vx, yaw = (v, yaw) if key == "vx" else (vx, v)
    return vx, yaw
