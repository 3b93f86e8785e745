"""The servo-bus codecs by family name (bus.yaml `family`, `--bus`)."""
from __future__ import annotations

from simreal.hardware import dynamixel, feetech

CODECS = {"feetech": feetech, "dynamixel": dynamixel}
