"""DQN (Mnih et al. 2015, Nature): single-file reference implementation.

A convolutional Q-network is regressed onto the one-step target y = r + γ max_a' Q_target(s', a') (`td_loss`), with
transitions drawn uniformly from a large replay memory and a target network that is a periodic copy of the online one.
Five flags from the later literature add Rainbow's other components (Hessel et al. 2018; its distributional one is
c51_atari.py): `--double` (van Hasselt et al. 2016), `--dueling` (Wang et al. 2016), `--n-step` (Sutton 1988),
`--prioritized` (Schaul et al. 2016) and `--noisy` (Fortunato et al. 2018). This file is the template of
the Atari scripts: below its banner the others are the same, so `diff dqn_atari.py c51_atari.py` shows C51 alone.
Paper: https://www.nature.com/articles/nature14236
"""

import copy
import functools
import math
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple, Optional

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter

gym.register_envs(ale_py)

# whose checkpoints this file loads: a renamed copy of it still loads the original's (Args and QNetwork must fit too)
ALGORITHM = "DQN"


@dataclass
class Args:
    # Experiment: seeding, logging, checkpoints and evaluation
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, train on CUDA when it is available"""
    capture_video: bool = False
    """whether to write mp4s of the evaluation episodes to `videos/`"""
    track: bool = False
    """also log to Weights & Biases, with the TensorBoard logs synced (needs `pip install wandb`; imported only then)"""
    wandb_project_name: str = "deep-rl-reference"
    """the W&B project of `--track`"""
    wandb_entity: Optional[str] = None
    """the W&B team or user of `--track` (None: your default entity)"""
    save_model: bool = False
    """whether to save a checkpoint (weights + args) to `runs/{run_name}/` (also on interrupt)"""
    eval_episodes: int = 10
    """episodes of the final evaluation (0 skips it)"""
    eval_epsilon: float = 0.001
    """ε of the evaluation policy (Dopamine / Rainbow; Nature used 0.05)"""
    eval_checkpoint: Optional[str] = None
    """evaluate this saved checkpoint instead of training"""
    checkpoint_frequency: int = 0
    """with `--save-model`, also write the checkpoint every this many transitions (0: only at the end), so that a killed
    run leaves weights at most that many old, for `--eval-checkpoint` (training does not resume from a checkpoint)"""
    threads: Optional[int] = None
    """torch's CPU threads; None: `OMP_NUM_THREADS` when it is set, else 1, never the slow choice on a machine that
    other work shares; more pay only on an idle machine (docs/operations.md, "Threads")"""

    # Environment
    env_id: str = "BreakoutNoFrameskip-v4"
    """an ALE id (ale-py's C++ AtariVectorEnv, Nature CNN), a MinAtar id such as MinAtar/Breakout-v0 (MinAtar's CNN), or
    a gymnasium id with a flat Box observation (MLP torso)"""
    num_envs: int = 1
    """parallel environments (the paper's protocol is 1)"""
    terminal_on_life_loss: bool = True
    """treat a lost life as terminal for bootstrapping (Nature, CleanRL); logged returns stay whole games.
    Dopamine and Machado et al. (2018) use False"""

    # Training
    total_timesteps: int = 10_000_000
    """environment transitions, summed over envs (CleanRL; 40M frames)"""
    learning_rate: float = 1e-4
    """Adam learning rate (CleanRL; Nature used RMSProp at 2.5e-4)"""
    adam_eps: float = 1e-8
    """Adam epsilon (PyTorch's default, as CleanRL)"""
    buffer_size: int = 1_000_000
    """replay memory size in transitions (Nature)"""
    gamma: float = 0.99
    """discount factor γ (Nature)"""
    tau: float = 1.0
    """target update rate: 1 is a hard copy (Nature), < 1 is Polyak averaging"""
    target_network_frequency: int = 1000
    """transitions between target updates (CleanRL; Nature copied every 10k gradient steps)"""
    batch_size: int = 32
    """minibatch size (Nature)"""
    start_e: Optional[float] = None
    """initial exploration ε: 1 (Nature); None: 1, or 0 with `--noisy`, whose noise explores (Rainbow)"""
    end_e: Optional[float] = None
    """final exploration ε: 0.01 (CleanRL; Nature used 0.1); None: 0.01, or 0 with `--noisy`"""
    exploration_fraction: float = 0.10
    """fraction of `total_timesteps` over which ε decays linearly (CleanRL: 1M transitions)"""
    learning_starts: int = 80_000
    """transitions collected before learning starts (CleanRL; Nature used 50k)"""
    train_frequency: int = 4
    """transitions between gradient steps (Nature)"""

    # Rainbow's components (Hessel et al. 2018), each off by default
    double: bool = False
    """Double DQN target: the online net picks a', the target net evaluates it (van Hasselt et al. 2016)"""
    dueling: bool = False
    """dueling heads Q = V + A − mean(A) (Wang et al. 2016)"""
    n_step: int = 1
    """n-step returns built inside the replay (1 in the paper; Rainbow used 3)"""
    prioritized: bool = False
    """proportional prioritized replay (Schaul et al. 2016): transition i is drawn with probability P(i) = p_i^α / Σ_k
    p_k^α, its loss weighted by (N·P(i))^−β / max_j (N·P(j))^−β, and its priority set to p_i = |δ_i| + ε after each
    update; new transitions enter at the largest priority so far"""
    prioritized_replay_alpha: float = 0.5
    """priority exponent α (Rainbow, Hessel et al. 2018, Table 1; Schaul et al.'s proportional variant used 0.6)"""
    prioritized_replay_beta: float = 0.4
    """importance-sampling exponent β₀ at the start, annealed linearly to `--prioritized-replay-beta-end` over training
    (Rainbow, Table 1: 0.4 -> 1). Dopamine fixes β = 0.5 (its weights are 1/√P(i)): 0.5 and 0.5"""
    prioritized_replay_beta_end: float = 1.0
    """β at the end of training (Rainbow: 1, the full correction)"""
    prioritized_replay_eps: float = 1e-6
    """ε added to every priority, so that none becomes 0 (Schaul et al. give no value; OpenAI Baselines' 1e-6)"""
    noisy: bool = False
    """NoisyNet head (Fortunato et al. 2018): the head's linear layers (both streams with `--dueling`) get learned
    factorised Gaussian noise, resampled for every action and every gradient step; ε-greedy is off unless set"""
    noisy_sigma0: float = 0.5
    """σ₀ of the noise's initial scale σ = σ₀/√fan_in (Fortunato et al. 2018 and Rainbow; Dopamine's and Revisiting
    Rainbow's code use 0.1)"""

    # DQN's regression loss
    loss: Literal["huber", "mse"] = "huber"
    """regression loss of the TD error: huber is Nature's error clipping (which goes with its reward clipping); mse is
    Dopamine's JAX DQN default (`loss_type='mse'`, also in its dqn_acrobot.gin); docs/dqn.md compares them"""


class QNetwork(nn.Module):
    """The torso ψ(x) (Nature CNN, MinAtar CNN or MLP), then a hidden layer and the Q-values, per stream (noisy layers
    with `--noisy`)."""

    def __init__(self, envs, args: Args):
        super().__init__()
        obs_shape, self.n_actions = envs.single_observation_space.shape, int(envs.single_action_space.n)
        self.torso = Torso(obs_shape)
        features, hidden, layer = self.torso.features, self.torso.hidden, head_layer(args)
        self.head = nn.Sequential(layer(features, hidden), nn.ReLU(), layer(hidden, self.n_actions))
        # dueling: the value stream has its own hidden layer, as the advantage stream does (Wang et al. 2016)
        self.value = None
        if args.dueling:
            self.value = nn.Sequential(layer(features, hidden), nn.ReLU(), layer(hidden, 1))

    def forward(self, x):
        h = self.torso(x)
        if self.value is None:
            return self.head(h)
        advantages = self.head(h)
        return self.value(h) + advantages - advantages.mean(1, keepdim=True)


def td_loss(q_network, target_network, data: "ReplayBatch", double: bool, loss_type: str):
    """Huber loss (Nature's error clipping) or squared error of the TD error δ = y − Q(s, a), with the target

        y = R + γ^m (1 − terminated) Q_target(s', a*),   a* = argmax_a' Q_target(s', a')      (DQN)
                                                         a* = argmax_a' Q_online(s', a')      (Double DQN)

    and R the n-step discounted reward sum over m ≤ n steps; the batch's mean, importance-weighted under prioritized
    replay (`data.weights`). Returns the loss, the priorities |δ| (Schaul et al. 2016) and Q(s, a)."""
    with torch.no_grad():
        next_q_target = target_network(data.next_obs)
        next_actions = (q_network(data.next_obs) if double else next_q_target).argmax(1, keepdim=True)
        next_q = next_q_target.gather(1, next_actions).squeeze(1)
        td_target = data.rewards + data.discounts * (1 - data.terminated) * next_q
    q_taken = q_network(data.obs).gather(1, data.actions[:, None]).squeeze(1)
    losses = (F.smooth_l1_loss if loss_type == "huber" else F.mse_loss)(q_taken, td_target, reduction="none")
    return (data.weights * losses).mean(), (td_target - q_taken).detach().abs(), q_taken


def main(args: Args) -> None:
    if problems := check_args(resolve_defaults(args)):
        fail(*problems)
    torch.set_num_threads(args.threads or default_threads())
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if args.eval_checkpoint:
        return evaluate_checkpoint(args, device)
    stop = StopSignal()  # from here on, SIGINT or SIGTERM ends the run at the next step, with its checkpoint written
    try:
        envs = make_env(args.env_id, args.num_envs)
    except (ValueError, ImportError, gym.error.Error) as e:
        fail(str(e))
    # CleanRL's name, plus a random suffix: two runs started in the same second never share a folder
    run_name = (
        f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}__{os.urandom(3).hex()}"
    )
    seed_everything(args.seed, args.torch_deterministic)
    atari = is_atari(envs)
    rb = make_replay(args, envs, device)

    # channels last: the CPU's convolution kernels (oneDNN) run the Nature CNN's update faster in that layout
    layout = torch.channels_last if device.type == "cpu" else torch.preserve_format
    q_network = QNetwork(envs, args).to(device, memory_format=layout)
    # fused: one kernel for all parameters, the same update (the default loops over them)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=args.adam_eps, fused=True)
    target_network = QNetwork(envs, args).to(device, memory_format=layout)
    target_network.load_state_dict(q_network.state_dict())
    last_finite = LastFinite(q_network)

    writer = start_logging(args, run_name)
    model_path = f"runs/{run_name}/{args.exp_name}.pt"
    progress = Progress(args, writer)
    obs, infos = envs.reset(seed=args.seed)
    lives = infos.get("lives")
    global_step, gradient_steps, failure = 0, 0, None
    try:
        while global_step < args.total_timesteps and not stop.code:
            # act ε-greedily (NoisyNet: with new noise), and store the transition
            epsilon = linear_schedule(
                args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps, global_step
            )
            resample_noise(q_network)
            actions = select_actions(q_network, obs, epsilon)
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step += args.num_envs
            ends = terminations | truncations
            terminated = terminations
            if atari and args.terminal_on_life_loss:  # a life lost ends bootstrapping; the game goes on
                terminated = terminations | ((infos["lives"] < lives) & ~ends)
                lives = infos["lives"]
            clipped_rewards = np.clip(rewards, -1, 1) if atari else rewards  # Nature: clip for training only
            rb.add(obs, actions, clipped_rewards, terminated, ends, true_next_obs(next_obs, ends, infos))
            obs = next_obs
            progress.add(rewards, ends, global_step)

            # learn: one gradient step per `train_frequency` transitions after `learning_starts`, whatever num_envs is
            updates_due = max(0, math.ceil((global_step - args.learning_starts) / args.train_frequency))
            while gradient_steps < updates_due:
                beta = linear_schedule(
                    args.prioritized_replay_beta, args.prioritized_replay_beta_end, args.total_timesteps, global_step
                )
                data = rb.sample(args.batch_size, beta)
                resample_noise(q_network, target_network)  # NoisyNet: new noise per gradient step, the target's own
                loss, priorities, q_taken = td_loss(q_network, target_network, data, args.double, args.loss)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if args.prioritized:
                    rb.update_priorities(data.indices, priorities)
                gradient_steps += 1
                if gradient_steps % 100 == 0:  # the loss is read back here anyway: stop if it diverged
                    last_finite.check(global_step, q_network, td_loss=loss)
                    writer.add_scalar("losses/td_loss", loss, global_step)
                    writer.add_scalar("losses/q_values", q_taken.mean(), global_step)
            # the target network, when this step crossed a multiple of target_network_frequency
            if global_step > args.learning_starts and global_step % args.target_network_frequency < args.num_envs:
                soft_update(target_network, q_network, args.tau)
            if args.checkpoint_frequency and global_step % args.checkpoint_frequency < args.num_envs:
                save_checkpoint(model_path, q_network, args)
            progress.report(global_step, epsilon, gradient_steps)
    except FloatingPointError as e:
        failure = e
    finally:
        envs.close()
        if args.save_model:
            save_checkpoint(model_path, *(last_finite.networks if failure else (q_network,)), args)
            print(f"model saved to {model_path}" + (" (the last finite weights)" if failure else ""))
        writer.flush()
        stop.restore()
    exit_if_ended_early(failure, stop, global_step)

    if args.eval_episodes > 0:
        final_evaluation(q_network, args, run_name, writer)
    print(f"total time {time.time() - progress.start_time:.0f} s, {global_step} steps, {gradient_steps} gradient steps")
    writer.close()


