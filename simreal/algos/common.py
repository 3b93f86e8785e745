"""What every policy-gradient algorithm here shares, written once.

Networks (categorical and diagonal-Gaussian policies, a value network), the running observation
normalizer, a lockstep batch of environments, the two ways of collecting experience (whole
episodes for Monte-Carlo methods, fixed-length rollouts for bootstrapped ones), the return and
advantage estimators, the `Agent` that bundles them, and seeding.

Notation used in every comment: s_t state, a_t action, r_t reward, gamma discount, pi_theta(a|s)
the policy, V_phi(s) the critic, d_t = 1 when the episode ends after step t.
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

Callback = Callable[[dict], Any]


# ---------------------------------------------------------------------------------------------
# Configuration shared by all algorithms
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommonConfig:
    """Hyperparameters every algorithm has. Each algorithm's Config adds its own fields."""

    lr: float = 3e-4                      # policy (and, unless split, critic) learning rate
    gamma: float = 0.99                   # discount
    ent_coef: float = 0.0                 # weight of the entropy bonus
    max_grad_norm: float | None = 0.5     # global gradient-norm clip; None = no clipping
    anneal_lr: bool = False               # decay the learning rate linearly to 0 over the budget
    hidden: tuple[int, ...] = (64, 64)    # MLP hidden sizes, for policy and critic alike
    activation: str = "tanh"              # tanh | relu | elu
    norm_obs: bool = True                 # running mean/std observation normalization
    state_dependent_std: bool = False     # Gaussian std from the network (True) or a free vector
    init_log_std: float = 0.0             # initial log std of the Gaussian policy


def parse_config(cls: type, values: dict | None, where: str = "config") -> Any:
    """Build a frozen config dataclass from a plain dict, refusing unknown or mistyped keys."""
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__qualname__}; "
                         f"known: {sorted(known)}")
    for name, value in list(values.items()):
        default = getattr(cls, name, None)
        if name == "hidden":
            if not isinstance(value, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in value):
                raise ValueError(f"{where}.hidden: expected a list of positive ints, got {value!r}")
            values[name] = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where}.{name}: expected true/false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where}.{name}: expected an integer, got {value!r}")
        elif isinstance(default, float) or default is None:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{where}.{name}: expected a number, got {value!r}")
            if value is not None:
                values[name] = float(value)
                if not math.isfinite(values[name]):
                    raise ValueError(f"{where}.{name}: must be finite, got {value!r}")
    if "activation" in values and values["activation"] not in ACTIVATIONS:
        raise ValueError(f"{where}.activation: expected one of {sorted(ACTIVATIONS)}, "
                         f"got {values['activation']!r}")
    return cls(**values)


