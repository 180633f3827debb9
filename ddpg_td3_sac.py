"""DDPG, TD3 and SAC (Lillicrap et al. 2016; Fujimoto, van Hoof & Meger 2018; Haarnoja et al. 2018):
single-file reference implementation, the algorithm chosen by `--algo`.

All three learn a critic Q(s, a) by bootstrapping from a target network and an actor by climbing the critic.
They share the environment, the device-resident replay buffer, the critic, the training loop, evaluation and
logging; they differ in four small functions, side by side: `next_state_value` (the target), `actor_loss`,
`explore`, and SAC's `alpha_loss`, plus the policy delay (`--policy-frequency`). Read one branch across them to
follow one algorithm.
Papers: https://arxiv.org/abs/1509.02971, https://arxiv.org/abs/1802.09477, https://arxiv.org/abs/1812.05905
"""

import copy
import functools
import getpass
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter

# whose checkpoints this file loads: a renamed copy of it still loads the original's (Args and Actor must fit too)
ALGORITHM = "DDPG/TD3/SAC"


@dataclass
class Args:
    # Experiment: seeding, logging, checkpoints, evaluation and datasets
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
    """deterministic episodes of each evaluation (0 skips the final one; the TD3 paper averages 10)"""
    eval_frequency: int = 0
    """also evaluate every this many transitions, logged as `eval/mean_return` against steps, the learning curve (0:
    only the final evaluation; the TD3 paper evaluated every 5000)"""
    eval_checkpoint: Optional[str] = None
    """evaluate this saved checkpoint instead of training"""
    checkpoint_frequency: int = 0
    """with `--save-model`, also write the checkpoint every this many transitions (0: only at the end), so that a killed
    run leaves weights at most that many old, for `--eval-checkpoint` (training does not resume from a checkpoint)"""
    threads: Optional[int] = None
    """torch's CPU threads; None: `OMP_NUM_THREADS` when it is set, else 1, never the slow choice on a machine that
    other work shares; more pay only on an idle machine (docs/operations.md, "Threads")"""
    save_dataset: Optional[str] = None
    """write every finished training episode as a local Minari dataset with this id (e.g. `hopper/td3-replay-v0`); with
    `--eval-checkpoint`, the evaluation's episodes instead"""
    dataset_ref_max_score: Optional[float] = None
    """with `--save-dataset`: the expert return that normalised scores are measured against, stored as the dataset's
    `ref_max_score` (Minari then measures `ref_min_score` from 100 episodes of random actions); e.g. 3234.3, D4RL's SAC
    expert on Hopper. None: the dataset has no reference scores"""

    # Environment
    env_id: str = "HalfCheetah-v5"
    """any gymnasium id with a Box action space and a flat Box observation (MuJoCo by default)"""
    num_envs: int = 1
    """parallel environments (the papers' protocol is 1)"""

    # Training
    algo: Literal["ddpg", "td3", "sac"] = "sac"
    """which algorithm"""
    total_timesteps: int = 1_000_000
    """environment transitions, summed over envs (the TD3 and SAC papers' MuJoCo budget)"""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor, and of the critics for DDPG and TD3 (CleanRL; the TD3 paper used 1e-3)"""
    q_lr: Optional[float] = None
    """Adam learning rate of the critics; None: `learning_rate` for DDPG/TD3, 1e-3 for SAC (CleanRL)"""
    buffer_size: int = 1_000_000
    """replay memory size in transitions (all three papers)"""
    gamma: float = 0.99
    """discount factor γ (all three papers)"""
    tau: float = 0.005
    """Polyak rate of the target networks (TD3, SAC; DDPG used 0.001)"""
    batch_size: int = 256
    """minibatch size (SAC, CleanRL; the TD3 paper used 100)"""
    learning_starts: Optional[int] = None
    """transitions of uniformly random actions before learning; None: 25k for DDPG/TD3 (CleanRL; the TD3 paper used
    10k), 5k for SAC (CleanRL)"""
    policy_frequency: Optional[int] = None
    """critic updates per actor (and target) update; None: 1 for DDPG and SAC (their papers), 2 for TD3 (its paper)"""

    # Exploration and the algorithms' own settings
    exploration_noise: float = 0.1
    """DDPG/TD3: std of the Gaussian action noise, in units of the action range's half-width (the TD3 paper)"""
    policy_noise: float = 0.2
    """TD3: std of the target-policy smoothing noise, same units (the TD3 paper)"""
    noise_clip: float = 0.5
    """TD3: the smoothing noise is clipped to ±noise_clip, same units (the TD3 paper)"""
    alpha: float = 0.2
    """SAC: the fixed entropy temperature α without `--autotune` (the SAC paper's v1 and CleanRL)"""
    autotune: bool = True
    """SAC: learn α to keep the policy's entropy near target_entropy = −|A| (the SAC paper, v2), starting from α = 1
    (log α = 0, as CleanRL and the authors' softlearning code)"""


