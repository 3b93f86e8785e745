"""Warm the critic up in simulation before the robot's first update.

A critic that has seen no data gives the actor a random gradient: the first robot updates would
then move the gait at random (seen on the mock: the tracking reward drifted down over the first
minute). So a fresh run first drives the same residual policy, with its exploration, through the
training environment under the robot's randomization (robot.yaml: the fitted ranges once
`simreal sysid fit --write` has run), computes the same reward on the simulator's velocity, and
runs critic-only updates on those transitions. Then the buffer is emptied: the actor only ever
learns from the robot.
"""
from __future__ import annotations


from simreal.finetune.residual import ResidualPolicy, reward
from simreal.finetune.velocity import Velocity, to_heading


def sim_transitions(policy: ResidualPolicy, spec, n: int, command: tuple[float, float], *, seed: int = 0) -> list[tuple]:
    """n (obs, delta, reward, next_obs, terminated) from randomized episodes at `command`."""
    from simreal.envs.locomotion import LocomotionEnv

    env = LocomotionEnv(spec, randomize=True, command=command)
    scales = spec.task.reward_scales
    out: list[tuple] = []
    try:
        obs, _ = env.reset(seed=seed)
        while len(out) < n:
            action, _ = policy.infer(obs)
            delta = policy.deltas.pop()
            next_obs, _, terminated, truncated, _ = env.step(action)
            sim = env.sim
            vx, vy = to_heading(sim.base_lin_vel_world(), sim.heading())
            v = Velocity(vx, vy, float(sim.base_ang_vel_body()[2]))
            out.append((obs, delta, reward(v, command, delta, scales), next_obs, bool(terminated)))
            obs = next_obs
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()
    return out


def warm_up(policy: ResidualPolicy, spec, n: int, command: tuple[float, float], *, utd: float,
            seed: int = 0) -> int:
    """Critic-only updates on n simulated transitions; the buffer is empty again after. Returns
    the gradient steps run."""
    learner = policy.learner
    for tr in sim_transitions(policy, spec, n, command, seed=seed):
        learner.add(*tr)
    steps = learner.update(int(round(utd * n)), critic_only=True)
    learner.clear_buffer()
    return steps