def check_args(args: Args) -> list[str]:
    """One line per field outside its range, saying the range; empty when every field is fine. Runs before anything is
    built. (The replay buffer checks its own minimum size, which depends on the env.)"""
    least_start = max(0, (args.n_step - 1) * args.num_envs)  # below it, the first draw has too few steps to draw from
    rules = [
        ("seed", 0 <= args.seed < 2**32, "in [0, 2³² − 1], the seeds NumPy takes"),
        ("exp_name", args.exp_name not in ("", ".", "..") and "/" not in args.exp_name, "a name without '/'"),
        ("num_envs", args.num_envs >= 1, "≥ 1"),
        ("total_timesteps", args.total_timesteps >= 1, "≥ 1"),
        ("learning_rate", 0 < args.learning_rate < float("inf"), "> 0 and finite"),
        ("adam_eps", args.adam_eps > 0, "> 0"),
        ("buffer_size", args.buffer_size >= 1, "≥ 1"),
        ("gamma", 0 < args.gamma <= 1, "in (0, 1]"),
        ("tau", 0 < args.tau <= 1, "in (0, 1]"),
        ("target_network_frequency", args.target_network_frequency >= 1, "≥ 1"),
        ("batch_size", 1 <= args.batch_size <= args.buffer_size, "in [1, --buffer-size]"),
        ("start_e", 0 <= args.start_e <= 1, "in [0, 1]"),
        ("end_e", 0 <= args.end_e <= 1, "in [0, 1]"),
        ("exploration_fraction", 0 <= args.exploration_fraction <= 1, "in [0, 1]"),
        (
            "learning_starts",
            args.learning_starts >= least_start,
            f"≥ {least_start} = (n-step − 1) × num-envs, so that every env holds n steps at the first draw",
        ),
        ("train_frequency", args.train_frequency >= 1, "≥ 1"),
        ("n_step", args.n_step >= 1, "≥ 1"),
        ("prioritized_replay_alpha", 0 < args.prioritized_replay_alpha <= 1, "in (0, 1] (1: fully prioritized)"),
        ("prioritized_replay_beta", 0 <= args.prioritized_replay_beta <= 1, "in [0, 1]"),
        ("prioritized_replay_beta_end", 0 <= args.prioritized_replay_beta_end <= 1, "in [0, 1]"),
        ("prioritized_replay_eps", args.prioritized_replay_eps > 0, "> 0"),
        ("noisy_sigma0", args.noisy_sigma0 >= 0, "≥ 0"),
        (
            "eval_episodes",
            args.eval_episodes >= (1 if args.eval_checkpoint else 0),
            "≥ 1 with --eval-checkpoint, else ≥ 0",
        ),
        ("eval_epsilon", 0 <= args.eval_epsilon <= 1, "in [0, 1]"),
        (
            "checkpoint_frequency",
            args.checkpoint_frequency == 0 or (args.checkpoint_frequency > 0 and args.save_model),
            "≥ 0, and > 0 only with --save-model",
        ),
        ("threads", args.threads is None or args.threads >= 1, "≥ 1"),
    ]
    problems = [
        f"--{name.replace('_', '-')} {getattr(args, name)}: must be {rule}" for name, ok, rule in rules if not ok
    ] + machine_problems(args)
    if args.learning_starts >= args.total_timesteps and not args.eval_checkpoint and not problems:
        print(
            f"warning: --learning-starts {args.learning_starts} ≥ --total-timesteps {args.total_timesteps}: "
            f"no gradient step will be taken",
            file=sys.stderr,
        )
    return problems