class QNetwork(nn.Module):
    """Critic Q(s, a): a 256×256 ReLU MLP on the concatenated state and action (the SAC paper's and CleanRL's; the
    DDPG and TD3 papers used 400×300)."""

    def __init__(self, envs):
        super().__init__()
        obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
        self.net = nn.Sequential(
            nn.Linear(obs_dim + action_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)
        )

    def forward(self, obs, actions):
        return self.net(torch.cat([obs, actions], 1)).squeeze(1)


# SAC's log σ is clamped to [−20, 2], as in the SAC authors' code (haarnoja/sac's LOG_SIG_CAP_MIN/MAX; the
# SCALE_DIAG_MIN_MAX of softlearning's clamping versions) and Tianshou. CleanRL instead squashes it with tanh into
# [−5, 2]: tanh keeps a gradient where a clamp has none.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class Actor(nn.Module):
    """A 256×256 ReLU MLP to the action. Deterministic for DDPG/TD3: a = scale · tanh(μ(s)) + bias. Stochastic for
    SAC: it adds a log σ(s) head and samples a tanh-squashed Gaussian; its deterministic action is the same
    scale · tanh(μ(s)) + bias. `scale` and `bias` map [−1, 1] onto the env's bounds."""

    def __init__(self, envs, stochastic: bool):
        super().__init__()
        obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
        self.trunk = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.mean = nn.Linear(256, action_dim)
        self.log_std = nn.Linear(256, action_dim) if stochastic else None
        low, high = envs.single_action_space.low, envs.single_action_space.high
        self.register_buffer("action_scale", torch.as_tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, obs):
        """The deterministic action."""
        return self.action_scale * torch.tanh(self.mean(self.trunk(obs))) + self.action_bias

    def clip(self, actions):
        """Clip actions to the env's bounds, bias ± scale."""
        return actions.clamp(self.action_bias - self.action_scale, self.action_bias + self.action_scale)

    def sample(self, obs):
        """SAC: a = scale · tanh(u) + bias, u ~ N(μ(s), σ(s)²), reparameterised, with its log-density by the change of
        variables (the SAC paper's Appendix C):  log π(a|s) = Σ_k [log N(u_k; μ_k, σ_k) − log(scale_k (1 − tanh²
        u_k))]."""
        h = self.trunk(obs)
        mean, log_std = self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn_like(mean)
        u = mean + log_std.exp() * noise  # reparameterised
        # the Gaussian's log-density in closed form (torch.distributions would validate: a host sync on CUDA)
        log_normal = -0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi)
        # log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u)), stable where tanh saturates
        log_det = torch.log(self.action_scale) + 2 * (np.log(2) - u - F.softplus(-2 * u))
        log_prob = (log_normal - log_det).sum(1)
        return self.action_scale * torch.tanh(u) + self.action_bias, log_prob


def explore(args: Args, actor, obs):
    """The behaviour policy, once learning has started.
    DDPG, TD3: a = clip(μ(s) + ε, low, high), ε ~ N(0, (exploration_noise · scale)²) (the TD3 paper's Gaussian noise;
               DDPG used Ornstein-Uhlenbeck noise).
    SAC:       a ~ π(·|s), the policy's own tanh-Gaussian."""
    with torch.no_grad():
        if args.algo == "sac":
            return actor.sample(obs)[0]
        noise = torch.randn_like(actor.action_bias.expand(len(obs), -1)) * args.exploration_noise * actor.action_scale
        return actor.clip(actor(obs) + noise)


def act(args: Args, envs, actor, obs, global_step):
    """Uniformly random actions until `learning_starts` (CleanRL's start for all three; the TD3 paper's start steps),
    then `explore`; as a device tensor and as the env's host array."""
    if global_step < args.learning_starts:
        actions_np = np.stack([envs.single_action_space.sample() for _ in range(args.num_envs)])
        return torch.as_tensor(actions_np, device=obs.device), actions_np
    actions = explore(args, actor, obs)
    return actions, actions.cpu().numpy()


def next_state_value(args: Args, actor, actor_target, qf_targets, next_obs, alpha):
    """V(s') in the critic's target y = r + γ (1 − terminated) V(s'), without gradient.
    DDPG: V(s') = Q'(s', μ'(s'))                                                   (one critic, target actor)
    TD3:  V(s') = min_i Q'_i(s', ã),  ã = clip(μ'(s') + clip(ε, −c, c), low, high),  ε ~ N(0, σ̃²)
                                          (clipped double-Q and target-policy smoothing; σ̃, c in units of scale)
    SAC:  V(s') = min_i Q'_i(s', ã) − α log π(ã|s'),  ã ~ π(·|s')                   (soft value, current policy)"""
    with torch.no_grad():
        if args.algo == "ddpg":
            return qf_targets[0](next_obs, actor_target(next_obs))
        if args.algo == "td3":
            scale = actor_target.action_scale
            noise = (torch.randn_like(scale.expand(len(next_obs), -1)) * args.policy_noise).clamp(
                -args.noise_clip, args.noise_clip
            )
            next_actions = actor_target.clip(actor_target(next_obs) + noise * scale)
            return torch.min(*[qf(next_obs, next_actions) for qf in qf_targets])
        next_actions, next_log_prob = actor.sample(next_obs)
        return torch.min(*[qf(next_obs, next_actions) for qf in qf_targets]) - alpha * next_log_prob


