"""`simreal finetune`: episodes of `simreal deploy` with a learning residual, updates between them.

Each episode is one deploy run: handshake, contract, pre-flight, rest, the operator's (or the
mock's) reset, soft start, the deadline loop behind the safety layer, the safe stop. The policy
the runtime calls is the bundle's plus a bounded residual (simreal.finetune.learner), so
fine-tuning never bypasses a check: a trip ends the episode (a fall is a terminal transition) and
the next episode starts from a fresh start sequence. Transitions are built from the runtime's own
cycle records (observation, command, state) and the velocity source's estimate at the next cycle;
a transition with anything non-finite is refused and counted.

Robot time counts policy cycles only. After each episode: updates (`utd` per new transition), then
an atomic checkpoint (weights, optimizer, replay buffer, counters) that --resume continues from
exactly: a run killed mid-episode loses that episode's transitions, and counted none of them.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from simreal import protocol as P
from simreal.envs.rewards import TRACKING_SIGMA, YAW_SIGMA
from simreal.finetune.learner import NonFiniteUpdate, ResidualLearner
from simreal.finetune.velocity import Velocity, make_source
from simreal.robot.action import action_to_targets

STATE_FILE = "finetune.json"
FORMAT = "simreal-finetune/1"
RESIDUAL_PENALTY = 0.5        # x mean(delta^2): stay near the simulation policy unless it pays


class Stalled(RuntimeError):
    """Episodes that give no transitions (the robot trips at once, no velocity estimate): stop
    rather than loop for ever."""


MAX_EMPTY_EPISODES = 3


class Interrupted(Exception):
    """Ctrl-C / SIGTERM during an episode: the runtime stopped the robot safely, the episode was
    checkpointed, and the run ends (exit 130); --resume continues it."""


@dataclass
class Counters:
    episodes: int = 0
    transitions: int = 0          # in the replay buffer, from the robot
    robot_s: float = 0.0          # policy time on the robot
    falls: int = 0                # episodes ended by a tilt / fall trip
    refused: int = 0              # transitions with a non-finite part, or no velocity estimate
    updates: int = 0
    wall_s: float = 0.0
    episode_log: list = field(default_factory=list)   # per episode: steps, mean vx, fell, mean reward


class ResidualPolicy:
    """What the runtime calls: the bundle's action plus bound x the learner's delta, as the
    bundle's own (action, joint targets) pair. Keeps the deltas of this episode, one per call."""

    def __init__(self, base, learner: ResidualLearner, bound: float, *, explore: bool = True):
        self.base, self.learner, self.bound, self.explore = base, learner, bound, explore
        c = base.contract
        self.default_pose, self.action_scale = np.asarray(c.default_pose), float(c.action_scale)
        self.deltas: list[np.ndarray] = []

    @property
    def obs_dim(self) -> int:
        return self.base.obs_dim

    def infer(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a_sim, _ = self.base.infer(obs)
        delta = self.learner.act(obs, explore=self.explore)
        self.deltas.append(delta)
        action = np.clip(a_sim + self.bound * delta, -1.0, 1.0).astype(np.float32)
        return action, action_to_targets(action, self.default_pose, self.action_scale).astype(np.float32)


def reward(v: Velocity, command, delta: np.ndarray, scales: dict) -> float:
    """The training reward's tracking terms on the estimated velocity, less a residual penalty."""
    track = np.exp(-((v.vx - command[0]) ** 2 + v.vy ** 2) / TRACKING_SIGMA)
    yaw = np.exp(-(v.yaw_rate - command[1]) ** 2 / YAW_SIGMA)
    return float(scales.get("tracking_lin_vel", 1.0) * track + scales.get("tracking_yaw", 0.5) * yaw
                 - RESIDUAL_PENALTY * float(np.mean(delta ** 2)))


class _RowTruth:
    """GroundTruth's driver, answered from the runtime's cycle record (truth_every=1)."""

    def __init__(self):
        self.row: dict = {}

    def ground_truth(self):
        t = self.row.get("truth")
        return None if t is None else P.SimGroundTruth(0.0, t["pos"], (1.0, 0.0, 0.0, 0.0), t["vel"], (0.0,) * 3,
                                                       t["fallen"])   # only base_lin_vel is read


def episode_transitions(rows: list[dict], deltas: list[np.ndarray], velocity, scales: dict, *, fell: bool,
                        truth: _RowTruth) -> tuple[list[tuple], int]:
    """(obs, delta, reward, next_obs, terminated) from one episode's policy cycles; and how many
    were refused. The reward of cycle i is the velocity measured at cycle i+1."""
    policy_rows = [r for r in rows if r.get("phase") == "policy" and "obs" in r and "state" in r]
    n = min(len(policy_rows), len(deltas))
    out, refused = [], 0
    for i in range(n - 1):
        nxt = policy_rows[i + 1]
        s = nxt["state"]
        state = P.State(int(s["ts"] * 1e6), s["status"], s["errors"], 0, s["q"], s["dq"], s["quat"], s["gyro"],
                        s["accel"])
        truth.row = nxt
        try:
            v = velocity.velocity(state)
        except Exception:        # noqa: BLE001 - a failed estimate is a refused transition, not a crash
            v = None
        if v is None or not np.isfinite([v.vx, v.vy, v.yaw_rate]).all():
            refused += 1
            continue
        obs, next_obs = np.asarray(policy_rows[i]["obs"]), np.asarray(nxt["obs"])
        r = reward(v, policy_rows[i]["command"], deltas[i], scales)
        terminal = fell and i == n - 2
        if not (np.isfinite(obs).all() and np.isfinite(next_obs).all() and np.isfinite(r)):
            refused += 1
            continue
        out.append((obs, deltas[i], r, next_obs, terminal))
    return out, refused


def _simulated(port: str) -> bool:
    """Whether the robot on `port` is the mock (its INFO says so): picks the velocity source and
    the reset. Nothing is powered."""
    from simreal.deploy.driver import DriverError, SerialDriver
    from simreal.deploy.plan import StartRefused

    try:
        with SerialDriver(port) as d:
            return d.handshake().simulated
    except DriverError as exc:
        raise StartRefused(f"{exc}; torque stays off") from None


def make_velocity(text: str | None, spec, simulated: bool):
    """(source, the record it reads ground truth from). Default: ground truth on the mock
    (privileged, and said so in the checkpoint), the onboard estimate on hardware."""
    truth = _RowTruth()
    return make_source(text or ("ground_truth" if simulated else "onboard"), driver=truth, spec=spec,
                       simulated=simulated), truth


def finetune(bundle: str, port: str, out: str | Path, *, steps: int | None = None, minutes: float | None = None,
             algo: str = "crossq", resume: bool = False, velocity: str | None = None, episode_s: float = 10.0,
             bound: float = 0.2, utd: float = 0.5, seed: int = 0, batch_size: int = 256,
             confirm: Callable[[P.Info], bool] | None = None, notify: Callable[[str], None] = lambda s: None,
             on_episode: Callable[[Counters], None] | None = None) -> Counters:
    from simreal.bundle.policy import Policy
    from simreal.deploy.plan import RuntimeConfig
    from simreal.deploy.session import deploy
    from simreal.robot.spec import load_robot
    from simreal.train.checkpoint import CheckpointStore

    if (steps is None) == (minutes is None):
        raise ValueError("give --steps or --minutes")
    budget = steps if steps is not None else int(round(minutes * 60))
    out = Path(out)
    store = CheckpointStore(out / "checkpoints")
    if not resume and store.step_dirs():
        raise FileExistsError(f"{out} already holds a fine-tuning run: pass --resume to continue it")
    base = Policy.load(bundle)
    spec = load_robot(base.contract.robot, check_mjcf=False)
    simulated = _simulated(port)
    source, truth = make_velocity(velocity, spec, simulated)
    learner = ResidualLearner(base.obs_dim, spec.n_joints, algo=algo, seed=seed, batch_size=batch_size)
    counters = Counters()
    if resume:
        ckpt = store.latest_valid()
        state = json.loads((ckpt.path / STATE_FILE).read_text())
        learner.read(ckpt.path, state["learner"])
        counters = Counters(**state["counters"])
        notify(f"resumed at episode {counters.episodes}, {counters.transitions} transitions")
    residual = ResidualPolicy(base, learner, bound)
    cfg = RuntimeConfig(truth_every=1 if simulated else 0, reset_sim=simulated)
    scales = spec.task.reward_scales

    def done() -> bool:
        return (counters.transitions if steps is not None else counters.robot_s) >= budget

    empty = 0
    try:
        while not done():
            t0 = time.monotonic()
            rows: list[dict] = []
            residual.deltas = []
            source.reset()
            summary, _ = deploy(bundle, port, duration_s=episode_s, log_path=str(out / "episodes" /
                                f"{counters.episodes:05d}.jsonl"), config=cfg, policy_wrapper=lambda p: residual,
                                on_cycle=lambda i, row: rows.append(row), confirm=confirm or (lambda info: True))
            fell = any(s["cause"] == "tilt" for s in summary["safe_stops"])
            trans, refused = episode_transitions(rows, residual.deltas, source, scales, fell=fell, truth=truth)
            for tr in trans:
                learner.add(*tr)
            failed = None
            try:
                counters.updates += learner.update(int(round(utd * len(trans))))
            except NonFiniteUpdate as exc:      # the weights from before it are back: save those, stop
                failed = exc
            counters.episodes += 1
            counters.transitions += len(trans)
            counters.refused += refused
            counters.robot_s += summary.get("policy_s", 0.0)
            counters.falls += fell
            counters.wall_s += time.monotonic() - t0
            rewards = [r[2] for r in trans]
            counters.episode_log.append({"steps": len(trans), "fell": fell,
                                         "mean_reward": float(np.mean(rewards)) if rewards else None})
            store.save(counters.transitions, lambda d: _write(d, learner, counters, source, bundle, algo, bound))
            notify(f"episode {counters.episodes}: {len(trans)} transitions, {'FELL' if fell else 'ok'}, "
                   f"falls {counters.falls}, robot time {counters.robot_s:.0f} s")
            if on_episode is not None:
                on_episode(counters)
            if failed is not None:
                raise failed
            empty = 0 if trans else empty + 1
            if empty >= MAX_EMPTY_EPISODES:
                raise Stalled(f"{empty} episodes in a row gave no transition (last: "
                              f"{summary['safe_stops'][0]['cause'] if summary['safe_stops'] else summary['end']}, "
                              f"{refused} refused); the run is checkpointed, torque is off")
            stops = [s["cause"] for s in summary["safe_stops"]]
            if "signal" in stops:
                raise Interrupted(f"interrupted in episode {counters.episodes}: the robot was stopped safely "
                                  f"and the run checkpointed ({counters.transitions} transitions); "
                                  f"--resume {out} continues it")
    finally:
        source.close()
    return counters


def _write(d: Path, learner: ResidualLearner, counters: Counters, source, bundle: str, algo: str,
           bound: float) -> None:
    learner.write(d)
    (d / STATE_FILE).write_text(json.dumps({
        "format": FORMAT, "counters": asdict(counters), "learner": learner.counters(),
        "provenance": {"bundle": str(bundle), "algo": algo, "bound": bound, "velocity": source.name,
                       "privileged_velocity": source.privileged}}, indent=1))