# ======================================================================================================================
# Shared machinery, word for word the same in the five *_atari.py scripts (a test keeps it so): skip it on a first
# reading. Action selection, environments, the networks' torso and noisy layers, the device-resident replay and its sum
# tree, logging, evaluation, checkpoints and run control.
# ======================================================================================================================


def resolve_defaults(args: Args) -> Args:
    """The fields left None: ε-greedy from 1 to 0.01, or off (0) with `--noisy` (Rainbow: the noise explores)."""
    start_e, end_e = (0.0, 0.0) if args.noisy else (1.0, 0.01)
    args.start_e = start_e if args.start_e is None else args.start_e
    args.end_e = end_e if args.end_e is None else args.end_e
    return args


def linear_schedule(start: float, end: float, duration: float, t: int) -> float:
    """From `start` at t = 0 to `end` at t = duration, then `end` (ε decays, prioritized replay's β rises)."""
    return end if t >= duration else start + (end - start) * t / duration


def select_actions(q_network, obs: np.ndarray, epsilon) -> np.ndarray:
    """ε-greedy, from and for the envs' host arrays. The coins are flipped on the host, so a step on which every
    env explores (most steps while ε is near 1) never runs the network; otherwise the observations go to the
    network's device and the greedy actions come back, the one read-back per step, which the env needs anyway."""
    coins, random_actions = np.random.random((2, len(obs)))  # one draw: each env's coin and its random action
    explore, actions = coins < epsilon, (random_actions * q_network.n_actions).astype(np.int64)
    if not explore.all():
        with torch.no_grad():
            q_values = q_network(torch.as_tensor(obs, device=next(q_network.parameters()).device))
        actions = np.where(explore, actions, q_values.argmax(1).cpu().numpy())
    return actions


def make_env(env_id: str, num_envs: int, render: bool = False) -> gym.vector.VectorEnv:
    """An ALE id runs on ale-py's C++ AtariVectorEnv (frameskip 4, max-pool, 84x84 grey, stack 4, 30 no-ops,
    fire reset), with unclipped rewards so that logged returns are game scores. A MinAtar id (Young & Tian 2019:
    10x10 grids of C 0/1 channels, sticky actions p = 0.1 inside the game, no frame skip or stacking) or any other id
    with a flat Box observation runs through gym.make_vec. All autoreset in the same step, with the true last
    observation in `info["final_obs"]`. Raises ValueError on an id or space this script cannot train on."""
    minatar = env_id.startswith("MinAtar/")
    if minatar and env_id not in gym.registry:  # gymnasium ≥ 1.0 needs them registered by hand
        from minatar.gym import register_envs

        register_envs()
    spec = gym.spec(env_id)  # raises gym.error.Error on an unknown id
    if spec.entry_point == "ale_py.env:AtariEnv":
        envs = ale_py.AtariVectorEnv(
            spec.kwargs["game"],
            num_envs,
            reward_clipping=False,
            autoreset_mode="SameStep",
            repeat_action_probability=spec.kwargs.get("repeat_action_probability", 0.0),  # v5 ids: sticky actions
            full_action_space=spec.kwargs.get("full_action_space", False),
            max_num_frames_per_episode=spec.kwargs.get("max_num_frames_per_episode", 108_000),
        )
    else:
        with warnings.catch_warnings():  # gymnasium calls MinAtar's v0 ids (all 6 actions, as benchmarked) out of date
            warnings.filterwarnings("ignore", ".*is out of date", DeprecationWarning)
            envs = gym.make_vec(
                env_id,
                num_envs,
                vectorization_mode="sync",
                render_mode="rgb_array" if render else None,
                vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
            )
        space = envs.single_observation_space
        if not (isinstance(space, gym.spaces.Box) and (len(space.shape) == 1 or minatar)):
            raise ValueError(f"{env_id} has observation space {space}; need a flat Box, a MinAtar or an ALE game")
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise ValueError(
            f"{env_id} has action space {envs.single_action_space}; this script needs a Discrete action space"
        )
    return envs


def is_atari(envs: gym.vector.VectorEnv) -> bool:
    return isinstance(envs, ale_py.AtariVectorEnv)


def true_next_obs(next_obs, ends, infos):
    """The observations that followed this step: where an episode ended, the env has already reset, and the true last
    observation is `infos["final_obs"]` (autoreset in the same step)."""
    if not ends.any():
        return next_obs
    real_next_obs = next_obs.copy()
    real_next_obs[ends] = np.stack(infos["final_obs"][ends])
    return real_next_obs