def critic_loss(args: Args, qfs, data: "ReplayBatch", next_value):
    """Σ_i mean (Q_i(s, a) − y)², y = r + γ (1 − terminated) V(s'); returns it, each critic's term and Q_1(s, a) (for
    logging)."""
    target = data.rewards + args.gamma * (1 - data.terminated) * next_value
    q_values = [qf(data.obs, data.actions) for qf in qfs]
    losses = [F.mse_loss(q, target) for q in q_values]
    return sum(losses), losses, q_values[0]


def actor_loss(args: Args, actor, qfs, obs, alpha):
    """DDPG, TD3: −mean Q_1(s, μ(s))                       (the deterministic policy gradient; TD3 uses Q_1 only)
    SAC:       mean [α log π(ã|s) − min_i Q_i(s, ã)],  ã ~ π(·|s) reparameterised.
    Returns the loss and log π(ã|s) (SAC; None otherwise) for the temperature."""
    if args.algo in ("ddpg", "td3"):
        return -qfs[0](obs, actor(obs)).mean(), None
    actions, log_prob = actor.sample(obs)
    return (alpha * log_prob - torch.min(*[qf(obs, actions) for qf in qfs])).mean(), log_prob


def alpha_loss(log_alpha, log_prob, target_entropy):
    """SAC's temperature objective J(α) = E[−α (log π(ã|s) + H̄)], H̄ = −|A| (the SAC paper, v2, Eq. 18): α grows
    when the policy's entropy −log π falls below H̄ and shrinks when it rises above. α = exp(log α) stays positive."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


def make_temperature(args: Args, action_dim: int, device):
    """SAC's temperature α = exp(log α), learned with `--autotune` (by its own Adam at the critics' rate, as CleanRL)
    toward the entropy target H̄ = −|A|, else fixed at `--alpha`. Returns log α, its optimiser (None when fixed) and
    H̄. DDPG and TD3 do not use it."""
    log_alpha = torch.tensor(0.0 if args.autotune else float(np.log(args.alpha)), device=device)
    log_alpha.requires_grad_(args.autotune)
    autotune = args.algo == "sac" and args.autotune
    return log_alpha, torch.optim.Adam([log_alpha], lr=args.q_lr) if autotune else None, -float(action_dim)


def update_critics(args: Args, data, actor, actor_target, qfs, qf_targets, q_optimizer, log_alpha):
    """One gradient step of the critics toward the algorithm's target (`next_state_value`, `critic_loss`); returns the
    loss, each critic's term and the Q-values of the batch's actions, for logging."""
    next_value = next_state_value(args, actor, actor_target, qf_targets, data.next_obs, log_alpha.detach().exp())
    qf_loss, qf_losses, q_taken = critic_loss(args, qfs, data, next_value)
    q_optimizer.zero_grad()
    qf_loss.backward()
    q_optimizer.step()
    return qf_loss.detach(), [loss.detach() for loss in qf_losses], q_taken.detach()


def update_actor(args: Args, data, actor, qfs, actor_optimizer, log_alpha, alpha_optimizer, target_entropy):
    """One gradient step of the actor (`actor_loss`) and, for SAC with `--autotune`, of the temperature
    (`alpha_loss`); returns the actor's loss, for logging."""
    policy_loss, log_prob = actor_loss(args, actor, qfs, data.obs, log_alpha.detach().exp())
    actor_optimizer.zero_grad()
    policy_loss.backward()
    actor_optimizer.step()
    if alpha_optimizer is not None:
        temperature_loss = alpha_loss(log_alpha, log_prob, target_entropy)
        alpha_optimizer.zero_grad()
        temperature_loss.backward()
        alpha_optimizer.step()
    return policy_loss.detach()


