"""Velocity-tracking locomotion for any robot folder in robots/."""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from simreal.envs import randomization, rewards, sensors
from simreal.envs.physics import Simulator
from simreal.robot.action import ActionPipeline
from simreal.robot.heading import START, HeadingHold
from simreal.robot.observation import RobotState, builder_for, heading_of

from simreal.robot.spec import RobotSpec, load_robot

if TYPE_CHECKING:
    import mujoco

DRAW_BLOCK = 64    # steps of sensor-noise and push draws taken from the env's rng at once


def push_velocity(speed, u: np.ndarray) -> np.ndarray:
    """A random horizontal shove: `speed` x U(0.5, 1) in a uniform direction; u: two U(0, 1)."""
    ang = 2 * np.pi * u[..., 0]
    mag = speed * (0.5 + 0.5 * u[..., 1])
    return np.stack([mag * np.cos(ang), mag * np.sin(ang)], axis=-1)


def track_air_time(air_time: np.ndarray, last_contact: np.ndarray, contact: np.ndarray,
                   dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-foot swing timer. A contact counts if seen this step or the last (contacts flicker
    for one physics step on touchdown). Returns (touchdown now, air time before it, the new
    timer). Any leading batch shape."""
    filtered = contact | last_contact
    touchdown = (air_time > 0) & filtered
    air_time = air_time + dt
    return touchdown, air_time * touchdown, np.where(filtered, 0.0, air_time)


class LocomotionEnv(gym.Env):
    """Follow a commanded forward velocity (and yaw rate) with a small legged robot.

    The robot (joints, servo, period, task, randomization ranges) comes from
    `robots/<robot>/robot.yaml`; the numbers below are for a robot with n joints.

    ## Action space
    `Box(-1, 1, (n,))`: joint position targets around the default pose,
    `target = default + action_scale * a` (rad), held for one control period (default 20 ms)
    and tracked by the servo model (PD with torque-speed limits) at every physics step.
    With randomization, the action reaches the servos 0..N control steps late.

    ## Observation space
    `Box(-100, 100, (history * (3n + 8),))`, float32, built by the shared
    `simreal.robot.observation` function the runtime also uses on hardware:

    | index          | term        | unit             | note                                      |
    |----------------|-------------|------------------|-------------------------------------------|
    | 0:3            | gravity     | unit vector      | gravity direction in the body frame (IMU) |
    | 3:6            | gyro        | rad/s            | body angular velocity (IMU), + bias       |
    | 6:6+n          | joint_pos   | rad              | encoder position minus default pose       |
    | 6+n:6+2n       | joint_vel   | rad/s            | encoder velocity                          |
    | 6+2n:6+3n      | last_action | -                | previous action, clipped to [-1, 1]       |
    | 6+3n:8+3n      | command     | m/s, rad/s       | commanded forward velocity, yaw rate      |

    Each term is multiplied by its scale from `robot.yaml` (`observation.scales`); encoders are
    quantized to the servo's ticks; randomization adds noise per term, IMU latency and bias.

    ## Rewards
    `reward = sum_k scale_k * term_k` over the terms of `task.reward_scales`
    (see `simreal.envs.rewards`): tracking_lin_vel `exp(-((vx-c)^2 + vy^2)/0.1)`,
    tracking_yaw, upright `cos(tilt)`, lin_vel_z `vz^2`, torque `sum tau^2`,
    action_rate `sum (a - a_prev)^2`, foot_slip `sum contact * v_foot^2`, alive `1`,
    termination `[fell]`; the gait terms feet_air_time `sum over touchdowns (t_air - 0.2 s)` and
    single_support `[exactly one foot down]` (both zero when the command is below 0.05 m/s); and
    posture `sum (q - q_default)^2` over `task.posture_joints` (e.g. a biped's hip yaw and roll,
    which otherwise twist it in place).
    `info["reward_terms"]` holds the scaled terms; they sum to the reward.

    ## Episode end
    Terminated (`info["fell"] = True`) when the tilt exceeds `task.max_tilt_deg` or the base is
    lower than `task.min_base_height` above the ground. Truncated after `task.episode_seconds`
    or at the edge of the terrain.

    ## Arguments
    `robot` (folder name or RobotSpec), `randomize` (domain randomization on/off),
    `command` (fixed (vx, yaw) instead of sampling), `randomization_scale` (0..1: every range
    shrunk toward nominal), `curriculum_steps` (if set, the scale ramps linearly from
    `randomization_scale` to 1 over that many of this env's steps, applied at each reset; set
    both through the training config's `env.kwargs`), `command_vx` / `command_yaw` (sampling
    ranges instead of robot.yaml's `task`, e.g. straight walking first, then turning, in a
    two-stage training), `episode_seconds` (override), `randomize_groups` (randomize only these
    groups of simreal.envs.randomization.GROUPS, the rest nominal: ablations), `heading_hold`
    (gain of simreal.robot.heading.HeadingHold, 0 = off: the observed yaw command also corrects
    the heading lost since the episode started, as `simreal deploy` does; the reward tracks
    that command, `observed_command`, and `info["command"]` stays the episode's),
    `render_mode` ("rgb_array" or "human"), `width` / `height` (rgb_array frames), `render_shadows`
    (off by default: on software OpenGL shadows and multisampling make a frame ~5x slower).

    ## Info
    Every step: `reward_terms`, `forward_velocity` (m/s, body x), `command`, `fell`,
    `base_position` (m); on an episode's last step `end`: "fall", "time_limit" or "terrain_edge".
    On reset: `randomization` (the sampled parameters).

    ## Model
    `env.unwrapped.model` / `env.unwrapped.data` are the MuJoCo model and data, as in
    Gymnasium's MuJoCo envs; `env.unwrapped.sim` is the Simulator that owns them.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    # Gymnasium's MuJoCo convention: tools written for its envs look for these two.
    @property
    def model(self) -> "mujoco.MjModel":
        """The MuJoCo model (randomized in place at each reset)."""
        return self.sim.model

    @property
    def data(self) -> "mujoco.MjData":
        return self.sim.data

    def __init__(self, robot: str | RobotSpec = "quadruped", randomize: bool = True,
                 command: tuple[float, float] | None = None, randomization_scale: float = 1.0,
                 curriculum_steps: int | None = None,
                 command_vx: tuple[float, float] | None = None,
                 command_yaw: tuple[float, float] | None = None,
                 episode_seconds: float | None = None, randomize_groups: list[str] | None = None,
                 heading_hold: float = 0.0, render_mode: str | None = None,
                 width: int = 640, height: int = 480, render_shadows: bool = False):
        self.spec_robot: RobotSpec = robot if isinstance(robot, RobotSpec) else load_robot(robot)
        spec = self.spec_robot
        rewards.check_scales(spec.task.reward_scales)
        self.sim = Simulator(spec)
        self.randomize = randomize
        self.randomization_scale = randomization_scale
        self.randomize_groups = None if randomize_groups is None else randomization.check_groups(randomize_groups)
        self._curriculum = (randomization_scale, curriculum_steps) if curriculum_steps else None
        self.total_steps = 0
        self.fixed_command = None if command is None else np.asarray(command, dtype=np.float64)
        self.command_ranges = (tuple(spec.task.command_vx if command_vx is None else command_vx),
                               tuple(spec.task.command_yaw if command_yaw is None else command_yaw))
        self.dt = spec.control.period
        self.heading_hold = HeadingHold(float(heading_hold), self.command_ranges[1], self.dt)
        self.observed_command = np.zeros(2)
        seconds = spec.task.episode_seconds if episode_seconds is None else episode_seconds
        self.max_steps = int(round(seconds / self.dt))
        self.render_mode = render_mode
        self._render_size = (height, width)
        self._render_shadows = render_shadows
        self._renderer = None
        self._viewer = None
        self.obs_builder = builder_for(spec)
        self.pipeline = ActionPipeline.for_robot(spec)
        n = spec.n_joints
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        # Finite bounds (Gymnasium warns on infinite ones); scaled terms stay far inside +-100.
        self.observation_space = gym.spaces.Box(-100.0, 100.0, (self.obs_builder.layout.size,), np.float32)
        self.params = randomization.nominal(n, self.sim.model.nbody - 1)
        self._draw_row = DRAW_BLOCK
        self._tilt_limit = np.deg2rad(spec.task.max_tilt_deg)
        self._terrain_edge = 0.85 * float(self.sim.model.hfield_size[0][0]) if self.sim.model.nhfield else np.inf

    @property
    def last_targets(self) -> np.ndarray:
        """The joint targets the action pipeline made of the last action: what the runtime sends."""
        return self._sent.copy()

    # --- curriculum hook ------------------------------------------------------------------------
    def set_randomization_scale(self, scale: float) -> None:
        self.randomization_scale = float(np.clip(scale, 0.0, 1.0))

    # --- gym API --------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.begin_episode(seed)
        n = self.spec_robot.n_joints
        self.last_action = np.zeros(n)
        self._sent = self.pipeline.default_pose.copy()        # the last target sent (as after soft start)
        self._target_queue = deque([self._sent] * (self.params.action_latency + 1),
                                   maxlen=self.params.action_latency + 1)
        self._imu_queue: deque[RobotState] = deque(maxlen=self.params.imu_latency + 1)
        self.obs_builder.reset()
        self._heading_ref = START
        n_feet = len(self.spec_robot.feet)
        self._air_time, self._last_contact = np.zeros(n_feet), np.ones(n_feet, dtype=bool)
        obs = self._observe(self._next_draws()[0])
        return obs, {"randomization": self.params.to_info(), "command": self.command.copy(),
                     "base_position": self.sim.base_pos(), "heading": self.sim.heading()}

    def begin_episode(self, seed: int | None = None) -> None:
        """A new episode's randomization, model, pose and command, from the env's rng; the
        per-step state (queues, timers, observation history) is the caller's to clear. The
        batched env (simreal.envs.batched) calls this for each of its envs."""
        gym.Env.reset(self, seed=seed)
        spec, rng, n = self.spec_robot, self.np_random, self.spec_robot.n_joints
        if seed is not None:
            self._draw_row = DRAW_BLOCK            # a reseeded rng starts a fresh block
        if self._curriculum is not None:
            start, span = self._curriculum
            self.set_randomization_scale(start + (1.0 - start) * min(1.0, self.total_steps / span))
        if self.randomize:
            self.params = randomization.sample(spec.randomization, rng, n, self.sim.model.nbody - 1,
                                               self.randomization_scale)
            if self.randomize_groups is not None:
                self.params = randomization.only(self.params, self.randomize_groups, n, self.sim.model.nbody - 1)
        else:
            self.params = randomization.nominal(n, self.sim.model.nbody - 1)
        randomization.apply(self.sim, self.params, rng)
        self.sim.reset()
        if self.fixed_command is not None:
            self.command = self.fixed_command.copy()
        else:
            self.command = np.array([rng.uniform(*r) for r in self.command_ranges])
        self.steps = 0
        self._next_push = self.params.push_interval
        self.noise_std = sensors.stds(self.params.noise)

    def draw_block(self) -> tuple[np.ndarray, np.ndarray]:
        """The next DRAW_BLOCK steps' randomness: standard normals for the sensor noise and two
        uniforms for a push, per step."""
        rng = self.np_random
        return (rng.standard_normal((DRAW_BLOCK, sensors.draws(self.spec_robot.n_joints))),
                rng.random((DRAW_BLOCK, 2)))

    def _next_draws(self) -> tuple[np.ndarray, np.ndarray]:
        if self._draw_row == DRAW_BLOCK:
            self._draws, self._draw_row = self.draw_block(), 0
        row = self._draw_row
        self._draw_row += 1
        return self._draws[0][row], self._draws[1][row]

    def step(self, action: np.ndarray):
        spec, sim = self.spec_robot, self.sim
        action = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), -1.0), 1.0)
        self._sent = self.pipeline.targets(action, self._sent)     # what the runtime would send
        self._target_queue.append(self._sent)
        sim.step(self._target_queue[0])                              # what was sent `latency` steps ago
        self.steps += 1
        self.total_steps += 1
        noise, u = self._next_draws()
        if self.randomize and sim.time >= self._next_push and self.params.push_velocity > 0:
            sim.push(push_velocity(self.params.push_velocity, u))
            self._next_push += self.params.push_interval

        lin_vel = sim.base_lin_vel_body()
        contact = sim.foot_contacts()
        touchdown, air_time, self._air_time = track_air_time(self._air_time, self._last_contact, contact, self.dt)
        self._last_contact = contact
        tilt = sim.tilt()
        fell = bool(tilt > self._tilt_limit or sim.base_height() < spec.task.min_base_height)
        q = rewards.StepQuantities(
            lin_vel_body=lin_vel, ang_vel_body=sim.base_ang_vel_body(), up_z=float(np.cos(tilt)),
            torque=sim.last_torque, action=action, last_action=self.last_action,
            foot_contact=contact, foot_speed=sim.foot_speeds_xy(contact), command=self.observed_command,
            foot_touchdown=touchdown, foot_air_time=air_time,
            posture_error=(sim.joint_pos() - spec.default_pose)[spec.posture_mask], fell=fell)
        reward, terms = rewards.compute(q, spec.task.reward_scales)
        self.last_action = action
        pos = sim.base_pos()
        at_edge = bool(np.hypot(pos[0], pos[1]) > self._terrain_edge)
        truncated = bool(self.steps >= self.max_steps or at_edge)
        obs = self._observe(noise)
        info = {"reward_terms": terms, "forward_velocity": float(lin_vel[0]),
                "command": self.command.copy(), "fell": fell, "base_position": pos, "heading": sim.heading()}
        if fell or truncated:
            info["end"] = "fall" if fell else "terrain_edge" if at_edge else "time_limit"
        if self.render_mode == "human":
            self.render()
        return obs, reward, fell, truncated and not fell, info

    def _observe(self, noise: np.ndarray) -> np.ndarray:
        """Encoders now, IMU `imu_latency` steps old, then the shared sensor noise model
        (`noise`: this step's standard normal draws)."""
        true = self.sim.measure()
        self._imu_queue.append(true)
        imu = self._imu_queue[0]
        state = RobotState(joint_pos=true.joint_pos, joint_vel=true.joint_vel, quat=imu.quat,
                           gyro=imu.gyro, accel=imu.accel, timestamp=true.timestamp)
        state = sensors.apply_noise(state, self.noise_std, self.params.imu_bias, noise)
        command = self.command
        if self.heading_hold.active:
            command, self._heading_ref = self.heading_hold.command(command, self._heading_ref, heading_of(state.quat))
        self.observed_command = command
        return self.obs_builder(state, self.last_action, command)

    # --- rendering ----------------------------------------------------------------------------
    def render(self):
        import mujoco

        if self.render_mode == "rgb_array":
            if self._renderer is None:
                # Shadows and multisampling cost ~5x on software GL (EGL on Mesa): off unless asked.
                self.sim.model.vis.quality.offsamples = 4 if self._render_shadows else 0
                self._renderer = mujoco.Renderer(self.sim.model, *self._render_size)
                self._camera = mujoco.MjvCamera()
                self._camera.distance, self._camera.elevation, self._camera.azimuth = 0.9, -20.0, 120.0
            self._camera.lookat[:] = self.sim.base_pos()
            self._renderer.update_scene(self.sim.data, self._camera)
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self._render_shadows
            return self._renderer.render()
        if self.render_mode == "human":
            import mujoco.viewer

            if self._viewer is None:
                self._viewer = mujoco.viewer.launch_passive(self.sim.model, self.sim.data)
            self._viewer.sync()
        return None

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