def observation_kind(obs_shape) -> str:
    """The three kinds of observation `make_env` allows, one rule each."""
    if len(obs_shape) == 1:
        return "flat"  # a vector: classic control
    if tuple(obs_shape[1:]) == (84, 84):
        return "ale"  # ALE's stack of 84x84 frames, channels first
    return "minatar"  # MinAtar's 10x10 grid of C channels, channels last


class Torso(nn.Module):
    """The state embedding ψ(x), chosen by the kind of observation, and the width of the head above it:
    - ALE's stacked frames [4, 84, 84]: the Nature CNN on pixels scaled to [0, 1] (head 512);
    - MinAtar's grids [10, 10, C], channels last: MinAtar's network, one 3x3 convolution of 16 channels (Young & Tian
      2019; head 128);
    - a flat observation: one 128-unit layer (head 128)."""

    def __init__(self, obs_shape):
        super().__init__()
        self.kind = observation_kind(obs_shape)
        if self.kind == "ale":
            self.layers = nn.Sequential(
                nn.Conv2d(obs_shape[0], 32, 8, stride=4),
                nn.ReLU(),
                nn.Conv2d(32, 64, 4, stride=2),
                nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1),
                nn.ReLU(),
                nn.Flatten(),
            )
            self.features, self.hidden = 3136, 512
        elif self.kind == "minatar":
            self.layers = nn.Sequential(nn.Conv2d(obs_shape[2], 16, 3, stride=1), nn.ReLU(), nn.Flatten())
            self.features, self.hidden = 16 * (obs_shape[0] - 2) * (obs_shape[1] - 2), 128
        else:
            self.layers = nn.Sequential(nn.Linear(obs_shape[0], 128), nn.ReLU())
            self.features, self.hidden = 128, 128

    def forward(self, x):
        if self.kind == "ale":
            return self.layers(x.float() / 255.0)
        if self.kind == "minatar":
            return self.layers(x.permute(0, 3, 1, 2).float())  # channels first, as the convolution expects
        return self.layers(x.float())


class NoisyLinear(nn.Module):
    """A linear layer with learned factorised Gaussian noise (Fortunato et al. 2018, §3, Eq. 10-11):

        y = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b,   ε_w = f(ε_out) f(ε_in)ᵀ,  ε_b = f(ε_out),  f(x) = sgn(x) √|x|,

    with ε_in ~ N(0, I_p) and ε_out ~ N(0, I_q): p + q Gaussian draws per layer, not p·q + q. At the start μ ~ U[−1/√p,
    1/√p] and σ = σ₀/√p (§3.3, p the fan-in). The noise stays until `reset_noise`; in eval mode the layer is μ alone,
    the mean weights."""

    def __init__(self, in_features, out_features, sigma_0=0.5):
        super().__init__()
        bound = in_features**-0.5
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma_0 * bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma_0 * bound))
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)  # f(ε_in), f(ε_out)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)

    def reset_noise(self):
        for eps in (self.eps_in, self.eps_out):
            eps.normal_()
            eps.copy_(eps.sign() * eps.abs().sqrt())

    def forward(self, x):
        """With few rows (acting), the noise's part without the p×q noise matrix: (σ_w ⊙ f(ε_out) f(ε_in)ᵀ) x =
        f(ε_out) ⊙ σ_w (f(ε_in) ⊙ x). With many (a batch, IQN's τ rows), forming the noisy weights once is cheaper;
        the two cost the same at about 32 rows (docs/performance.md)."""
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        if x.numel() < 32 * x.shape[-1]:
            return F.linear(x, self.weight_mu, bias) + self.eps_out * F.linear(x * self.eps_in, self.weight_sigma)
        return F.linear(x, self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in), bias)


def head_layer(args: Args):
    """The head's linear layer: nn.Linear, or NoisyLinear with σ₀ under `--noisy`."""
    return functools.partial(NoisyLinear, sigma_0=args.noisy_sigma0) if args.noisy else nn.Linear


def resample_noise(*networks):
    """A new draw of every NoisyLinear's noise in `networks` (Rainbow: for each action and each gradient step, the
    online and target nets independently). Nothing happens without `--noisy`."""
    for module in (m for network in networks for m in network.modules()):
        if isinstance(module, NoisyLinear):
            module.reset_noise()


class ReplayBatch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor  # n-step discounted sum
    next_obs: torch.Tensor  # the observation n steps later, or the episode's true last one
    terminated: torch.Tensor  # 1.0 where the episode terminated within those steps: no bootstrap
    discounts: torch.Tensor  # γ^m, m the number of steps actually summed
    weights: torch.Tensor  # prioritized replay's importance-sampling weights (1 under uniform replay)
    indices: Optional[torch.Tensor] = None  # the slots drawn (env · slots per env + slot), for `update_priorities`


class SumTree:
    """Proportional sampling over n slots, on the device (Schaul et al. 2016, Appendix B.2.1): a binary tree whose
    leaves hold the slots' p_i^α and whose every node holds the sum of its two children. It is one float32 tensor of
    2n entries (node k's children are 2k and 2k + 1, the root is 1, the leaves are n..2n − 1): 8 bytes per slot.
    Setting B leaves and drawing B slots each take one vectorised step per level, O(B log n), with no host sync (a draw
    by inverse CDF, `searchsorted` on a float64 cumulative sum, is simpler but O(n); docs/replay.md)."""

    def __init__(self, n, device):
        self.n = n
        self.nodes = torch.zeros(2 * n, dtype=torch.float32, device=device)
        # of the deepest leaf; when n is no power of 2, leaves lie at two depths
        self.depth = (2 * n - 1).bit_length() - 1

    def set(self, slots, values):
        """Leaves `slots` <- `values`, then their ancestors recomputed from their children, one level per step from the
        deepest: a node above several slots (or a slot given twice) gets the same sum from each, and a node above
        leaves at two depths is recomputed last from the deeper one, after its children."""
        node = slots + self.n
        self.nodes[node] = values
        for _ in range(self.depth):
            node = (node // 2).clamp(min=1)
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]

    def draw(self, batch_size):
        """`batch_size` slots, drawn with replacement with P(i) = p_i / Σ_k p_k. From the root, each step goes to the
        right child with probability right / (left + right), by a fresh float64 uniform per level. A single uniform
        carried down the tree in float32 would blur the boundaries between leaves by ~10⁻⁷ of the total, a sizeable
        share of one leaf's mass in a 1M tree. A child of mass 0 is never entered."""
        node = torch.ones(batch_size, dtype=torch.long, device=self.nodes.device)
        for coin in torch.rand(self.depth, batch_size, dtype=torch.float64, device=self.nodes.device):
            left = self.nodes[(2 * node).clamp(max=2 * self.n - 2)].double()
            right = self.nodes[(2 * node + 1).clamp(max=2 * self.n - 1)].double()
            node = torch.where(node < self.n, 2 * node + (coin * (left + right) >= left), node)  # leaves stay
        return node - self.n

    def probabilities(self, slots):
        return self.nodes[slots + self.n] / self.nodes[1]