def main(args: Args) -> None:
    if problems := check_args(resolve_defaults(args)):
        fail(*problems)
    torch.set_num_threads(args.threads or default_threads())
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    check_dataset_id(args.save_dataset)
    if args.eval_checkpoint:
        return evaluate_checkpoint(args, device)
    stop = StopSignal()  # from here on, SIGINT or SIGTERM ends the run at the next step, with its checkpoint written
    try:
        envs = make_env(args.env_id, args.num_envs)
    except (ValueError, ImportError, gym.error.Error) as e:
        fail(str(e))
    # CleanRL's name, plus a random suffix: two runs started in the same second never share a folder
    run_name = (
        f"{args.env_id.replace('/', '-')}__{args.exp_name}-{args.algo}__{args.seed}__{int(time.time())}"
        f"__{os.urandom(3).hex()}"
    )
    seed_everything(args.seed, args.torch_deterministic)
    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    try:
        rb = ReplayBuffer(args.buffer_size, obs_dim, action_dim, device)
    except MemoryError as e:
        fail(str(e))
    print(f"{args.algo}: replay buffer {rb.nbytes / 1e9:.3f} GB on {device}")

    actor = Actor(envs, stochastic=args.algo == "sac").to(device)
    qfs = nn.ModuleList(QNetwork(envs) for _ in range(1 if args.algo == "ddpg" else 2)).to(device)  # TD3, SAC: twins
    qf_targets = nn.ModuleList(QNetwork(envs) for _ in qfs).to(device)
    qf_targets.load_state_dict(qfs.state_dict())
    actor_target = copy.deepcopy(actor) if args.algo != "sac" else None  # SAC bootstraps from its current policy
    q_optimizer = torch.optim.Adam(qfs.parameters(), lr=args.q_lr)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate)
    log_alpha, alpha_optimizer, target_entropy = make_temperature(args, action_dim, device)
    last_finite = LastFinite(actor, qfs)
    writer = start_logging(args, run_name)
    model_path = f"runs/{run_name}/{args.exp_name}.pt"
    progress = Progress(args, writer)
    obs_np, _ = envs.reset(seed=args.seed)
    envs.single_action_space.seed(args.seed)
    obs = torch.as_tensor(obs_np, device=device, dtype=torch.float32)
    recorder = EpisodeRecorder().begin(obs_np) if args.save_dataset else None
    global_step, gradient_steps = 0, 0
    policy_loss = torch.zeros((), device=device)  # logged before the first actor update when policy_frequency > 1
    failure = None
    try:
        while global_step < args.total_timesteps and not stop.code:
            actions, actions_np = act(args, envs, actor, obs, global_step)
            next_obs_np, rewards, terminations, truncations, infos = envs.step(actions_np)
            global_step += args.num_envs
            ends = terminations | truncations
            real_next_obs_np = true_next_obs(next_obs_np, ends, infos)
            # one host-to-device copy per step: next obs, true next obs, reward, terminated
            step_data = np.concatenate([next_obs_np, real_next_obs_np, rewards[:, None], terminations[:, None]], 1)
            step_data = torch.as_tensor(step_data, device=device, dtype=torch.float32)
            next_obs, real_next_obs = step_data[:, :obs_dim], step_data[:, obs_dim : 2 * obs_dim]
            rb.add(obs, actions, step_data[:, 2 * obs_dim], step_data[:, 2 * obs_dim + 1], real_next_obs)
            obs = next_obs
            if recorder:
                recorder.add(actions_np, rewards, terminations, truncations, real_next_obs_np, next_obs_np)
            progress.add(rewards, ends, global_step)

            # learn: one gradient step per transition after `learning_starts`, whatever num_envs is
            updates_due = max(0, global_step - args.learning_starts)
            while gradient_steps < updates_due:
                data = rb.sample(args.batch_size)
                qf_loss, qf_losses, q_taken = update_critics(
                    args, data, actor, actor_target, qfs, qf_targets, q_optimizer, log_alpha
                )
                gradient_steps += 1
                if gradient_steps % args.policy_frequency == 0:  # TD3's delayed policy (and target) updates
                    policy_loss = update_actor(
                        args, data, actor, qfs, actor_optimizer, log_alpha, alpha_optimizer, target_entropy
                    )
                    soft_update(qf_targets, qfs, args.tau)
                    if args.algo != "sac":
                        soft_update(actor_target, actor, args.tau)
                if gradient_steps % 100 == 0:  # the losses are read back here anyway: stop if they diverged
                    last_finite.check(global_step, actor, qfs, qf_loss=qf_loss, actor_loss=policy_loss)
                    for i, loss in enumerate(qf_losses):
                        writer.add_scalar(f"losses/qf{i + 1}_loss", loss, global_step)
                    writer.add_scalar("losses/q_values", q_taken.mean(), global_step)
                    writer.add_scalar("losses/actor_loss", policy_loss, global_step)
                    if args.algo == "sac":  # DDPG and TD3 have no temperature
                        writer.add_scalar("losses/alpha", log_alpha.exp(), global_step)
            if args.checkpoint_frequency and global_step % args.checkpoint_frequency < args.num_envs:
                save_checkpoint(model_path, actor, qfs, args)
            # the learning curve; the final evaluation (after the loop) is its last point
            at_eval = args.eval_frequency and global_step % args.eval_frequency < args.num_envs
            if at_eval and global_step < args.total_timesteps:
                progress.last_eval = np.mean(evaluate(actor, args, device))
                writer.add_scalar("eval/mean_return", progress.last_eval, global_step)
            progress.report(global_step, gradient_steps)
    except FloatingPointError as e:
        failure = e
    finally:
        envs.close()
        if args.save_model:
            save_checkpoint(model_path, *(last_finite.networks if failure else (actor, qfs)), args)
            print(f"model saved to {model_path}" + (" (the last finite weights)" if failure else ""))
        if recorder:  # written whatever ended the run: its episodes are finished ones
            dataset_error = write_dataset(recorder, args, args.env_id, args.algo, "every finished training episode")
            failure = failure or dataset_error
        writer.flush()
        stop.restore()
    exit_if_ended_early(failure, stop, global_step)

    if args.eval_episodes > 0:
        final_evaluation(actor, args, device, run_name, writer, global_step)
    print(f"total time {time.time() - progress.start_time:.0f} s, {global_step} steps, {gradient_steps} gradient steps")
    writer.close()


