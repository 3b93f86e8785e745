"""The scripted excitation `simreal sysid record` sends: one joint at a time, around the default pose,

    step +A (step_s), step -A (step_s), back to 0 (step_s / 2), then a chirp A sin(2 pi f(t) t)
    whose frequency sweeps f0 -> f1 over chirp_s (linear),

every other joint held at its default pose. Amplitude is bounded (MAX_AMPLITUDE) and every target
still passes the runtime's SafetyLayer (joint limits, change limit) like a policy's.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MAX_AMPLITUDE = 0.5     # rad: beyond this a hoisted leg swings hard enough to shake its stand


@dataclass(frozen=True)
class Excitation:
    amplitude: float = 0.2          # rad
    step_s: float = 0.6
    chirp_s: float = 3.0
    f0: float = 0.5                 # Hz
    f1: float = 4.0

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"excitation {name} must be a finite number > 0, got {v!r}")
        if self.amplitude > MAX_AMPLITUDE:
            raise ValueError(f"excitation amplitude must be <= {MAX_AMPLITUDE} rad, got {self.amplitude:g}")
        if self.f1 < self.f0:
            raise ValueError(f"excitation f1 ({self.f1:g} Hz) must be >= f0 ({self.f0:g} Hz)")

    @property
    def joint_s(self) -> float:
        return 2.5 * self.step_s + self.chirp_s

    def duration(self, n_joints: int) -> float:
        return n_joints * self.joint_s

    def offset(self, t: float, n_joints: int) -> np.ndarray:
        """Target minus default pose (rad) at time t from the start of the excitation."""
        out = np.zeros(n_joints)
        j, tj = int(t // self.joint_s), t % self.joint_s
        if not 0 <= j < n_joints:
            return out
        s = self.step_s
        if tj < s:
            out[j] = self.amplitude
        elif tj < 2 * s:
            out[j] = -self.amplitude
        elif tj >= 2.5 * s:
            tc = tj - 2.5 * s
            k = (self.f1 - self.f0) / self.chirp_s
            out[j] = self.amplitude * math.sin(2 * math.pi * (self.f0 * tc + 0.5 * k * tc * tc))
        return out


class ExcitationPolicy:
    """The Runtime's policy interface (infer -> (action, joint_targets)) playing the excitation:
    call i is t = i * period into it."""

    def __init__(self, excitation: Excitation, default_pose: np.ndarray, action_scale: float, period: float):
        self.ex, self.default, self.scale, self.period = excitation, np.asarray(default_pose, float), action_scale, period
        self.calls = 0

    def infer(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        off = self.ex.offset(self.calls * self.period, len(self.default))
        self.calls += 1
        return np.clip(off / self.scale, -1.0, 1.0), self.default + off
