"""`simreal finetune`: episodes of `simreal deploy` with a learning residual, updates between them.

Each episode is one deploy run: handshake, contract, pre-flight, rest, the operator's (or the
mock's) reset, soft start, the deadline loop behind the safety layer, the safe stop. The policy
the runtime calls is the bundle's plus a bounded residual (simreal.finetune.learner), so
fine-tuning never bypasses a check: a trip ends the episode (a fall is a terminal transition) and
the next episode starts from a fresh start sequence. Transitions are built from the runtime's own
cycle records (observation, command, state) and the velocity source's estimate at the next cycle;
a transition with anything non-finite is refused and counted.

Before the first episode of a fresh run the critic is warmed up in simulation
(simreal.finetune.warmup), and for the first robot seconds only the critic learns.

Robot time counts policy cycles only. After each episode: updates (`utd` per new transition), then
an atomic checkpoint (weights, optimizer, replay buffer, counters) that --resume continues from
exactly: a run killed mid-episode loses that episode's transitions, and counted none of them.
When the budget is met the run is exported as a bundle (simreal.finetune.export).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from simreal import protocol as P
from simreal.deploy.loop import state_from_record
from simreal.finetune import BOUND
from simreal.finetune.learner import NonFiniteUpdate, ResidualLearner
from simreal.finetune.resets import make_reset
from simreal.finetune.residual import ResidualPolicy, reward
from simreal.finetune.state import Counters, read_state, write_state
from simreal.finetune.velocity import make_source


class Stalled(RuntimeError):
    """Episodes that give no transitions (the robot trips at once, no velocity estimate): stop
    rather than loop for ever."""


MAX_EMPTY_EPISODES = 3


class Interrupted(Exception):
    """Ctrl-C / SIGTERM during an episode: the runtime stopped the robot safely, the episode was
    checkpointed, and the run ends (exit 130); --resume continues it."""


class _RowTruth:
    """GroundTruth's driver, answered from the runtime's cycle record (truth_every=1)."""

    def __init__(self):
        self.row: dict = {}

    def ground_truth(self):
        t = self.row.get("truth")
        return None if t is None else P.SimGroundTruth(0.0, t["pos"], (1.0, 0.0, 0.0, 0.0), t["vel"], (0.0,) * 3,
                                                       t["fallen"])   # only base_lin_vel is read


def episode_transitions(rows: list[dict], deltas: list[np.ndarray], velocity, scales: dict, *, fell: bool,
                        truth: _RowTruth) -> tuple[list[tuple], int, float | None]:
    """(obs, delta, reward, next_obs, terminated) from one episode's policy cycles; how many were
    refused; the mean forward velocity estimated. The reward of cycle i is the velocity measured
    at cycle i+1."""
    policy_rows = [r for r in rows if r.get("phase") == "policy" and "obs" in r and "state" in r]
    n = min(len(policy_rows), len(deltas))
    out, refused, vx = [], 0, []
    for i in range(n - 1):
        nxt = policy_rows[i + 1]
        state = state_from_record(nxt["state"])
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
        vx.append(v.vx)
    return out, refused, (float(np.mean(vx)) if vx else None)


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
             bound: float = BOUND, utd: float = 1.0, seed: int = 0, batch_size: int = 256,
             sim_warmup: int = 5000, actor_delay_s: float = 30.0, export: bool = True, reset: str | None = None,
             ask: Callable[[str], str] = input, confirm: Callable[[P.Info], bool] | None = None,
             notify: Callable[[str], None] = lambda s: None,
             on_episode: Callable[[Counters], None] | None = None) -> Counters:
    """Fine-tune BUNDLE (or a training run, exported first into OUT/base) on the robot at PORT.

    A fresh run first warms the critic up on `sim_warmup` simulated transitions; updates stay
    critic-only for the first `actor_delay_s` robot seconds. When the budget is met the result
    is exported as OUT/bundle (a resumed run that is already done only exports, the robot
    untouched)."""
    from simreal.bundle.contract import is_bundle
    from simreal.bundle.policy import Policy
    from simreal.deploy.plan import RuntimeConfig, StartRefused, plan_from_contract
    from simreal.finetune.export import export_finetuned
    from simreal.finetune.warmup import warm_up
    from simreal.robot.spec import load_robot
    from simreal.train.checkpoint import CheckpointStore

    if (steps is None) == (minutes is None):
        raise ValueError("give --steps or --minutes")
    budget = steps if steps is not None else int(round(minutes * 60))
    out = Path(out)
    store = CheckpointStore(out / "checkpoints")
    if not resume and store.step_dirs():
        raise FileExistsError(f"{out} already holds a fine-tuning run: pass --resume to continue it")
    if not is_bundle(bundle):          # a training run: its policy as a bundle first
        from simreal.export.bundle import export_run

        base_dir = out / "base"
        if not is_bundle(base_dir):
            notify(f"{bundle} is a training run: exporting it to {base_dir}")
            export_run(bundle, base_dir, eval_episodes=0, log=notify)
        bundle = str(base_dir)
    bundle = str(Path(bundle).resolve())
    base = Policy.load(bundle)
    if base.contract.residual is not None:
        raise StartRefused(f"{bundle}: already fine-tuned (policy.json has a residual); fine-tune the bundle it "
                           f"came from ({base.contract.residual.finetune.source}) for longer instead; torque stays off")
    spec = load_robot(base.contract.robot, check_mjcf=False)
    learner = ResidualLearner(base.obs_dim, spec.n_joints, algo=algo, seed=seed, batch_size=batch_size)
    counters = Counters()
    if resume:
        ckpt = store.latest_valid()
        state = read_state(ckpt.path)
        learner.read(ckpt.path, state["learner"])
        counters = Counters(**state["counters"])
        notify(f"resumed at episode {counters.episodes}, {counters.transitions} transitions")
    residual = ResidualPolicy(base, learner, bound)

    def done() -> bool:
        return (counters.transitions if steps is not None else counters.robot_s) >= budget

    def save(source) -> None:
        store.save(counters.transitions, lambda d: write_state(d, learner, counters, source.name, source.privileged,
                                                           bundle, algo, bound))

    if not done():
        simulated = _simulated(port)
        resets = make_reset(reset, spec, simulated, ask)
        source, truth = make_velocity(velocity, spec, simulated)
        try:
            if not resume and sim_warmup > 0:
                command = plan_from_contract(base.contract, spec).default_command
                notify(f"warming the critic up on {sim_warmup} simulated transitions ...")
                counters.updates += warm_up(residual, spec, sim_warmup, command, utd=utd, seed=seed)
                counters.sim_transitions = sim_warmup
                save(source)
            # the mock's ground truth is one more transaction per cycle: read it only when rewards need it
            cfg = RuntimeConfig(truth_every=1 if source.privileged else 0, reset_sim=resets.reset_sim,
                                standup=resets.standup)
            run = _Run(bundle, port, out, spec, residual, counters, source, truth, resets, cfg, lambda: save(source),
                       episode_s, utd, actor_delay_s)
            _episodes(run, done, confirm=confirm or (lambda info: True), notify=notify, on_episode=on_episode)
        finally:
            source.close()
    if export:
        result = export_finetuned(out, out / "bundle", overwrite=True)
        notify(f"exported the fine-tuned policy to {result.bundle_dir}")
    return counters


@dataclass(frozen=True)
class _Run:
    """What every episode of one run uses."""
    bundle: str
    port: str
    out: Path
    spec: Any
    policy: ResidualPolicy
    counters: Counters
    source: Any                   # the velocity source
    truth: _RowTruth
    resets: Any                   # simreal.finetune.resets.Reset
    config: Any                   # the deploy RuntimeConfig of each episode
    save: Callable[[], None]      # a checkpoint of the run as it stands
    episode_s: float
    utd: float
    actor_delay_s: float


def _episodes(run: _Run, done: Callable[[], bool], *, confirm, notify, on_episode) -> None:
    """Robot episodes until done() (or the operator ends the run): each a deploy run, then
    updates and a checkpoint."""
    from simreal.deploy.session import deploy

    counters, policy, learner = run.counters, run.policy, run.policy.learner
    empty = 0
    while not done():
        last_fell = bool(counters.episode_log and counters.episode_log[-1]["fell"])
        if not run.resets.ready(counters.episodes, last_fell, counters.falls):
            notify(f"the operator ended the run after {counters.episodes} episodes")
            return
        t0 = time.monotonic()
        rows: list[dict] = []
        policy.deltas = []
        run.source.reset()
        summary, _ = deploy(run.bundle, run.port, duration_s=run.episode_s, config=run.config,
                            log_path=str(run.out / "episodes" / f"{counters.episodes:05d}.jsonl"),
                            policy_wrapper=lambda p: policy, on_cycle=lambda i, row: rows.append(row), confirm=confirm)
        fell = any(s["cause"] == "tilt" for s in summary["safe_stops"])
        trans, refused, vx = episode_transitions(rows, policy.deltas, run.source, run.spec.task.reward_scales,
                                                 fell=fell, truth=run.truth)
        for tr in trans:
            learner.add(*tr)
        failed, t_update = None, time.monotonic()
        try:
            counters.updates += learner.update(int(round(run.utd * len(trans))),
                                               critic_only=counters.robot_s < run.actor_delay_s)
        except NonFiniteUpdate as exc:      # the weights from before it are back: save those, stop
            failed = exc
        t_update = time.monotonic() - t_update
        counters.episodes += 1
        counters.transitions += len(trans)
        counters.refused += refused
        counters.robot_s += summary.get("policy_s", 0.0)
        counters.falls += fell
        counters.wall_s += time.monotonic() - t0
        rewards = [r[2] for r in trans]
        counters.episode_log.append({"steps": len(trans), "fell": fell, "mean_vx": vx,
                                     "mean_reward": float(np.mean(rewards)) if rewards else None,
                                     "infer_ms_p99": summary["infer_ms"]["p99"],
                                     "missed_deadlines": summary["missed_deadlines"], "update_s": round(t_update, 3)})
        run.save()
        notify(f"episode {counters.episodes}: {len(trans)} transitions, {'FELL' if fell else 'ok'}, "
               f"vx {'n/a' if vx is None else f'{vx:.3f} m/s'}, falls {counters.falls}, "
               f"robot time {counters.robot_s:.0f} s")
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
                              f"--resume {run.out} continues it")