class ReplayBuffer:
    """Device-resident replay memory of single frames, one circular timeline per env.

    Each env's timeline holds the newest frame of every observation in order; the 4-frame stacks are rebuilt
    at sampling, with zeros for frames before the episode's start, exactly as AtariVectorEnv presents them.
    When an episode ends, one extra slot keeps the env's true final frame (`final_obs`), so termination and
    truncation are both exact: that slot is a next observation, never the start of a transition.
    MinAtar's grids and flat observations are stored whole (`history` 1).

    Steps arrive as the env's host arrays and wait on the host until the next sample (or `stage_limit` steps),
    then go to the device in one batch: where a step lands depends only on the envs' `ends`, which the host
    has, so a step costs no device operation and a batch of them a few copies and writes (`flush`).

    With `prioritized` the draws are prioritized (Schaul et al. 2016): a sum tree over the slots (`SumTree`, 8 bytes
    per slot) holds p^α, and 0 on every slot the uniform draw would not draw, so both draw from the same transitions.
    """

    def __init__(
        self,
        buffer_size,
        num_envs,
        obs_shape,
        obs_dtype,
        *,
        history,
        n_step,
        gamma,
        device,
        prioritized=False,
        alpha=0.5,
        priority_eps=1e-6,
    ):
        """`history`: the frames an observation stacks (ALE: 4, each stored once), or 1 for observations stored
        whole; `alpha` and `priority_eps` are prioritized replay's α and ε."""
        self.history, self.n_step, self.gamma, self.device = history, n_step, gamma, device
        self.prioritized, self.alpha, self.priority_eps = prioritized, alpha, priority_eps
        frame_shape = obs_shape[1:] if history > 1 else obs_shape
        self.size = buffer_size // num_envs  # slots per env
        if self.size <= self.history + n_step:
            raise ValueError(
                f"--buffer-size {buffer_size}: must be ≥ {num_envs * (self.history + n_step + 1)} for "
                f"{num_envs} envs, {self.history} frames and n-step {n_step}"
            )
        frame_bytes = int(np.prod(frame_shape)) * torch.empty(0, dtype=obs_dtype).element_size()
        # frame, action, reward, the 4 bytes below, and the sum tree's 8 under prioritized replay
        self.nbytes = num_envs * self.size * (frame_bytes + 8 + 4 + 1 + 1 + 1 + 1 + (8 if prioritized else 0))
        free = free_memory(device)
        if free is not None and self.nbytes > free:
            raise MemoryError(
                f"a replay buffer of {buffer_size} transitions needs {self.nbytes / 1e9:.2f} GB, "
                f"but {device} has {free / 1e9:.2f} GB free; lower --buffer-size"
            )
        shape = (num_envs, self.size)
        # empty, not zeros: memory is taken as the timeline fills (a zeroed 1M Atari buffer takes all 7 GB at once);
        # sampling reads only written slots, and frames from before an episode's start are masked
        self.frames = torch.empty(shape + frame_shape, dtype=obs_dtype, device=device)
        self.actions = torch.zeros(shape, dtype=torch.long, device=device)
        self.rewards = torch.zeros(shape, dtype=torch.float32, device=device)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=device)  # no bootstrap after this step
        self.ends = torch.zeros(shape, dtype=torch.bool, device=device)  # the env reset after this step
        self.starts_transition = torch.zeros(shape, dtype=torch.bool, device=device)  # False on final-frame slots
        self.episode_step = torch.zeros(shape, dtype=torch.uint8, device=device)  # capped at history - 1
        self.cursor = torch.zeros(2, num_envs, dtype=torch.long, device=device)
        self.pos, self.count = self.cursor  # views: each env's next slot to fill, and how many slots it ever filled
        self.step_offsets = torch.arange(n_step, device=device)  # 0, 1, .., n − 1
        self.discounts = gamma ** torch.arange(n_step, device=device)  # 1, γ, .., γ^(n−1)
        self.back = torch.arange(self.history - 1, -1, -1, device=device)  # 3, 2, 1, 0
        # the host's view of the same timelines, ahead of the device's by the steps staged since the last flush
        self.host_pos, self.host_count = np.zeros(num_envs, dtype=np.int64), np.zeros(num_envs, dtype=np.int64)
        self.t = np.zeros(num_envs, dtype=np.int64)  # step of each env's current episode, capped at history − 1
        self.stage_limit = min(64, (self.size - 1) // 2)  # so that one flush never writes a slot twice
        self.staged = 0
        self.stage_slots = np.zeros((self.stage_limit, 2, num_envs), dtype=np.int64)  # write position, step in episode
        # action, reward, terminated, end; then the frame and the next frame
        self.stage_outcomes = np.zeros((self.stage_limit, 4, num_envs), dtype=np.float32)
        frame_dtype = torch.empty(0, dtype=obs_dtype).numpy().dtype
        self.stage_frames = np.zeros((self.stage_limit, 2, num_envs, *frame_shape), dtype=frame_dtype)
        if prioritized:
            self.tree = SumTree(num_envs * self.size, device)  # p_i^α per slot, 0 on every slot not drawable
            self.max_priority = torch.ones((), device=device)  # new transitions' priority: the largest yet

    def newest_frame(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, -1] if self.history > 1 else obs

    def add(self, obs, actions, rewards, terminated, ends, real_next_obs):
        """One step of every env, as host arrays. `real_next_obs` is the env's true next observation (`final_obs`
        at an end). Its newest frame belongs to the next slot, where the next observation's frame will land
        anyway unless the episode ended; then that slot is kept and the timeline skips past it."""
        k, next_pos, next_t = self.staged, (self.host_pos + 1) % self.size, np.minimum(self.t + 1, self.history - 1)
        self.stage_slots[k] = self.host_pos, self.t
        self.stage_outcomes[k] = actions, rewards, terminated, ends
        self.stage_frames[k] = self.newest_frame(obs), self.newest_frame(real_next_obs)
        self.host_pos = (next_pos + ends) % self.size
        self.host_count = self.host_count + 1 + ends
        self.t = np.where(ends, 0, next_t)
        self.staged += 1
        if self.staged == self.stage_limit:
            self.flush()

    def flush(self):
        """Write the staged steps to the device. A step's next frame is written ahead into its next slot only where
        that is not the next step's own frame: after an episode's end, and after the newest step, so that the
        newest transition can be sampled."""
        k, self.staged = self.staged, 0
        if k == 0:
            return
        (pos, t), outcomes = self.stage_slots[:k].transpose(1, 0, 2), self.stage_outcomes[:k]  # [K, E] each
        next_pos, next_t = (pos + 1) % self.size, np.minimum(t + 1, self.history - 1)
        ahead = outcomes[:, 3] > 0
        ahead[-1] = True
        # rows 0..n-1 are the steps' own slots, then come the frames written ahead, which start no transition
        env, n = np.broadcast_to(np.arange(pos.shape[1]), pos.shape), pos.size
        starts = np.arange(n + ahead.sum()) < n
        rows = [np.concatenate([x.ravel(), y[ahead]]) for x, y in ((env, env), (pos, next_pos), (t, next_t))]
        e, slot, episode_step, starts = torch.as_tensor(np.stack([*rows, starts]), device=self.device)
        frames = self.stage_frames[:k]
        self.frames[e, slot] = torch.as_tensor(
            np.concatenate([frames[:, 0].reshape(n, *frames.shape[3:]), frames[:, 1][ahead]]), device=self.device
        )
        self.episode_step[e, slot] = episode_step.to(torch.uint8)
        self.starts_transition[e, slot] = starts.bool()
        actions, rewards, terminated, ends = torch.as_tensor(
            outcomes.transpose(1, 0, 2).reshape(4, n), device=self.device
        )
        e, slot = e[:n], slot[:n]
        self.actions[e, slot] = actions.long()  # exact in float32
        self.rewards[e, slot] = rewards
        self.terminated[e, slot] = terminated.bool()
        self.ends[e, slot] = ends.bool()
        self.cursor.copy_(torch.as_tensor(np.stack([self.host_pos, self.host_count])))
        if self.prioritized:
            self.move_drawable_window(pos[0])  # the write positions before this flush: its first step's

    def move_drawable_window(self, old_pos):
        """Keep the sum tree's leaves 0 on exactly the slots that `sample` must not draw: per env, the window from n − 1
        slots behind the write position (their n successors are not all written) to history − 1 ahead of it (their
        frame history is being overwritten), the bounds of the uniform draw's distance. The slots that the window left
        behind in this flush are new transitions: they get the largest priority so far (Schaul et al. 2016, so that
        each is drawn at least once), or 0 on the final-frame slots, which start none."""
        n, history, size = self.n_step, self.history, self.size
        moved = np.minimum((self.host_pos - old_pos) % size, size - (n + history - 1))  # [E]; none is in the window
        env, k = np.nonzero(np.arange(moved.max()) < moved[:, None])
        # the `moved` slots just behind the window, then the window itself
        left = env * size + (self.host_pos[env] - n - moved[env] + 1 + k) % size
        window = np.arange(len(moved))[:, None] * size + (self.host_pos[:, None] + np.arange(1 - n, history)) % size
        slots = torch.as_tensor(np.concatenate([left, window.ravel()]), device=self.device)
        drawable = torch.arange(len(slots), device=self.device) < len(left)
        drawable &= self.starts_transition.view(-1)[slots]
        self.tree.set(slots, torch.where(drawable, self.max_priority**self.alpha, 0))

    def update_priorities(self, indices, priorities):
        """p_i = priority + ε for the slots drawn (`ReplayBatch.indices`), and P(i) ∝ p_i^α from now on. The largest p
        so far becomes new transitions' priority. A slot that is not drawable (its history overwritten since it was
        drawn) stays at 0."""
        p = priorities.detach().float() + self.priority_eps
        self.max_priority = torch.maximum(self.max_priority, p.max())
        env, slot = indices // self.size, indices % self.size
        distance = (self.pos[env] - slot) % self.size
        drawable = (
            (distance >= self.n_step) & (distance <= self.size - self.history) & self.starts_transition[env, slot]
        )
        self.tree.set(indices, torch.where(drawable, p**self.alpha, 0))

    def stack(self, e, slot):
        """The observation whose newest frame is at `slot`: frames slot-3..slot, zeroed before the episode's start."""
        if self.history == 1:  # an observation stored whole
            return self.frames[e, slot]
        frames = self.frames[e[:, None], (slot[:, None] - self.back) % self.size]  # [B, history, *frame_shape]
        in_episode = self.back <= self.episode_step[e, slot][:, None]
        return torch.where(in_episode[:, :, None, None], frames, 0)

    def sample(self, batch_size, beta=1.0) -> ReplayBatch:
        """A batch of transitions, uniform (`draw_uniform`) or prioritized (`draw_prioritized`), all on the device, with
        the n-step return of each."""
        self.flush()
        if not self.prioritized:
            (e, slot), indices = self.draw_uniform(batch_size), None
            weights = torch.ones(batch_size, device=self.device)
        else:
            indices, weights = self.draw_prioritized(batch_size, beta)
            e, slot = indices // self.size, indices % self.size
        if self.n_step == 1:
            rewards, terminated, m = self.rewards[e, slot], self.terminated[e, slot], torch.ones_like(slot)
        else:  # n-step return: sum rewards until n steps or the episode's end, whichever comes first
            steps = (slot[:, None] + self.step_offsets) % self.size  # [B, n]
            terminated = self.terminated[e[:, None], steps]
            done = terminated | self.ends[e[:, None], steps]
            taken = done.cumsum(1) == done  # step k is summed if no episode ended before it
            rewards = (taken * self.discounts * self.rewards[e[:, None], steps]).sum(1)
            terminated, m = (taken & terminated).any(1), taken.sum(1)
        return ReplayBatch(
            obs=self.stack(e, slot),
            actions=self.actions[e, slot],
            rewards=rewards,
            next_obs=self.stack(e, (slot + m) % self.size),
            terminated=terminated.float(),
            discounts=self.gamma**m,
            weights=weights,
            indices=indices,
        )

    def draw_uniform(self, batch_size):
        """Uniform over stored transitions. A slot is drawn at distance d behind the write position, with n ≤ d so that
        its n successors exist and d ≤ size − history so that its frame history is not overwritten. Final-frame slots
        start no transition: twice the batch is drawn and the first `batch_size` draws that do start one are kept,
        which leaves them uniform over transitions. Returns each draw's env and slot."""
        n = self.n_step
        e = torch.randint(len(self.pos), (2 * batch_size,), device=self.device)
        d_max = self.count[e].clamp(max=self.size - self.history)
        # integer draws: float32 steps of 2⁻²⁴ spread over ~1M slots would favour some slots by up to 6%
        d = n + torch.randint(2**62, (2 * batch_size,), device=self.device) % (d_max - n + 1)
        slot = (self.pos[e] - d) % self.size
        keep = torch.argsort((~self.starts_transition[e, slot]).to(torch.uint8), stable=True)[:batch_size]
        return e[keep], slot[keep]

    def draw_prioritized(self, batch_size, beta):
        """P(i) = p_i^α / Σ_k p_k^α from the sum tree, whose leaves are 0 on every slot that is not drawable
        (`move_drawable_window`), and the importance-sampling weights w_i = (N·P(i))^−β / max_j (N·P(j))^−β over the
        batch (Schaul et al. 2016, Algorithm 1; Dopamine also takes the batch's max), = (P(i) / min_j P(j))^−β: N
        cancels. Returns the flat slots and their weights."""
        indices = self.tree.draw(batch_size)
        probabilities = self.tree.probabilities(indices)
        return indices, (probabilities / probabilities.min()) ** -beta


def make_replay(args: Args, envs, device) -> ReplayBuffer:
    """The replay memory for `envs`: ALE's frames (each stored once, stacked at sampling) and MinAtar's 0/1 grids as
    bytes, flat observations as floats. Stops with one line when it, or it and a batch drawn from it, would not fit in
    memory."""
    shape = envs.single_observation_space.shape
    free = free_memory(device)
    try:
        dtype = torch.float32 if observation_kind(shape) == "flat" else torch.uint8
        history = shape[0] if is_atari(envs) else 1
        rb = ReplayBuffer(
            args.buffer_size,
            args.num_envs,
            shape,
            dtype,
            history=history,
            n_step=args.n_step,
            gamma=args.gamma,
            device=device,
            prioritized=args.prioritized,
            alpha=args.prioritized_replay_alpha,
            priority_eps=args.prioritized_replay_eps,
        )
    except (ValueError, MemoryError) as e:
        fail(str(e))
    # a batch holds its observations and next observations twice: as stored, and as the network's float32 input
    batch_bytes = args.batch_size * 2 * math.prod(shape) * (dtype.itemsize + 4)
    if free is not None and rb.nbytes + batch_bytes > free:
        fail(
            f"--batch-size {args.batch_size}: a batch needs {batch_bytes / 1e9:.2f} GB beside the replay buffer's "
            f"{rb.nbytes / 1e9:.2f} GB, and {device} has {free / 1e9:.2f} GB free"
        )
    print(
        f"replay buffer: {rb.nbytes / 1e9:.3f} GB on {device} ({rb.nbytes / args.buffer_size:.0f} bytes per transition)"
    )
    return rb


def free_memory(device) -> Optional[int]:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return None


def soft_update(target_network, network, tau):
    """θ' <- τ θ + (1 − τ) θ' for every parameter; τ = 1 is the hard copy (exact: lerp at weight 1 returns θ)."""
    with torch.no_grad():
        for target_param, param in zip(target_network.parameters(), network.parameters()):
            target_param.lerp_(param, tau)


def writable_folder(path: str) -> bool:
    """Whether `path` is a folder this process may write in, or can be made one."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)
    return writable_folder(os.path.dirname(path))  # it would be made in the nearest folder that exists


def machine_problems(args: Args) -> list[str]:
    """What the flags ask of this machine, checked before the run rather than found at its end: a `runs` folder it may
    write in, a W&B login for `--track`, an ffmpeg that runs for `--capture-video`. One line for each that fails."""
    problems = []
    if not args.eval_checkpoint and not writable_folder("runs"):
        problems.append("runs: not a folder this user may write in (the run's logs and checkpoints go there)")
    if args.track and not args.eval_checkpoint:
        try:
            import wandb

            offline = os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun")
            if not offline and not wandb.login(verify=False, prompt=False):
                problems.append("--track: no W&B login; run `wandb login`, set WANDB_API_KEY, or WANDB_MODE=offline")
        except ImportError:
            problems.append("--track needs wandb: pip install wandb")
    if args.capture_video and args.eval_episodes > 0:
        try:
            import imageio_ffmpeg

            subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-version"], capture_output=True, check=True, timeout=60)
        except (ImportError, RuntimeError, OSError, subprocess.SubprocessError) as e:
            problems.append(f"--capture-video: no ffmpeg that runs, to write the videos ({type(e).__name__}: {e})")
    return problems


def seed_everything(seed: int, torch_deterministic: bool):
    """Seed Python, NumPy and torch (training and checkpoint evaluation alike, so both are reproducible)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


def start_logging(args: Args, run_name: str) -> SummaryWriter:
    """TensorBoard under runs/{run_name}, with the flags as a `hyperparameters` table; with `--track`, W&B first."""
    if args.track:
        start_wandb(args, run_name)
    writer = SummaryWriter(f"runs/{run_name}")
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items())
    )
    return writer


