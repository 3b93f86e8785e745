"""`simreal sysid fit`: identify servo parameters from a hoisted recording with `mujoco.sysid`.

The recording is replayed in the robot's own simulator (the servo model training uses), base held
where the mock hoists it, from the first cycle's measured joint state: each cycle's sent targets
are held for one control period, `delay` cycles late. The residual is measured minus simulated
encoder positions at every read. For each delay 0..MAX_DELAY control steps, in physics steps
(a real link applies a command some milliseconds after the state it answers), mujoco.sysid's
box-constrained Gauss-Newton (`optimize`, optimizer "mujoco") fits the continuous parameters and
`calculate_intervals` gives their 95% confidence half-widths; the delay with the smallest residual
wins (one physics step resolution).

Identified now: kp_scale, kd_scale (one value for all joints) and the action delay. Torque and
velocity limits, damping, friction loss, armature, offsets, IMU bias: not yet.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from simreal.sysid.recording import Recording, RecordingError

MAX_DELAY = 2           # control steps; searched in physics steps
PARAMS = {"kp_scale": (0.3, 2.0), "kd_scale": (0.3, 3.0)}      # bounds


@dataclass(frozen=True)
class Estimate:
    name: str
    value: float
    ci95: float             # half-width

    @property
    def identified(self) -> bool:
        """The recording pins it: 3 x its 95% half-width stays below the value. A scale whose range
        would reach zero is not identified (found on the `beyond` mock: kd 0.49 +- 0.31 gave a
        range from -0.44); robot.yaml keeps its range for it."""
        return 3.0 * self.ci95 < self.value

    def range(self, min_half_width: float) -> tuple[float, float]:
        """A randomization range centred on the value: +-max(3 x the 95% half-width, min_half_width x value)."""
        h = max(3.0 * self.ci95, min_half_width * self.value)
        return round(self.value - h, 3), round(self.value + h, 3)


@dataclass(frozen=True)
class Fit:
    estimates: tuple[Estimate, ...]
    delay_physics_steps: int        # command -> actuation, physics steps (simreal: 4 per control step)
    substeps: int
    rms_rad: float                  # residual at the optimum
    rms_by_delay: tuple[float, ...]
    rms_nominal_rad: float          # the nominal model, no delay

    @property
    def action_latency_steps(self) -> int:
        """The delay in whole control steps, as the training env's action latency models it."""
        return int(round(self.delay_physics_steps / self.substeps))

    @property
    def delay_s(self) -> float:
        return self.delay_physics_steps * self.physics_dt

    physics_dt: float               # s

    def to_dict(self) -> dict[str, Any]:
        return {"estimates": {e.name: {"value": e.value, "ci95": e.ci95} for e in self.estimates},
                "delay_physics_steps": self.delay_physics_steps, "delay_s": self.delay_s,
                "action_latency_steps": self.action_latency_steps, "rms_rad": self.rms_rad,
                "rms_by_delay": list(self.rms_by_delay), "rms_nominal_rad": self.rms_nominal_rad}


class Replay:
    """The recording's cycles in the robot's simulator, hoisted."""

    def __init__(self, spec: Any, rec: Recording):
        from simreal.envs.physics import Simulator

        if rec.stance != "hoisted":
            raise RecordingError(f"stance {rec.stance!r}: sysid fit needs a hoisted recording for now")
        if abs(rec.period - spec.control.period) > 1e-9:
            raise RecordingError(f"period {rec.period:g} s differs from {spec.name}'s control period")
        self.spec, self.rec = spec, rec
        self.sim = Simulator(spec)
        self.kp0, self.kd0 = self.sim.servo.kp.copy(), self.sim.servo.kd.copy()

    def rollout(self, kp_scale: float, kd_scale: float, delay: int) -> np.ndarray:
        sim, rec = self.sim, self.rec
        sim.servo.kp[:], sim.servo.kd[:] = self.kp0 * kp_scale, self.kd0 * kd_scale
        sim.configure_servos()
        sim.reset(pose=rec.q[0])
        sim.data.qvel[sim.dof_idx] = rec.dq[0]
        sim.hoist()                                       # where the mock's --hoisted holds it
        out = np.empty_like(rec.q)
        out[0] = rec.q[0]
        n = sim.substeps
        for k in range(len(rec.q) - 1):
            for i in range(k * n, (k + 1) * n):          # physics step i holds what was sent `delay` steps before
                sim.step(rec.sent[max(i - delay, 0) // n], 1)
            out[k + 1] = sim.data.qpos[sim.qpos_idx]
        return out

    def residual(self, x: np.ndarray, delay: int) -> np.ndarray:
        return (self.rollout(float(x[0]), float(x[1]), delay) - self.rec.q).ravel()


def fit(spec: Any, rec: Recording, *, max_delay: int = MAX_DELAY) -> Fit:
    """kp, kd scales and the action delay (0..max_delay control steps) that best replay `rec`."""
    from mujoco import sysid

    from simreal.errors import MissingDependency

    if not hasattr(sysid, "optimize"):         # mujoco without its [sysid] extra: the package is empty
        raise MissingDependency("simreal sysid fit needs mujoco's system identification toolbox: "
                                "pip install 'mujoco[sysid]' (or simreal's sim extra)")

    replay = Replay(spec, rec)
    rms = lambda r: float(np.sqrt(np.mean(r ** 2)))      # noqa: E731
    best = None
    by_delay = []
    for delay in range(max_delay * spec.control.substeps + 1):
        params = sysid.ParameterDict()
        for name, (lo, hi) in PARAMS.items():
            params.add(sysid.Parameter(name, 1.0, lo, hi))

        def residual_fn(x, _params, delay=delay):
            cols = np.asarray(x, float).reshape(len(PARAMS), -1)      # mujoco's optimizer batches columns
            return [np.stack([replay.residual(c, delay) for c in cols.T], axis=1)], None, None

        with contextlib.redirect_stdout(io.StringIO()):     # the backend prints every iteration
            opt, result = sysid.optimize(params, residual_fn, optimizer="mujoco", verbose=False, max_iters=50)
        x = np.concatenate([opt[n].value for n in PARAMS])
        r = replay.residual(x, delay)
        _, ci = sysid.calculate_intervals([r], result.jac)
        by_delay.append(rms(r))
        if best is None or rms(r) < best[0]:
            best = (rms(r), delay, x, ci)
    _, delay, x, ci = best
    ests = tuple(Estimate(n, round(float(v), 4), round(float(c), 4)) for n, v, c in zip(PARAMS, x, ci))
    return Fit(ests, delay, spec.control.substeps, by_delay[delay], tuple(by_delay),
               rms(replay.residual(np.ones(len(PARAMS)), 0)), spec.control.physics_dt)