def config_to_dict(config: Any) -> dict:
    """Plain python values only (tuples become lists), so it survives torch.load(weights_only)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def seed_everything(seed: int) -> None:
    """One seeding block for python, numpy and torch (environments are seeded at reset)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(sizes: Sequence[int], activation: str = "tanh", out_gain: float = 1.0) -> nn.Sequential:
    """Linear layers with orthogonal init (gain sqrt(2) inside, `out_gain` on the last layer).

    A small output gain (0.01 for policy heads) starts the policy close to uniform / zero-mean,
    which is what PPO implementations found to matter most for stable early learning.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        linear = nn.Linear(n_in, n_out)
        nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class CategoricalPolicy(nn.Module):
    """pi(a|s) = softmax(logits(s))_a over n discrete actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int], activation: str = "tanh"):
        super().__init__()
        self.logits = mlp([obs_dim, *hidden, n_actions], activation, out_gain=0.01)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (log pi(a|s), entropy H(pi(.|s))), one value per row."""
        # log pi(a|s) = z_a - log sum_b exp(z_b)    (log-softmax, numerically stable)
        logp_all = torch.log_softmax(self.logits(obs), dim=-1)
        logp = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        # H = -sum_a pi(a|s) log pi(a|s)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw a ~ pi(.|s); return (a, log pi(a|s))."""
        logp_all = torch.log_softmax(self.logits(obs), dim=-1)
        # Gumbel-max: argmax_a (log pi(a|s) + g_a), g_a = -log(E_a), E_a ~ Exp(1), is a draw
        # from pi(.|s) (and cheaper than torch.multinomial for tiny batches)
        action = (logp_all - torch.empty_like(logp_all).exponential_().log()).argmax(-1)
        return action, logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs).argmax(-1)


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(mu(s), diag(sigma^2)); sigma is a free vector or a second network head."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], activation: str = "tanh",
                 state_dependent_std: bool = False, init_log_std: float = 0.0):
        super().__init__()
        self.state_dependent_std = state_dependent_std
        self.act_dim = act_dim
        if state_dependent_std:
            # one trunk, two heads: mu(s) and log sigma(s); the log-sigma head starts at init_log_std
            self.net = mlp([obs_dim, *hidden, 2 * act_dim], activation, out_gain=0.01)
            with torch.no_grad():
                self.net[-1].bias[act_dim:] = init_log_std
        else:
            self.net = mlp([obs_dim, *hidden, act_dim], activation, out_gain=0.01)
            self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(obs)
        if self.state_dependent_std:
            mean, log_std = out[..., :self.act_dim], out[..., self.act_dim:]
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.mean_log_std(obs)
        # log pi(a|s) = sum_i [ -(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi)/2 ]
        z = (action - mean) / log_std.exp()
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # H = sum_i [ log sigma_i + log(2 pi e)/2 ]
        entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
        return logp, entropy

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.mean_log_std(obs)
        # a = mu + sigma * eps, eps ~ N(0, I)   (no gradient flows through sampling here)
        action = (mean + log_std.exp() * torch.randn_like(mean)).detach()
        logp, _ = self.log_prob(obs, action)
        return action, logp

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean_log_std(obs)[0]


def make_policy(obs_space: gym.Space, action_space: gym.Space, cfg: CommonConfig) -> nn.Module:
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"observation space must be a flat Box, got {obs_space}")
    obs_dim = obs_space.shape[0]
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), cfg.hidden, cfg.activation)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianPolicy(obs_dim, action_space.shape[0], cfg.hidden, cfg.activation,
                              cfg.state_dependent_std, cfg.init_log_std)
    raise ValueError(f"action space must be Discrete or a flat Box, got {action_space}")


def make_value(obs_dim: int, cfg: CommonConfig) -> nn.Module:
    """V_phi(s): an MLP with one output."""
    return mlp([obs_dim, *cfg.hidden, 1], cfg.activation, out_gain=1.0)


class RunningMeanStd(nn.Module):
    """Running mean/variance of observations; forward() normalizes and clips to +-clip.

    Statistics are buffers, so they travel in state_dict() and sit inside the exported actor.
    """

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor | np.ndarray) -> None:
        # merge batch moments into the running ones (Chan et al.'s parallel algorithm); numpy on
        # views of the buffers, because per-step calls on tiny tensors are dominated by overhead
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.mean.shape[0])
        mean, var, count = self.mean.numpy(), self.var.numpy(), float(self.count)
        b_n = x.shape[0]
        b_mean = x.sum(0) / b_n
        b_var = ((x - b_mean) ** 2).sum(0) / b_n
        delta, total = b_mean - mean, count + b_n
        var[:] = (var * count + b_var * b_n + delta ** 2 * count * b_n / total) / total
        mean += delta * b_n / total
        self.count.fill_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x.dtype), (self.var + self.eps).sqrt().to(x.dtype)
        return ((x - mean) / std).clamp(-self.clip, self.clip)


