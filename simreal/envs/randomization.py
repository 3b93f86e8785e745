"""Domain randomization: per-episode, seeded samples of the physics and sensor parameters.

Ranges come from robot.yaml (`randomization:`). `scale` in [0, 1] is the curriculum hook: it
shrinks every range toward its nominal value (1 for scale factors, 0 for offsets), so a trainer
can start easy and widen. `nominal()` is the same structure with randomization off (ablations).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from simreal.robot.spec import NoiseSpec, RandomizationSpec


@dataclass(frozen=True)
class DomainParams:
    friction: float
    mass_scale: np.ndarray          # per body
    torso_added_mass: float         # kg
    com_offset: np.ndarray          # m, torso (3,)
    kp_scale: np.ndarray            # per joint
    kd_scale: np.ndarray
    torque_scale: np.ndarray
    velocity_limit_scale: np.ndarray
    damping_scale: np.ndarray
    frictionloss_scale: np.ndarray
    armature_scale: np.ndarray
    joint_offset: np.ndarray        # rad, encoder calibration error per joint
    action_latency: int             # control steps
    imu_latency: int                # control steps
    noise: NoiseSpec
    imu_bias: np.ndarray            # rad/s gyro bias (3,)
    push_velocity: float            # m/s
    push_interval: float            # s
    terrain_height: float           # m peak-to-peak

    def to_info(self) -> dict:
        """JSON-friendly summary reported in `info["randomization"]` at reset."""
        out = {}
        for k, v in asdict(self).items():
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v.model_dump() if hasattr(v, "model_dump") else v
        return out


def _toward(rng_: tuple[float, float], centre: float, scale: float) -> tuple[float, float]:
    return centre + scale * (rng_[0] - centre), centre + scale * (rng_[1] - centre)


def sample(cfg: RandomizationSpec, rng: np.random.Generator, n_joints: int, n_bodies: int,
           scale: float = 1.0) -> DomainParams:
    def u(r, centre, size=None):
        lo, hi = _toward(r, centre, scale)
        return rng.uniform(lo, hi, size) if size else float(rng.uniform(lo, hi))

    def sym(bound, size=None):
        return rng.uniform(-bound * scale, bound * scale, size) if size else float(rng.uniform(-bound * scale, bound * scale))

    lat_a = cfg.action_latency_steps
    lat_i = cfg.imu_latency_steps
    return DomainParams(
        friction=u(cfg.friction, 1.0),
        mass_scale=u(cfg.mass_scale, 1.0, n_bodies),
        torso_added_mass=u(cfg.torso_added_mass, 0.0),
        com_offset=sym(cfg.com_offset, 3),
        kp_scale=u(cfg.kp_scale, 1.0, n_joints),
        kd_scale=u(cfg.kd_scale, 1.0, n_joints),
        torque_scale=u(cfg.torque_scale, 1.0, n_joints),
        velocity_limit_scale=u(cfg.velocity_limit_scale, 1.0, n_joints),
        damping_scale=u(cfg.damping_scale, 1.0, n_joints),
        frictionloss_scale=u(cfg.frictionloss_scale, 1.0, n_joints),
        armature_scale=u(cfg.armature_scale, 1.0, n_joints),
        joint_offset=sym(cfg.joint_offset, n_joints),
        action_latency=int(rng.integers(lat_a[0], int(round(lat_a[0] + scale * (lat_a[1] - lat_a[0]))) + 1)),
        imu_latency=int(rng.integers(lat_i[0], int(round(lat_i[0] + scale * (lat_i[1] - lat_i[0]))) + 1)),
        noise=NoiseSpec(**{k: v * scale for k, v in cfg.noise.model_dump().items()}),
        imu_bias=sym(cfg.imu_bias, 3),
        push_velocity=cfg.push_velocity * scale,
        push_interval=float(rng.uniform(*cfg.push_interval_s)),
        terrain_height=u(cfg.terrain_height, 0.0),
    )


# Named groups of DomainParams fields, for ablations ("each group alone"): every field is in one.
GROUPS: dict[str, tuple[str, ...]] = {
    "dynamics": ("friction", "mass_scale", "torso_added_mass", "com_offset"),
    "actuators": ("kp_scale", "kd_scale", "torque_scale", "velocity_limit_scale", "damping_scale",
                  "frictionloss_scale", "armature_scale", "joint_offset"),
    "latency": ("action_latency", "imu_latency"),
    "sensors": ("noise", "imu_bias"),
    "pushes": ("push_velocity", "push_interval"),
    "terrain": ("terrain_height",),
}


def check_groups(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"randomize_groups: unknown group(s) {unknown}; known: {list(GROUPS)}")
    return tuple(groups)


def only(p: DomainParams, groups: tuple[str, ...], n_joints: int, n_bodies: int) -> DomainParams:
    """`p` with every field outside `groups` set back to nominal (the draws are the same, so an
    ablation sees the same randomized values for the groups it keeps)."""
    keep = {f for g in check_groups(groups) for f in GROUPS[g]}
    return replace(nominal(n_joints, n_bodies), **{f.name: getattr(p, f.name) for f in fields(p) if f.name in keep})


def nominal(n_joints: int, n_bodies: int) -> DomainParams:
    """Randomization off: every parameter at its nominal value."""
    one, zero = np.ones(n_joints), np.zeros(n_joints)
    return DomainParams(1.0, np.ones(n_bodies), 0.0, np.zeros(3), one, one, one, one, one, one, one,
                        zero, 0, 0, NoiseSpec(), np.zeros(3), 0.0, float("inf"), 0.0)


def apply(sim, p: DomainParams, rng: np.random.Generator) -> None:
    """Write the sampled parameters into the simulator's model (always from the nominal values)."""
    m, nom = sim.model, sim.nominal
    robot_bodies = slice(1, m.nbody)  # body 0 is the world
    m.body_mass[:] = nom.body_mass
    m.body_inertia[:] = nom.body_inertia
    m.body_mass[robot_bodies] *= p.mass_scale
    m.body_inertia[robot_bodies] *= p.mass_scale[:, None]
    b = sim.base_id
    if p.torso_added_mass:
        ratio = (m.body_mass[b] + p.torso_added_mass) / m.body_mass[b]
        m.body_mass[b] *= ratio
        m.body_inertia[b] *= ratio
    m.body_ipos[:] = nom.body_ipos
    m.body_ipos[b] += p.com_offset
    m.geom_friction[:] = nom.geom_friction
    m.geom_friction[:, 0] = p.friction  # MuJoCo takes the max of the pair: set floor and feet alike
    for name, scale in (("dof_frictionloss", p.frictionloss_scale), ("dof_armature", p.armature_scale)):
        arr = getattr(m, name)
        arr[:] = getattr(nom, name)
        arr[sim.dof_idx] *= scale
    s = sim.spec.servo
    sim.joint_damping[:] = nom.dof_damping[sim.dof_idx] * p.damping_scale
    sim.servo.kp[:] = s.kp * p.kp_scale
    sim.servo.kd[:] = s.kd * p.kd_scale
    sim.servo.torque_limit[:] = s.torque_limit * p.torque_scale
    sim.servo.velocity_limit[:] = s.velocity_limit * p.velocity_limit_scale
    sim.configure_servos()
    sim.encoder_offset[:] = p.joint_offset
    set_terrain(sim, p.terrain_height, rng)


def set_terrain(sim, height: float, rng: np.random.Generator) -> None:
    """Random bumps of peak-to-peak `height` metres, flat around the spawn point."""
    m = sim.model
    if sim.floor_geom < 0 or m.nhfield == 0:
        return
    hid = m.geom_dataid[sim.floor_geom]
    nrow, ncol = m.hfield_nrow[hid], m.hfield_ncol[hid]
    adr, hz = m.hfield_adr[hid], m.hfield_size[hid][2]
    if height <= 0:
        m.hfield_data[adr:adr + nrow * ncol] = 0.0
        return
    z = rng.uniform(0.0, height / hz, (nrow, ncol))
    r, c = np.ogrid[:nrow, :ncol]
    z[(r - nrow // 2) ** 2 + (c - ncol // 2) ** 2 <= 4] = 0.0  # spawn on flat ground
    m.hfield_data[adr:adr + nrow * ncol] = z.ravel()