def check_args(args: Args) -> list[str]:
    """One line per field outside its range, saying the range; empty when every field is fine. Runs before anything is
    built, on the fields that `resolve_defaults` filled."""
    rules = [
        ("seed", 0 <= args.seed < 2**32, "in [0, 2³² − 1], the seeds NumPy takes"),
        ("exp_name", args.exp_name not in ("", ".", "..") and "/" not in args.exp_name, "a name without '/'"),
        ("num_envs", args.num_envs >= 1, "≥ 1"),
        ("total_timesteps", args.total_timesteps >= 1, "≥ 1"),
        ("learning_rate", 0 < args.learning_rate < float("inf"), "> 0 and finite"),
        ("q_lr", 0 < args.q_lr < float("inf"), "> 0 and finite"),
        ("buffer_size", args.buffer_size >= 1, "≥ 1"),
        ("gamma", 0 < args.gamma <= 1, "in (0, 1]"),
        ("tau", 0 < args.tau <= 1, "in (0, 1]"),
        ("batch_size", 1 <= args.batch_size <= args.buffer_size, "in [1, --buffer-size]"),
        ("learning_starts", args.learning_starts >= 0, "≥ 0"),
        ("policy_frequency", args.policy_frequency >= 1, "≥ 1"),
        ("exploration_noise", args.exploration_noise >= 0, "≥ 0"),
        ("policy_noise", args.policy_noise >= 0, "≥ 0"),
        ("noise_clip", args.noise_clip >= 0, "≥ 0"),
        ("alpha", 0 < args.alpha < float("inf"), "> 0 and finite"),
        (
            "eval_episodes",
            args.eval_episodes >= (1 if args.eval_checkpoint or args.eval_frequency > 0 else 0),
            "≥ 1 with --eval-checkpoint or --eval-frequency, else ≥ 0",
        ),
        ("eval_frequency", args.eval_frequency >= 0, "≥ 0"),
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
# Machinery: skip it on a first reading. Defaults, environments, the device-resident replay, evaluation, checkpoints,
# Minari datasets, logging and run control.
# ======================================================================================================================


def resolve_defaults(args: Args) -> Args:
    """Fills the per-algorithm defaults left as None (see each field's docstring)."""
    ddpg_or_td3 = args.algo in ("ddpg", "td3")
    if args.q_lr is None:
        args.q_lr = args.learning_rate if ddpg_or_td3 else 1e-3
    if args.learning_starts is None:
        args.learning_starts = 25_000 if ddpg_or_td3 else 5_000
    if args.policy_frequency is None:
        args.policy_frequency = 2 if args.algo == "td3" else 1
    return args


def make_env(env_id: str, num_envs: int, render: bool = False) -> gym.vector.VectorEnv:
    """A synchronous vector of `env_id`, autoresetting in the same step with the true last observation in
    `info["final_obs"]`. Raises ValueError on an id or space this script cannot train on."""
    if env_id.startswith("MinAtar/"):
        raise ValueError(f"{env_id}: MinAtar's actions are discrete; DDPG, TD3 and SAC need continuous ones")
    if "mujoco" in str(gym.spec(env_id).entry_point):  # gym.spec raises gym.error.Error on an unknown id
        import mujoco

        if mujoco.get_mju_user_warning() is None:  # MuJoCo repeats its model's warnings at every env made: say once
            mujoco.set_mju_user_warning(functools.cache(lambda message: print(f"MuJoCo: {message}", file=sys.stderr)))
    envs = gym.make_vec(
        env_id,
        num_envs,
        vectorization_mode="sync",
        render_mode="rgb_array" if render else None,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    action_space, obs_space = envs.single_action_space, envs.single_observation_space
    if not isinstance(action_space, gym.spaces.Box):
        envs.close()
        raise ValueError(
            f"{env_id} has action space {action_space}; DDPG, TD3 and SAC need a continuous (Box) action space"
        )
    if not np.all(np.isfinite(action_space.low) & np.isfinite(action_space.high)):
        envs.close()
        raise ValueError(f"{env_id} has unbounded actions {action_space}; the actor's tanh needs finite bounds")
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        envs.close()
        raise ValueError(f"{env_id} has observation space {obs_space}; this script needs a flat Box observation")
    return envs


def true_next_obs(next_obs, ends, infos):
    """The observation each env's step reached: where an episode ended (`ends`), the env has already reset, and its
    last observation is in `final_obs` (a truncated episode still bootstraps from it)."""
    if not ends.any():
        return next_obs
    real_next_obs = next_obs.copy()
    real_next_obs[ends] = np.stack(infos["final_obs"][ends])
    return real_next_obs


def free_memory(device) -> Optional[int]:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return None


class ReplayBatch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor  # the env's true next observation, also at a truncation
    terminated: torch.Tensor  # 1.0 where the episode terminated: no bootstrap (a truncation does bootstrap)


class ReplayBuffer:
    """Device-resident circular replay memory of whole transitions (s, a, r, s', terminated). Observations are a few
    floats here, so s' is stored as is, which makes a truncated episode's true last observation exact."""

    def __init__(self, buffer_size, obs_dim, action_dim, device):
        self.size, self.device = buffer_size, device
        self.nbytes = buffer_size * 4 * (2 * obs_dim + action_dim + 2)
        free = free_memory(device)
        if free is not None and self.nbytes > free:
            raise MemoryError(
                f"a replay buffer of {buffer_size} transitions needs {self.nbytes / 1e9:.2f} GB, "
                f"but {device} has {free / 1e9:.2f} GB free; lower --buffer-size"
            )
        self.obs = torch.zeros(buffer_size, obs_dim, device=device)
        self.next_obs = torch.zeros(buffer_size, obs_dim, device=device)
        self.actions = torch.zeros(buffer_size, action_dim, device=device)
        self.rewards = torch.zeros(buffer_size, device=device)
        self.terminated = torch.zeros(buffer_size, device=device)
        self.pos, self.count = 0, 0  # host integers: they advance by num_envs every step, no device sync

    def add(self, obs, actions, rewards, terminated, real_next_obs):
        """One step of every env: each argument has the envs along its first dimension."""
        idx = (self.pos + torch.arange(len(obs), device=self.device)) % self.size
        self.obs[idx], self.actions[idx], self.rewards[idx] = obs, actions, rewards
        self.terminated[idx], self.next_obs[idx] = terminated, real_next_obs
        self.pos, self.count = (self.pos + len(obs)) % self.size, min(self.count + len(obs), self.size)

    def sample(self, batch_size) -> ReplayBatch:
        idx = torch.randint(self.count, (batch_size,), device=self.device)
        return ReplayBatch(
            self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminated[idx]
        )


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


def evaluate(actor, args: Args, device, video_dir=None, recorder=None, stop=None) -> list[float]:
    """The first episode of each of `eval_episodes` parallel envs with the deterministic action. With `video_dir`,
    each episode's rendering is written as an mp4; with an `EpisodeRecorder`, each episode is recorded. With a
    `StopSignal`, a signal ends it at the next step: the returns are those of the episodes finished by then."""
    if video_dir:  # frames are rendered off-screen; without this SDL looks for a display and complains
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    envs = make_env(args.env_id, args.eval_episodes, render=video_dir is not None)
    try:
        obs, _ = envs.reset(seed=args.seed + 10_000)
        if recorder:
            recorder.begin(obs)
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
                frames = envs.render()
                for i in np.flatnonzero(~finished):
                    writers[i].append_data(frames[i])
            with torch.no_grad():
                actions = actor(torch.as_tensor(obs, device=device, dtype=torch.float32))
            actions_np = actions.cpu().numpy()
            next_obs, rewards, terminations, truncations, infos = envs.step(actions_np)
            if recorder:
                real_next_obs = true_next_obs(next_obs, terminations | truncations, infos)
                recorder.add(
                    actions_np, rewards, terminations, truncations, real_next_obs, next_obs, np.flatnonzero(~finished)
                )
            obs = next_obs
            returns += rewards * ~finished
            finished |= terminations | truncations
        for w in writers:
            w.close()
        return returns[finished].tolist()
    finally:  # also where a video cannot be written: the caller then plays the games again in new envs
        envs.close()


def evaluate_checkpoint(args: Args, device) -> None:
    """`--eval-checkpoint`: the saved actor evaluated with this command line's seed and episodes (videos under
    videos/eval__{checkpoint}__{seed}__{time}), its episodes written as a dataset with `--save-dataset`; the env and
    the other flags are the checkpoint's."""
    seed_everything(args.seed, args.torch_deterministic)
    try:
        actor, ckpt_args = load_checkpoint(args.eval_checkpoint, device)
    except ValueError as e:
        fail(str(e))
    if args.env_id not in (Args.env_id, ckpt_args.env_id):
        fail(f"--env-id {args.env_id}: the checkpoint plays {ckpt_args.env_id}; leave --env-id out to evaluate it")
    ckpt_args.eval_episodes, ckpt_args.seed = args.eval_episodes, args.seed
    recorder = EpisodeRecorder() if args.save_dataset else None
    name = os.path.basename(args.eval_checkpoint).removesuffix(".pt")
    video_dir = f"videos/eval__{name}__{args.seed}__{int(time.time())}" if args.capture_video else None
    returns, stopped = evaluate_until_signalled(actor, ckpt_args, device, video_dir, recorder)
    if returns:
        print(f"eval: mean return {np.mean(returns):.2f} over {len(returns)} episodes: {returns}")
    if recorder:
        what = f"{len(returns)} deterministic episodes of the checkpoint {args.eval_checkpoint}"
        if error := write_dataset(recorder, args, ckpt_args.env_id, ckpt_args.algo, what):
            fail(str(error), code=1)
    exit_if_evaluation_stopped(stopped, len(returns))


def final_evaluation(actor, args: Args, device, run_name: str, writer, global_step: int) -> None:
    """`--eval-episodes` episodes after training, each logged as `eval/episodic_return` (step = the episode's index),
    and their mean as the learning curve's last point with `--eval-frequency`. SIGINT or SIGTERM ends it at the next
    step: the episodes finished by then are logged, and the run exits with 128 + the signal's number."""
    print(f"final evaluation: {args.eval_episodes} episodes", flush=True)
    video_dir = f"videos/{run_name}" if args.capture_video else None
    returns, stopped = evaluate_until_signalled(actor, args, device, video_dir)
    for i, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, i)
    if returns:
        if args.eval_frequency:
            writer.add_scalar("eval/mean_return", np.mean(returns), global_step)
        print(f"eval: mean return {np.mean(returns):.2f} over {len(returns)} episodes")
    writer.flush()
    exit_if_evaluation_stopped(stopped, len(returns))


def evaluate_until_signalled(actor, args: Args, device, video_dir, recorder=None):
    """`evaluate` that SIGINT or SIGTERM ends at the next step: the returns of the episodes finished by then, and the
    exit status the signal asks for (128 + its number; 0 when none came). Videos that cannot be written (a full disk,
    an ffmpeg that died) are given up with a warning, and the episodes played again without them."""
    stop = StopSignal()
    try:
        if video_dir:
            print(f"videos: {video_dir}/")
        try:
            returns = evaluate(actor, args, device, video_dir, recorder, stop)
        except OSError as e:
            print(f"warning: the videos could not be written ({e}); evaluating again without them", file=sys.stderr)
            returns = evaluate(actor, args, device, None, recorder, stop)  # the recorder begins afresh
    finally:
        stop.restore()
    return returns, stop.code


def exit_if_evaluation_stopped(code: int, finished: int) -> None:
    if code:
        print(f"evaluation stopped by {signal.Signals(code - 128).name} after {finished} finished episodes")
        raise SystemExit(code)


def save_checkpoint(path, actor, qfs, args: Args):
    """Weights, args and the algorithm's name, written atomically: an interrupt never leaves a half-written file."""
    checkpoint = {"actor": actor.state_dict(), "qfs": qfs.state_dict(), "args": asdict(args), "algorithm": ALGORITHM}
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path, device):
    """The actor and args of a checkpoint this script wrote. Raises ValueError, in one line, on a missing file, one
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
        actor = Actor(envs, stochastic=args.algo == "sac").to(device)
        actor.load_state_dict(checkpoint["actor"])
        envs.close()
    except (KeyError, TypeError, RuntimeError) as e:  # written by another version of this script
        raise ValueError(f"{path} does not fit this version of {script}: {str(e).splitlines()[0]}") from None
    return actor, args


class EpisodeRecorder:
    """`--save-dataset`: keeps every env's current episode on the host and, once it ends, the finished episode with
    its terminated/truncated flags, to be written as a Minari dataset (which can recreate the env from its id)."""

    def begin(self, first_obs):
        self.current = [self.new_episode(o) for o in first_obs]
        self.episodes = []
        return self

    @staticmethod
    def new_episode(first_obs):
        return {"observations": [first_obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}

    def add(self, actions, rewards, terminations, truncations, real_next_obs, next_obs, envs=None):
        """Records a step of every env (or of the envs listed in `envs`)."""
        for i in range(len(self.current)) if envs is None else envs:
            episode = self.current[i]
            episode["observations"].append(real_next_obs[i])
            episode["actions"].append(actions[i])
            episode["rewards"].append(rewards[i])
            episode["terminations"].append(terminations[i])
            episode["truncations"].append(truncations[i])
            if terminations[i] or truncations[i]:
                self.episodes.append(episode)
                self.current[i] = self.new_episode(next_obs[i])

    def write(self, dataset_id, env_id, algo, description, ref_max_score=None):
        """Only finished episodes are written; one still running when training stops is dropped. Raises ValueError
        when none finished."""
        import minari
        from minari.data_collector import EpisodeBuffer

        if not self.episodes:
            raise ValueError(f"no training episode finished, so no dataset {dataset_id} was written; train for longer")

        buffers = [
            EpisodeBuffer(
                id=k,
                observations=np.asarray(e["observations"]),
                actions=np.asarray(e["actions"]),
                rewards=list(map(float, e["rewards"])),
                terminations=list(map(bool, e["terminations"])),
                truncations=list(map(bool, e["truncations"])),
            )
            for k, e in enumerate(self.episodes)
        ]
        user = getpass.getuser()
        return minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env_id,
            eval_env=env_id,
            algorithm_name=f"ddpg_td3_sac.py --algo {algo}",
            author=user,
            author_email=f"{user}@{socket.gethostname()}",
            code_permalink="ddpg_td3_sac.py",
            description=description,
            ref_max_score=ref_max_score,
        )


def check_dataset_id(dataset_id) -> None:
    """`--save-dataset`: a malformed or taken id, or a Minari folder this user may not write in, stops before
    training, not after it."""
    if dataset_id is None:
        return
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError as e:
        fail(str(e))
    root = os.environ.get("MINARI_DATASETS_PATH") or os.path.expanduser("~/.minari/datasets")  # Minari's rule
    if not writable_folder(root):
        fail(f"--save-dataset: {root} is not a folder this user may write in; set MINARI_DATASETS_PATH to one")
    if dataset_id in minari.list_local_datasets():
        fail(f"a local Minari dataset {dataset_id} already exists; choose another id")


def write_dataset(recorder, args: Args, env_id: str, algo: str, what: str):
    """Writes the recorded episodes as the Minari dataset `--save-dataset`, described as `what` of the algorithm, or
    under the id with a random suffix when another run took it meanwhile; returns the error when none finished or the
    write failed."""
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id

    description = f"{what} of `ddpg_td3_sac.py --algo {algo}` on {env_id}"
    dataset_id = args.save_dataset
    if dataset_id in minari.list_local_datasets():
        namespace, name, version = parse_dataset_id(dataset_id)
        dataset_id = f"{namespace + '/' if namespace else ''}{name}-{os.urandom(3).hex()}-v{version}"
        print(f"warning: another run wrote {args.save_dataset} meanwhile; writing {dataset_id}", file=sys.stderr)
    try:
        dataset = recorder.write(dataset_id, env_id, algo, description, args.dataset_ref_max_score)
    except (ValueError, OSError) as e:
        return ValueError(f"dataset {dataset_id} not written: {e}")
    print(f"dataset {dataset_id}: {dataset.total_episodes} episodes, {dataset.total_steps} steps")


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
    progress line every 5 s with the steps, SPS, ETA, the mean return of the last 20 episodes and the latest
    evaluation (`last_eval`)."""

    def __init__(self, args: Args, writer):
        self.writer, self.total, self.learning_starts = writer, args.total_timesteps, args.learning_starts
        self.returns = np.zeros(args.num_envs)
        self.lengths = np.zeros(args.num_envs, dtype=int)
        self.recent_returns = deque(maxlen=20)
        self.start_time = self.last_print = time.time()
        self.last_print_step, self.last_eval = 0, None

    def add(self, rewards, ends, global_step):
        self.returns += rewards
        self.lengths += 1
        for i in np.flatnonzero(ends):
            self.writer.add_scalar("charts/episodic_return", self.returns[i], global_step)
            self.writer.add_scalar("charts/episodic_length", self.lengths[i], global_step)
            self.recent_returns.append(self.returns[i])
            self.returns[i], self.lengths[i] = 0, 0

    def report(self, global_step, gradient_steps):
        if time.time() - self.last_print <= 5 and global_step < self.total:
            return
        sps = (global_step - self.last_print_step) / (time.time() - self.last_print)
        eta = duration(max(self.total - global_step, 0) / max(sps, 1e-9))
        if global_step < self.learning_starts:  # random play runs far faster than learning: no ETA to give yet
            eta = f"n/a before learning starts at step {self.learning_starts}"
        last_eval = "n/a" if self.last_eval is None else f"{self.last_eval:.1f}"
        recent = self.recent_returns
        mean_return = f"{np.mean(recent):.1f}" if recent else "n/a"
        print(
            f"step {global_step}/{self.total}  SPS {sps:.0f}  ETA {eta}  return {mean_return} "
            f"(last {len(recent)})  eval {last_eval}  grad steps {gradient_steps}",
            flush=True,
        )
        self.writer.add_scalar("charts/SPS", sps, global_step)
        self.last_print, self.last_print_step = time.time(), global_step


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
    so that the checkpoint and the dataset get written; `code` is then 128 + the signal's number, the exit status that
    schedulers expect. A second signal stops at once."""

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
    """After the checkpoint is written: exit 1 for a failed run, 128 + the signal's number for a stopped one."""
    if failure:
        fail(str(failure), code=1)
    if stop.code:
        print(f"stopped by {signal.Signals(stop.code - 128).name} at step {global_step}")
        raise SystemExit(stop.code)


if __name__ == "__main__":
    main(tyro.cli(Args))