# ---------------------------------------------------------------------------------------------
# Environments and experience collection
# ---------------------------------------------------------------------------------------------
class EnvBatch:
    """N gymnasium envs stepped in lockstep; an env that ends an episode is reset at once.

    We step a plain list rather than a gymnasium VectorEnv so the bookkeeping (final observation
    for bootstrapping, per-episode statistics) is explicit and visible here.
    """

    def __init__(self, envs: gym.Env | Sequence[gym.Env]):
        if isinstance(envs, gym.vector.VectorEnv):
            raise TypeError("pass a gymnasium.Env or a list of them, not a VectorEnv "
                            "(simreal.algos steps and resets each env itself)")
        self.envs = [envs] if isinstance(envs, gym.Env) else list(envs)
        if not self.envs:
            raise ValueError("need at least one environment")
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.obs: np.ndarray | None = None
        self.ep_return = np.zeros(len(self.envs))
        self.ep_length = np.zeros(len(self.envs), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs = [env.reset(seed=None if seed is None else seed + i)[0] for i, env in enumerate(self.envs)]
        if seed is not None:
            for i, env in enumerate(self.envs):
                env.action_space.seed(seed + i)
        self.obs = np.asarray(obs, dtype=np.float32)
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0
        return self.obs

    def step(self, actions: np.ndarray, active: Sequence[int] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Step the envs listed in `active` (all by default), actions[j] going to env active[j].

        Returns (next_obs, rewards, terminated, truncated, final_obs, finished), one row per
        stepped env. next_obs holds the reset observation where an episode ended; final_obs the
        true last observation (to bootstrap a truncated episode). finished has one dict per ended
        episode: episode_return, episode_length, terminated, env, and numeric `info` entries.
        """
        active = list(range(len(self.envs))) if active is None else list(active)
        n = len(active)
        final_obs = np.empty((n, *self.obs.shape[1:]), dtype=np.float32)
        rewards, term, trunc = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        finished: list[dict] = []
        for j, i in enumerate(active):
            o, r, te, tr, info = self.envs[i].step(actions[j])
            rewards[j], term[j], trunc[j], final_obs[j] = r, te, tr, o
            self.ep_return[i] += r
            self.ep_length[i] += 1
            if te or tr:
                record = {k: _plain(v) for k, v in info.items() if _plain(v) is not None}
                record.update(episode_return=float(self.ep_return[i]),
                              episode_length=int(self.ep_length[i]), terminated=bool(te), env=i)
                finished.append(record)
                self.ep_return[i], self.ep_length[i] = 0.0, 0
                o, _ = self.envs[i].reset()
            self.obs[i] = o
        return self.obs[active].copy(), rewards, term, trunc, final_obs, finished


def _plain(v: Any) -> Any:
    """A number (or flat list of numbers) from an info entry, else None."""
    if isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)):
        return v.item() if isinstance(v, np.generic) else v
    if isinstance(v, np.ndarray) and v.ndim <= 1 and v.size <= 64 and np.issubdtype(v.dtype, np.number):
        return v.tolist()
    return None


def env_action(action_space: gym.Space, action: np.ndarray) -> np.ndarray:
    """What the env receives: integers for Discrete; for Box, the Gaussian sample clipped to the
    bounds. The log-probability is of the unclipped sample (as in SB3/CleanRL): clipping belongs
    to the environment, not to the policy, so the policy-gradient math stays exact."""
    if isinstance(action_space, gym.spaces.Discrete):
        return action.astype(np.int64)
    return np.clip(action, action_space.low, action_space.high).astype(np.float32)


@dataclass
class Episode:
    """One whole episode, for Monte-Carlo methods. obs are the (normalized) network inputs."""

    obs: torch.Tensor          # [T, obs_dim]
    actions: torch.Tensor      # [T] or [T, act_dim]
    rewards: torch.Tensor      # [T]
    truncated: bool            # ended by a time limit rather than a terminal state
    final_obs: torch.Tensor    # [obs_dim], normalized observation after the last step


@dataclass
class Rollout:
    """n_steps x n_envs transitions, for bootstrapped methods. Index [t, env]."""

    obs: torch.Tensor          # [T, N, obs_dim] normalized
    actions: torch.Tensor      # [T, N] or [T, N, act_dim]
    logp: torch.Tensor         # [T, N] log pi_old(a_t|s_t)
    rewards: torch.Tensor      # [T, N], with gamma * V(final obs) added at time-limit truncations
    dones: torch.Tensor        # [T, N] 1.0 where the episode ended after step t
    values: torch.Tensor       # [T, N] V(s_t)
    last_value: torch.Tensor   # [N] V(s_T), to bootstrap past the end of the rollout


# ---------------------------------------------------------------------------------------------
# Returns and advantages
# ---------------------------------------------------------------------------------------------
def reward_to_go(rewards: torch.Tensor, gamma: float, bootstrap: float = 0.0) -> torch.Tensor:
    """G_t = sum_{k>=t} gamma^(k-t) r_k  (+ gamma^(T-t) * bootstrap), for one episode.

    G_0 is the episode's discounted return; "reward-to-go" uses G_t at every t, since actions
    cannot affect rewards that came before them.
    """
    returns, running = [0.0] * len(rewards), float(bootstrap)
    for t, r in reversed(list(enumerate(rewards.tolist()))):
        running = r + gamma * running                   # G_t = r_t + gamma G_{t+1}
        returns[t] = running
    return torch.tensor(returns, dtype=rewards.dtype)


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over a [T, N] rollout; returns (advantages, returns).

    lam=0 gives the one-step TD error, lam=1 the n-step return to the end of the rollout minus
    V(s_t) (A2C's original estimator); values between trade bias (lam->0) for variance (lam->1).
    """
    advantages = torch.zeros_like(rewards)
    next_adv, next_value = torch.zeros_like(last_value), last_value
    for t in range(rewards.shape[0] - 1, -1, -1):
        not_done = 1.0 - dones[t]
        # delta_t = r_t + gamma V(s_{t+1}) (1 - d_t) - V(s_t)
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        # A_t = delta_t + gamma lam (1 - d_t) A_{t+1}
        next_adv = delta + gamma * lam * not_done * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    # critic target (TD(lambda) return): R_t = A_t + V(s_t)
    return advantages, advantages + values


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + eps) if x.numel() > 1 else x - x.mean()


# ---------------------------------------------------------------------------------------------
# The agent: networks + optimizer + normalizer + counters, and its persistence
# ---------------------------------------------------------------------------------------------
@dataclass
class Agent:
    """Everything needed to act, train and resume. Algorithms are functions that update it."""

    algo: str
    config: CommonConfig
    observation_space: gym.Space
    action_space: gym.Space
    policy: nn.Module
    value: nn.Module | None
    obs_norm: nn.Module
    optimizer: torch.optim.Optimizer
    counters: dict = field(default_factory=lambda: {"timesteps": 0, "episodes": 0, "updates": 0})
    return_norm: RunningMeanStd | None = None     # set when the config asks for norm_reward
    running_return: np.ndarray | None = field(default=None, repr=False)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    def normalize_obs(self, obs: np.ndarray, update: bool) -> torch.Tensor:
        obs = np.array(obs, dtype=np.float32)   # a copy: callers may pass a buffer reused later
        if update and isinstance(self.obs_norm, RunningMeanStd):
            self.obs_norm.update(obs)
        with torch.no_grad():
            return self.obs_norm(torch.from_numpy(obs))

    def scale_rewards(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """r_t / std(R), R_t = gamma R_{t-1} + r_t the running discounted return of each env.

        As SB3's VecNormalize: whatever the reward scale (CartPole's 1 per step, a walker's
        hundreds per episode), the critic's targets stay of order 1. Training-only; reported
        episode returns are always the raw ones.
        """
        if self.return_norm is None:
            return rewards
        if self.running_return is None or self.running_return.shape != rewards.shape:
            self.running_return = np.zeros(rewards.shape)
        self.running_return = self.running_return * self.config.gamma + rewards
        self.return_norm.update(self.running_return[:, None])
        self.running_return[dones] = 0.0
        std = float(np.sqrt(self.return_norm.var.numpy()[0] + self.return_norm.eps))
        return np.clip(rewards / std, -self.return_norm.clip, self.return_norm.clip).astype(np.float32)

    @torch.no_grad()
    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Env-ready action(s) for raw observation(s) [obs_dim] or [B, obs_dim]."""
        obs = np.asarray(obs, dtype=np.float32)
        x = self.normalize_obs(obs.reshape(-1, obs.shape[-1]), update=False)
        a = self.policy.mode(x) if deterministic else self.policy.sample(x)[0]
        a = env_action(self.action_space, a.numpy())
        return a if obs.ndim > 1 else a[0]

    def actor_module(self) -> nn.Module:
        """Deterministic raw-observation -> action module (normalizer inside), for ONNX export.

        A frozen copy: training the agent further does not change it.
        """
        actor = copy.deepcopy(DeterministicActor(self))
        return actor.requires_grad_(False)

    def set_lr_fraction(self, frac: float) -> None:
        """Scale every parameter group's learning rate to frac x its configured value."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * frac

    def state_dict(self) -> dict:
        """Tensors, numbers, strings, lists and dicts only: safe for torch.load(weights_only=True)."""
        return {
            "algo": self.algo,
            "config": config_to_dict(self.config),
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict() if self.value is not None else {},
            "obs_norm": self.obs_norm.state_dict(),
            "return_norm": self.return_norm.state_dict() if self.return_norm is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "counters": dict(self.counters),
            "torch_rng": torch.get_rng_state(),
        }

    def load_weights(self, state: dict) -> None:
        """Networks and normalizers only (a new run starting from this agent: fine-tuning)."""
        if state.get("algo") != self.algo:
            raise ValueError(f"state is for algo {state.get('algo')!r}, this agent is {self.algo!r}")
        self.policy.load_state_dict(state["policy"])
        if self.value is not None:
            self.value.load_state_dict(state["value"])
        self.obs_norm.load_state_dict(state["obs_norm"])
        if self.return_norm is not None:
            self.return_norm.load_state_dict(state["return_norm"])

    def load_state_dict(self, state: dict) -> None:
        self.load_weights(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.counters = {k: int(v) for k, v in state["counters"].items()}
        torch.set_rng_state(state["torch_rng"])


class DeterministicActor(nn.Module):
    """a = clip(mode(pi(.|normalize(obs)))) ; argmax for Categorical, the mean for Gaussian."""

    def __init__(self, agent: Agent):
        super().__init__()
        self.obs_norm, self.policy = agent.obs_norm, agent.policy
        space = agent.action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if not self.discrete:
            self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        a = self.policy.mode(self.obs_norm(obs))
        return a if self.discrete else torch.maximum(torch.minimum(a, self.high), self.low)


def make_agent(algo: str, config: CommonConfig, observation_space: gym.Space,
               action_space: gym.Space, with_value: bool, value_lr: float | None = None) -> Agent:
    """Build networks and one Adam optimizer (policy and critic as separate parameter groups)."""
    policy = make_policy(observation_space, action_space, config)
    obs_dim = observation_space.shape[0]
    value = make_value(obs_dim, config) if with_value else None
    obs_norm: nn.Module = RunningMeanStd(obs_dim) if config.norm_obs else nn.Identity()
    groups = [{"params": list(policy.parameters()), "lr": config.lr}]
    if value is not None:
        groups.append({"params": list(value.parameters()), "lr": value_lr or config.lr})
    optimizer = torch.optim.Adam(groups, eps=1e-5)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return_norm = RunningMeanStd(1) if getattr(config, "norm_reward", False) else None
    return Agent(algo, config, observation_space, action_space, policy, value, obs_norm, optimizer,
                 return_norm=return_norm)


def clip_and_step(agent: Agent, loss: torch.Tensor) -> float:
    """Backpropagate, clip the global gradient norm, step; return the pre-clip norm."""
    agent.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in agent.optimizer.param_groups for p in g["params"]]
    max_norm = agent.config.max_grad_norm if agent.config.max_grad_norm is not None else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    agent.optimizer.step()
    return float(norm)


def collect_episodes(agent: Agent, envs: EnvBatch, n_episodes: int, update_norm: bool = True,
                     on_episode: Callable[[dict], Any] | None = None) -> list[Episode]:
    """Play exactly n_episodes whole episodes with the current policy.

    Envs play in rounds of one episode each; an env that finishes waits for the round to end.
    Waiting matters: keeping "the first n episodes to finish" would favour short episodes and
    bias the Monte-Carlo gradient.
    """
    episodes: list[Episode] = []
    while len(episodes) < n_episodes:
        active = list(range(min(len(envs), n_episodes - len(episodes))))
        bufs: dict[int, tuple[list, list, list]] = {i: ([], [], []) for i in active}
        while active:
            obs = agent.normalize_obs(envs.obs[active], update=update_norm)
            with torch.no_grad():
                actions, _ = agent.policy.sample(obs)
            _, rewards, term, trunc, final_obs, finished = envs.step(
                env_action(agent.action_space, actions.numpy()), active)
            agent.counters["timesteps"] += len(active)
            still = []
            for j, i in enumerate(active):
                ep_obs, ep_act, ep_rew = bufs[i]
                ep_obs.append(obs[j]), ep_act.append(actions[j]), ep_rew.append(float(rewards[j]))
                if term[j] or trunc[j]:
                    final = agent.normalize_obs(final_obs[j:j + 1], update=False)[0]
                    episodes.append(Episode(torch.stack(ep_obs), torch.stack(ep_act),
                                            torch.tensor(ep_rew), bool(trunc[j] and not term[j]), final))
                else:
                    still.append(i)
            _report_episodes(agent, finished, on_episode)
            active = still
    return episodes


def collect_rollout(agent: Agent, envs: EnvBatch, n_steps: int,
                    on_episode: Callable[[dict], Any] | None = None) -> Rollout:
    """Step all envs n_steps times with the current policy; record what bootstrapping needs."""
    assert agent.value is not None, "collect_rollout needs a critic"
    gamma = agent.config.gamma
    obs_l, act_l, logp_l, rew_l, done_l, val_l = [], [], [], [], [], []
    for _ in range(n_steps):
        obs = agent.normalize_obs(envs.obs, update=True)
        with torch.no_grad():
            actions, logp = agent.policy.sample(obs)
            values = agent.value(obs).squeeze(-1)
        _, rewards, term, trunc, final_obs, finished = envs.step(
            env_action(agent.action_space, actions.numpy()))
        rewards_t = torch.as_tensor(agent.scale_rewards(rewards, term | trunc))
        if trunc.any():
            # A time limit is not a terminal state: the return continues past it, so add
            # gamma * V(s_final) to the last reward and then treat the step as an episode end.
            idx = np.flatnonzero(trunc & ~term)
            with torch.no_grad():
                v_final = agent.value(agent.normalize_obs(final_obs[idx], update=False)).squeeze(-1)
            rewards_t[idx] += gamma * v_final
        agent.counters["timesteps"] += len(envs)
        obs_l.append(obs), act_l.append(actions), logp_l.append(logp), val_l.append(values)
        rew_l.append(rewards_t), done_l.append(torch.as_tensor(term | trunc, dtype=torch.float32))
        _report_episodes(agent, finished, on_episode)
    with torch.no_grad():
        last_value = agent.value(agent.normalize_obs(envs.obs, update=False)).squeeze(-1)
    return Rollout(torch.stack(obs_l), torch.stack(act_l), torch.stack(logp_l), torch.stack(rew_l),
                   torch.stack(done_l), torch.stack(val_l), last_value)


class Progress:
    """Forwards metrics to the user's callback and remembers if it asked to stop (returned False)."""

    def __init__(self, callback: Callback | None):
        self.callback, self.stop = callback, False

    def __call__(self, record: dict) -> None:
        if self.callback is not None and self.callback(record) is False:
            self.stop = True


def report_update(agent: Agent, progress: Progress, **metrics: Any) -> None:
    """Count one update and send its metrics (as floats) to the callback."""
    agent.counters["updates"] += 1
    progress({"event": "update", "timesteps": agent.counters["timesteps"],
              "updates": agent.counters["updates"], "lr": agent.optimizer.param_groups[0]["lr"],
              **{k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in metrics.items()}})


def _report_episodes(agent: Agent, finished: list[dict], on_episode: Callable[[dict], Any] | None) -> None:
    for record in finished:
        agent.counters["episodes"] += 1
        record.update(event="episode", timesteps=agent.counters["timesteps"])
        if on_episode is not None:
            on_episode(record)