def start_wandb(args: Args, run_name: str):
    """`--track`: a Weights & Biases run that mirrors the TensorBoard logs (CleanRL's flags). It must start before the
    SummaryWriter, whose writes it patches; wandb is imported only here and in `machine_problems`, so that it stays
    optional."""
    import wandb

    wandb.init(
        project=args.wandb_project_name,
        entity=args.wandb_entity,
        name=run_name,
        config=asdict(args),
        sync_tensorboard=True,
        save_code=True,
    )


def duration(seconds: float) -> str:
    """A time in the unit that reads best: s, min, h or days."""
    for unit, size, limit in [("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 48 * 3600)]:
        if seconds < limit:
            return f"{seconds / size:.0f} {unit}" if unit == "s" else f"{seconds / size:.1f} {unit}"
    return f"{seconds / 86400:.1f} days"


class Progress:
    """Training's bookkeeping: each env's running episode return and length, logged when the episode ends, and a
    progress line every 5 s with the steps, SPS, ETA and the mean return of the last 20 episodes."""

    def __init__(self, args: Args, writer):
        self.writer, self.total, self.learning_starts = writer, args.total_timesteps, args.learning_starts
        self.returns = np.zeros(args.num_envs)
        self.lengths = np.zeros(args.num_envs, dtype=int)
        self.recent_returns = deque(maxlen=20)
        self.start_time = self.last_print = time.time()
        self.last_print_step = 0

    def add(self, rewards, ends, global_step):
        self.returns += rewards
        self.lengths += 1
        for i in np.flatnonzero(ends):
            self.writer.add_scalar("charts/episodic_return", self.returns[i], global_step)
            self.writer.add_scalar("charts/episodic_length", self.lengths[i], global_step)
            self.recent_returns.append(self.returns[i])
            self.returns[i], self.lengths[i] = 0, 0

    def report(self, global_step, epsilon, gradient_steps):
        if time.time() - self.last_print <= 5 and global_step < self.total:
            return
        sps = (global_step - self.last_print_step) / (time.time() - self.last_print)
        eta = duration(max(self.total - global_step, 0) / max(sps, 1e-9))
        if global_step < self.learning_starts:  # random play runs far faster than learning: no ETA to give yet
            eta = f"n/a before learning starts at step {self.learning_starts}"
        recent = self.recent_returns
        mean_return = f"{np.mean(recent):.1f}" if recent else "n/a"
        print(
            f"step {global_step}/{self.total}  SPS {sps:.0f}  ETA {eta}  return {mean_return} "
            f"(last {len(recent)})  ε {epsilon:.3f}  grad steps {gradient_steps}",
            flush=True,
        )
        self.writer.add_scalar("charts/SPS", sps, global_step)
        self.writer.add_scalar("charts/epsilon", epsilon, global_step)
        self.last_print, self.last_print_step = time.time(), global_step


def evaluate(q_network, args: Args, video_dir=None, stop=None) -> list[float]:
    """The first whole game of each of `eval_episodes` parallel envs, with ε = `eval_epsilon` (and a noisy head's mean
    weights). With `video_dir`, each game is written as an mp4 (`video_frames`). With a `StopSignal`, a signal ends
    it at the next step: the returns are those of the games finished by then."""
    if video_dir:  # frames are rendered off-screen; without this SDL looks for a display and complains
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    envs = make_env(args.env_id, args.eval_episodes, render=video_dir is not None)
    try:
        q_network.eval()  # noisy layers act with their mean weights (Fortunato et al. 2018)
        obs, _ = envs.reset(seed=args.seed + 10_000)
        returns, finished = np.zeros(args.eval_episodes), np.zeros(args.eval_episodes, dtype=bool)
        writers = []
        if video_dir:
            import imageio

            os.makedirs(video_dir, exist_ok=True)
            writers = [
                imageio.get_writer(f"{video_dir}/eval-episode-{i}.mp4", fps=30, macro_block_size=2)
                for i in range(args.eval_episodes)
            ]
        while not finished.all() and not (stop and stop.code):
            if writers:
                frames = video_frames(envs, obs)
                for i in np.flatnonzero(~finished):
                    writers[i].append_data(frames[i])
            actions = select_actions(q_network, obs, args.eval_epsilon)
            obs, rewards, terminations, truncations, _ = envs.step(actions)
            returns += rewards * ~finished
            finished |= terminations | truncations
        for w in writers:
            w.close()
        return returns[finished].tolist()
    finally:  # also where a video cannot be written: the caller then plays the games again in new envs
        envs.close()


def video_frames(envs, obs: np.ndarray):
    """Each env's picture: what the agent sees on Atari (its newest 84x84 frame) and on MinAtar (the grid, channel c
    as grey level c), each pixel 4x and 16x; the rendering otherwise."""
    if is_atari(envs):
        return obs[:, -1].repeat(4, 1).repeat(4, 2)
    if obs.ndim == 4:  # MinAtar [N, 10, 10, C]
        grey = (obs * np.arange(1, obs.shape[-1] + 1)).max(-1) * (255 // obs.shape[-1])
        return grey.astype(np.uint8).repeat(16, 1).repeat(16, 2)
    return envs.render()


def evaluate_checkpoint(args: Args, device) -> None:
    """`--eval-checkpoint`: the saved network evaluated with this command line's seed, episodes and ε (videos under
    videos/eval__{checkpoint}__{seed}__{time}); the env, the network and the other flags are the checkpoint's."""
    seed_everything(args.seed, args.torch_deterministic)
    try:
        q_network, ckpt_args = load_checkpoint(args.eval_checkpoint, device)
    except ValueError as e:
        fail(str(e))
    if args.env_id not in (Args.env_id, ckpt_args.env_id):
        fail(f"--env-id {args.env_id}: the checkpoint plays {ckpt_args.env_id}; leave --env-id out to evaluate it")
    ckpt_args.eval_episodes, ckpt_args.eval_epsilon, ckpt_args.seed = args.eval_episodes, args.eval_epsilon, args.seed
    name = os.path.basename(args.eval_checkpoint).removesuffix(".pt")
    video_dir = f"videos/eval__{name}__{args.seed}__{int(time.time())}" if args.capture_video else None
    returns, stopped = evaluate_until_signalled(q_network, ckpt_args, video_dir)
    if returns:
        print(f"eval: mean return {np.mean(returns):.2f} over {len(returns)} episodes: {returns}")
    exit_if_evaluation_stopped(stopped, len(returns))


def final_evaluation(q_network, args: Args, run_name: str, writer) -> None:
    """`--eval-episodes` games after training, each logged as `eval/episodic_return` (step = the game's index).
    SIGINT or SIGTERM ends it at the next step: the games finished by then are logged, and the run exits with 128 +
    the signal's number."""
    print(f"final evaluation: {args.eval_episodes} games (ε={args.eval_epsilon})", flush=True)
    returns, stopped = evaluate_until_signalled(q_network, args, f"videos/{run_name}" if args.capture_video else None)
    for i, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, i)
    if returns:
        print(f"eval: mean return {np.mean(returns):.2f} over {len(returns)} episodes (ε={args.eval_epsilon})")
    writer.flush()
    exit_if_evaluation_stopped(stopped, len(returns))


def evaluate_until_signalled(q_network, args: Args, video_dir):
    """`evaluate` that SIGINT or SIGTERM ends at the next step: the returns of the games finished by then, and the
    exit status the signal asks for (128 + its number; 0 when none came). Videos that cannot be written (a full disk,
    an ffmpeg that died) are given up with a warning, and the games played again without them."""
    stop = StopSignal()
    try:
        if video_dir:
            print(f"videos: {video_dir}/")
        try:
            returns = evaluate(q_network, args, video_dir, stop)
        except OSError as e:
            print(f"warning: the videos could not be written ({e}); evaluating again without them", file=sys.stderr)
            returns = evaluate(q_network, args, None, stop)
    finally:
        stop.restore()
    return returns, stop.code


def exit_if_evaluation_stopped(code: int, finished: int) -> None:
    if code:
        print(f"evaluation stopped by {signal.Signals(code - 128).name} after {finished} finished games")
        raise SystemExit(code)


def save_checkpoint(path, q_network, args: Args):
    """Weights, args and the algorithm's name, written atomically: an interrupt never leaves a half-written file."""
    checkpoint = {"model": q_network.state_dict(), "args": asdict(args), "algorithm": ALGORITHM}
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path, device):
    """The network and args of a checkpoint this script wrote. Raises ValueError, in one line, on a missing file, one
    that is not a torch checkpoint (empty, truncated, another format) or one of another algorithm."""
    script = os.path.basename(__file__)
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # EOFError, UnpicklingError or RuntimeError, depending on the damage
        raise ValueError(
            f"{path} is not a readable checkpoint (empty, truncated or another format: {type(e).__name__})"
        ) from None
    written_by = checkpoint.get("algorithm") if isinstance(checkpoint, dict) else None
    if written_by != ALGORITHM:
        raise ValueError(f"{path} is a checkpoint of {written_by or 'an unknown program'}, not of {ALGORITHM}")
    try:
        args = Args(**checkpoint["args"])
        envs = make_env(args.env_id, 1)
        q_network = QNetwork(envs, args).to(device)
        q_network.load_state_dict(checkpoint["model"])
        envs.close()
    except (KeyError, TypeError, RuntimeError) as e:  # written by another version of this script
        raise ValueError(f"{path} does not fit this version of {script}: {str(e).splitlines()[0]}") from None
    return q_network, args


def fail(*lines, code: int = 2):
    """Stop with one `error:` line per problem and no traceback: exit status 2 for bad input (as argparse), 1 for a run
    that failed."""
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    raise SystemExit(code)


def default_threads() -> int:
    """`OMP_NUM_THREADS` when it is set, else 1: torch's own default, every core, makes its threads wait on any other
    busy process, and ran several times slower beside one (docs/operations.md, "Threads")."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(int(os.environ["OMP_NUM_THREADS"]), 1)
    return 1


class StopSignal:
    """Ctrl-C (SIGINT) and SIGTERM (what SLURM, Ray and Kubernetes send) end training at the end of the current step,
    so that the checkpoint gets written; `code` is then 128 + the signal's number, the exit status that schedulers
    expect. A second signal stops at once."""

    def __init__(self):
        self.code = 0
        self.previous = {s: signal.signal(s, self.request) for s in (signal.SIGINT, signal.SIGTERM)}

    def request(self, signum, frame):
        if self.code:
            raise KeyboardInterrupt
        self.code = 128 + signum

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class LastFinite:
    """Stops a diverged run. `check` runs at the logging interval, where the losses are read back anyway, so the hot
    loop gains no host sync: it raises FloatingPointError naming a NaN or infinite loss (or weights), else it keeps a
    copy of the weights in `networks`, which `--save-model` writes in place of the diverged ones."""

    def __init__(self, *networks):
        self.networks = copy.deepcopy(networks)

    def check(self, global_step, *networks, **losses):
        tensors = [*losses.values(), *(p for network in networks for p in network.parameters())]
        if not torch.stack([t.detach().isfinite().all() for t in tensors]).all():
            bad = next((name for name, loss in losses.items() if not loss.isfinite().all()), "the weights")
            raise FloatingPointError(
                f"{bad} became NaN or infinite by step {global_step}: training diverged "
                f"(a learning rate too high, rewards or targets out of scale?)"
            )
        for copied, network in zip(self.networks, networks):
            copied.load_state_dict(network.state_dict())


def exit_if_ended_early(failure, stop, global_step: int) -> None:
    """After the checkpoint is written: exit 1 for a diverged run, 128 + the signal's number for a stopped one."""
    if failure:
        fail(str(failure), code=1)
    if stop.code:
        print(f"stopped by {signal.Signals(stop.code - 128).name} at step {global_step}")
        raise SystemExit(stop.code)


if __name__ == "__main__":
    main(tyro.cli(Args))
