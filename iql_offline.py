"""IQL (Kostrikov, Nair & Levine 2021): single-file reference implementation of Implicit Q-Learning, offline.

IQL never queries Q at an action outside the dataset. V(s) is fitted by expectile regression to the target
critics' min_i Q̂_i(s, a) over the dataset's actions, an upper expectile standing in for max_a Q; Q(s, a) is
fitted to r + γ (1 − terminated) V(s'); the policy is extracted by advantage-weighted regression,
exp(β (Q̂ − V)) · log π(a|s). Three extensions, each a flag and off by default: D2RL skip
connections (`--d2rl`), an anti-exploration bonus subtracted from the values (`--bonus rnd|cvae`), and quantile
heads for Q and V (`--distributional`).
Paper: https://arxiv.org/abs/2110.06169
"""

import copy
import os
import random
import signal
import subprocess
import sys
import time
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
ALGORITHM = "IQL"


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
    """deterministic episodes of each evaluation (0 skips the final one; the paper averages 10)"""
    eval_frequency: int = 0
    """also evaluate every this many gradient steps, logged as `eval/mean_return` and `eval/mean_normalized_score`
    against gradient steps, the learning curve (0: only the final evaluation; the paper's code and CORL evaluate every
    5000)"""
    eval_checkpoint: Optional[str] = None
    """evaluate this saved checkpoint instead of training"""
    checkpoint_frequency: int = 0
    """with `--save-model`, also write the checkpoint every this many gradient steps (0: only at the end), so that a
    killed run leaves weights at most that many old, for `--eval-checkpoint` (training does not resume from a
    checkpoint)"""
    threads: Optional[int] = None
    """torch's CPU threads; None: `OMP_NUM_THREADS` when it is set, else 1, never the slow choice on a machine that
    other work shares; more pay only on an idle machine (docs/operations.md, "Threads")"""

    # Dataset and environment
    dataset: str = "mujoco/halfcheetah/medium-v0"
    """a Minari dataset id, or a path to a D4RL-style .hdf5 file"""
    env_id: Optional[str] = None
    """the evaluation env; None: the Minari dataset's own env, or, for an hdf5 file, the gymnasium id its D4RL name
    maps to (halfcheetah → HalfCheetah-v4, hopper → Hopper-v4, walker2d → Walker2d-v4, ant → Ant-v4 with
    use_contact_forces=True, the 111-dim observation D4RL's ant files hold)"""
    preset: Optional[Literal["locomotion", "antmaze"]] = None
    """reward transform of the paper's code: locomotion scales rewards by 1000 / (max − min episode return);
    antmaze uses r − 1 with expectile 0.9 and β 10. None: antmaze when the dataset's name contains "antmaze",
    locomotion otherwise"""
    normalize_states: bool = False
    """standardise observations with the dataset's mean and std (off in the paper's locomotion runs)"""

    # IQL (the paper's defaults)
    total_timesteps: int = 1_000_000
    """gradient steps (the paper)"""
    learning_rate: float = 3e-4
    """Adam learning rate of Q, V and the actor (the paper)"""
    batch_size: int = 256
    """minibatch size (the paper)"""
    gamma: float = 0.99
    """discount factor γ (the paper)"""
    tau: float = 0.005
    """Polyak rate of the target critics (the paper)"""
    expectile: Optional[float] = None
    """expectile τ of the value loss; None: 0.7 (locomotion) or 0.9 (antmaze), the paper's"""
    beta: Optional[float] = None
    """inverse temperature β of the advantage weights; None: 3.0 (locomotion) or 10.0 (antmaze), the paper's"""
    exp_adv_max: float = 100.0
    """clip of the weights exp(β A) (the paper's code)"""
    deterministic_actor: bool = False
    """a deterministic tanh actor with weighted squared error in place of the Gaussian log-likelihood (CORL's option)"""

    # Extensions, each off by default
    d2rl: bool = False
    """extension 1: D2RL dense skip connections in every MLP (Sinha et al. 2020)"""
    bonus: Literal["none", "rnd", "cvae"] = "none"
    """extension 2: anti-exploration bonus b(s, a) subtracted from the values (Rezaeifar et al. 2021)"""
    bonus_coef: float = 0.1
    """scale of the bonus, which is itself normalised to mean 1 over the dataset's pairs at the start. The values pay it
    about twice a step (at the data's (s, a) through V, and at (s', π(s')) through Q's target), so about 2 × coef,
    against rewards of about 1 a step under the locomotion preset: 0.1 keeps the charge well below the reward. Where it
    reaches the reward and episodes end on a fall (Hopper), ending early pays more than staying up (docs/iql.md). The
    script's own setting: the paper's weight is for its own bonus's scale on a TD3 agent"""
    bonus_pretrain_steps: int = 10_000
    """gradient steps that fit the bonus model to the dataset before IQL starts"""
    distributional: bool = False
    """extension 3: quantile heads for Q and V (distributional IQL: quantile regression in place of the expectile and
    squared-error fits)"""
    n_quantiles: int = 32
    """quantiles per head with `--distributional`"""


class MLP(nn.Module):
    """Two 256-unit ReLU layers. With D2RL (Sinha et al. 2020) the input x joins every hidden layer's
    input:  h_1 = ReLU(W_1 x),  h_2 = ReLU(W_2 [h_1, x]),  y = W_3 h_2  (plain: h_2 = ReLU(W_2 h_1))."""

    def __init__(self, in_dim, out_dim, d2rl, hidden=256):
        super().__init__()
        self.d2rl = d2rl
        self.layer1 = nn.Linear(in_dim, hidden)
        self.layer2 = nn.Linear(hidden + (in_dim if d2rl else 0), hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x):
        h = F.relu(self.layer1(x))
        h = F.relu(self.layer2(torch.cat([h, x], -1) if self.d2rl else h))
        return self.out(h)


class Critic(nn.Module):
    """Twin Q(s, a) and V(s), each one value or, with `--distributional`, n_quantiles values at the fractions
    τ̂_i = (2i − 1) / 2N (QR-DQN's)."""

    def __init__(self, obs_dim, action_dim, args: Args):
        super().__init__()
        n_out = args.n_quantiles if args.distributional else 1
        self.q1, self.q2 = (MLP(obs_dim + action_dim, n_out, args.d2rl) for _ in range(2))
        self.v = MLP(obs_dim, n_out, args.d2rl)

    def qs(self, obs, actions):
        """Both critics: [2, B, n_out]."""
        x = torch.cat([obs, actions], -1)
        return torch.stack([self.q1(x), self.q2(x)])

    def value(self, obs):
        return self.v(obs)


class Actor(nn.Module):
    """π(a|s) = N(tanh(μ(s)), exp(log σ)²) with a state-independent log σ (the paper's code), in actions normalised to
    [−1, 1]; or, `--deterministic-actor`, a(s) = tanh(μ(s)). The evaluation action is tanh(μ(s)) either way."""

    def __init__(self, obs_dim, action_dim, args: Args):
        super().__init__()
        self.mean = MLP(obs_dim, action_dim, args.d2rl)
        self.log_std = None if args.deterministic_actor else nn.Parameter(torch.zeros(action_dim))

    def forward(self, obs):
        return torch.tanh(self.mean(obs))

    def log_prob(self, obs, actions):
        """log N(a; tanh(μ(s)), σ²) in closed form (torch.distributions would validate: a host sync on CUDA)."""
        log_std = self.log_std.clamp(-5.0, 2.0)
        return (-0.5 * ((actions - self(obs)) / log_std.exp()) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


def expectile_loss(diff, expectile):
    """L_2^τ(u) = |τ − 1{u < 0}| u², averaged (the paper's Eq. 5). Its minimiser over a constant v of
    mean L_2^τ(y − v) is the τ-expectile of y: τ = 0.5 gives the mean, τ → 1 approaches the maximum."""
    return ((expectile - (diff < 0).to(diff.dtype)).abs() * diff**2).mean()


def quantile_huber_loss(quantiles, target_quantiles, taus, kappa=1.0):
    """QR-DQN's loss (as in qrdqn_atari.py). With u_ij = target_j − θ_i: mean over the batch of
    Σ_i mean_j |τ_i − 1{u_ij < 0}| · H_κ(u_ij) / κ. quantiles [B, N], target_quantiles [B, N'], taus [N]. The
    gradient reaches the quantiles only."""
    return QuantileHuberLoss.apply(quantiles, target_quantiles, taus, kappa).mean()


class QuantileHuberLoss(torch.autograd.Function):
    """The per-sample loss with its gradient written out (as in qrdqn_atari.py, whose docstrings derive it),
    ∂L/∂θ_i = −mean_j |τ_i − 1{u_ij < 0}| · clamp(u_ij, −κ, κ) / κ, computed with the loss in the forward pass."""

    @staticmethod
    def forward(ctx, quantiles, target_quantiles, taus, kappa):
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            raise ValueError("quantile_huber_loss: the targets and τ must not require gradients")
        u = target_quantiles[:, None, :] - quantiles[:, :, None]  # [B, N, N']
        taus, n_targets = taus.expand_as(quantiles), u.shape[2]
        # The weight is τ_i where u ≥ 0 and 1 − τ_i where u < 0, so take the slope s = H_κ'(u)/κ one side at a time,
        # in one buffer. H_κ(u)/κ = s·u − κs²/2 (u²/2κ inside [−κ, κ], |u| − κ/2 outside, |u| at κ = 0), summed over j
        # as a product (einsum) and a norm, which make no [B, N, N'] temporary.
        s, loss, slope = torch.empty_like(u), 0, 0
        for weight, low, high in [(taus, 0, 1), (1 - taus, -1, 0)]:
            if kappa > 0:
                torch.div(u, kappa, out=s).clamp_(low, high)  # s = clamp(u/κ, −1, 1) on this side of 0
            else:
                torch.sign(u, out=s).clamp_(low, high)  # κ → 0: s = sign(u)
            loss = loss + weight * (
                torch.einsum("bij,bij->bi", s, u) - kappa / 2 * torch.linalg.vector_norm(s, dim=2) ** 2
            )
            slope = slope + weight * s.sum(2)
        ctx.save_for_backward(-slope / n_targets)  # ∂L/∂θ, [B, N]
        return loss.sum(1) / n_targets

    @staticmethod
    def backward(ctx, grad_loss):
        (grad_quantiles,) = ctx.saved_tensors
        return grad_loss[:, None] * grad_quantiles, None, None, None


class Bonus(nn.Module):
    """Anti-exploration bonus b(s, a) ≥ 0, large where (s, a) is unlike the dataset (Rezaeifar et al. 2021).
    rnd:  b = ‖f(s, a) − f̄(s, a)‖², f̄ a fixed random network and f a predictor trained on the dataset's pairs.
    cvae: b = ‖a − D(s, z = E_μ(s, a))‖², the reconstruction error of a conditional VAE of a given s, trained with
          the ELBO ‖a − D(s, z)‖² + ½ KL(N(μ, σ²) ‖ N(0, I)), z = μ + σ ε.
    `scale` normalises b to mean 1 over the dataset at the end of pretraining, so `--bonus-coef` is in those units."""

    def __init__(self, kind, obs_dim, action_dim, latent=16):
        super().__init__()
        self.kind = kind
        self.register_buffer("scale", torch.ones(()))
        if kind == "rnd":
            self.target = MLP(obs_dim + action_dim, 64, d2rl=False).requires_grad_(False)
            self.predictor = MLP(obs_dim + action_dim, 64, d2rl=False)
        else:
            self.encoder = MLP(obs_dim + action_dim, 2 * latent, d2rl=False)
            self.decoder = MLP(obs_dim + latent, action_dim, d2rl=False)

    def loss_and_bonus(self, obs, actions):
        """The model's training loss and the unscaled bonus per pair."""
        x = torch.cat([obs, actions], -1)
        if self.kind == "rnd":
            error = ((self.predictor(x) - self.target(x)) ** 2).sum(-1)
            return error.mean(), error
        mu, log_std = self.encoder(x).chunk(2, -1)
        log_std = log_std.clamp(-4, 2)
        z = mu + log_std.exp() * torch.randn_like(mu)
        elbo = ((self.decoder(torch.cat([obs, z], -1)) - actions) ** 2).sum(-1)
        kl = 0.5 * (mu**2 + (2 * log_std).exp() - 2 * log_std - 1).sum(-1)
        error = ((self.decoder(torch.cat([obs, mu], -1)) - actions) ** 2).sum(-1)
        return (elbo + 0.5 * kl).mean(), error

    def forward(self, obs, actions):
        with torch.no_grad():
            return self.loss_and_bonus(obs, actions)[1] / self.scale


def tau_hats(n, device):
    """τ̂_i = (2i − 1) / 2N, i = 1..N."""
    return (torch.arange(n, device=device) + 0.5) / n


def value_loss(args: Args, critic, critic_target, bonus, data: "Transitions"):
    """L_V = E[L_2^τ(min_i Q̂_i(s, a) − b(s, a) − V(s))] (the paper's Eq. 5; − b with `--bonus`). Distributional:
    the expectile loss over every pair (Q̂_j, V_k) of target and value quantiles."""
    with torch.no_grad():
        q_hat = critic_target.qs(data.obs, data.actions).min(0).values  # [B, n_out]
        if bonus is not None:
            q_hat = q_hat - args.bonus_coef * bonus(data.obs, data.actions)[:, None]
    v = critic.value(data.obs)
    return expectile_loss(q_hat[:, :, None] - v[:, None, :], args.expectile), v


def q_loss(args: Args, critic, actor, bonus, data: "Transitions"):
    """L_Q = E[(r + γ (1 − terminated) V(s') − Q_i(s, a))²] for both critics (the paper's Eq. 6). With `--bonus`, the
    next state's value is V(s') − b(s', π(s')): the bonus is charged at the policy's next action π(s') (its mean), and
    keeping IQL's V(s') rather than a Q(s', a') keeps Q from querying unseen actions.
    Distributional: quantile Huber loss of each Q_i onto the targets r + γ (1 − terminated) V_k(s'), k = 1..N."""
    with torch.no_grad():
        next_v = critic.value(data.next_obs)  # [B, n_out]
        if bonus is not None:
            next_v = next_v - args.bonus_coef * bonus(data.next_obs, actor(data.next_obs))[:, None]
        target = data.rewards[:, None] + args.gamma * (1 - data.terminated[:, None]) * next_v
    qs = critic.qs(data.obs, data.actions)  # [2, B, n_out]
    if args.distributional:
        taus = tau_hats(args.n_quantiles, qs.device)
        return sum(quantile_huber_loss(q, target, taus) for q in qs)
    return sum(F.mse_loss(q, target) for q in qs)


def actor_loss(args: Args, actor, critic_target, critic, bonus, data: "Transitions"):
    """AWR: L_π = −E[min(exp(β A), 100) · log π(a|s)], A = min_i Q̂_i(s, a) − b(s, a) − V(s) (the paper's Eq. 7;
    − b with `--bonus`, written exp(β((Q̂ − b) − V))). Distributional heads enter through their means. The
    deterministic actor uses weight · ‖π(s) − a‖² in place of −log π."""
    with torch.no_grad():
        q_hat = critic_target.qs(data.obs, data.actions).min(0).values.mean(-1)
        if bonus is not None:
            q_hat = q_hat - args.bonus_coef * bonus(data.obs, data.actions)
        advantage = q_hat - critic.value(data.obs).mean(-1)
        weight = torch.exp(args.beta * advantage).clamp(max=args.exp_adv_max)
    if args.deterministic_actor:
        return (weight * ((actor(data.obs) - data.actions) ** 2).sum(-1)).mean()
    return -(weight * actor.log_prob(data.obs, data.actions)).mean()


def transform_rewards(args: Args, data) -> np.ndarray:
    """The paper's reward transforms (its code): antmaze r − 1; locomotion r · 1000 / (max − min episode return)."""
    rewards = data.rewards.astype(np.float32)
    if args.preset == "antmaze":
        return rewards - 1.0
    spread = data.episode_returns.max() - data.episode_returns.min()
    return rewards * (1000.0 / spread if spread > 0 else 1.0)


def fit_bonus(args: Args, dataset, device, stop) -> "Bonus":
    """`--bonus`: the bonus model fitted to the dataset's (s, a) for `bonus_pretrain_steps` (Adam 1e-3), then scaled
    to mean 1 over the dataset; it stays fixed while IQL trains. A signal (`stop`) ends the fit at the next step."""
    bonus = Bonus(args.bonus, dataset.obs.shape[1], dataset.actions.shape[1]).to(device)
    bonus_optimizer = torch.optim.Adam(bonus.parameters(), lr=1e-3)
    start = last_print = time.time()
    step = 0
    while step < args.bonus_pretrain_steps and not stop.code:
        batch = sample(dataset, args.batch_size)
        loss = bonus.loss_and_bonus(batch.obs, batch.actions)[0]
        bonus_optimizer.zero_grad()
        loss.backward()
        bonus_optimizer.step()
        step += 1
        if time.time() - last_print > 5:  # training's progress line, for the minutes this takes
            eta = (args.bonus_pretrain_steps - step) * (time.time() - start) / step
            print(f"bonus {args.bonus}: step {step}/{args.bonus_pretrain_steps}  ETA {duration(eta)}", flush=True)
            last_print = time.time()
    chunks = [slice(i, i + 65536) for i in range(0, len(dataset.obs), 65536)]
    bonus.scale.fill_(torch.cat([bonus(dataset.obs[c], dataset.actions[c]) for c in chunks]).mean())
    took, mean = duration(time.time() - start), bonus.scale.item()
    print(f"bonus {args.bonus}: fitted in {step} steps ({took}), mean dataset bonus {mean:.4g} (→ 1)")
    if warning := bonus_charge_warning(args, dataset.rewards, dataset.terminated):
        print(warning, file=sys.stderr)
    return bonus


def bonus_charge_warning(args: Args, rewards, terminated) -> Optional[str]:
    """A warning line where the bonus can make ending an episode pay: the values pay about 2 × `bonus_coef` a step on
    the data (the mean-1 bonus at (s, a), and about as much at (s', π(s'))), and a terminal step stops the charge. When
    that charge reaches a positive mean reward and the data hold terminations, staying alive is worth less than
    ending; else None. With rewards ≤ 0 on average (the antmaze preset's r − 1) ending early pays already, by design:
    there the terminal step is the goal."""
    charge, mean_reward = 2 * args.bonus_coef, rewards.mean().item()
    if 0 < mean_reward <= charge and bool(terminated.any()):
        return (
            f"warning: --bonus-coef {args.bonus_coef} charges the values about {charge:.3g} a step against a mean "
            f"reward of {mean_reward:.3g}, and the data's episodes terminate: ending an episode early can pay more "
            f"than staying alive (a policy that falls at once); lower --bonus-coef"
        )
    return None


def main(args: Args) -> None:
    started = time.time()
    preset_source = "given" if args.preset else "from the dataset's name"
    if problems := check_args(resolve_defaults(args)):
        fail(*problems)
    torch.set_num_threads(args.threads or default_threads())
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if args.eval_checkpoint:
        return evaluate_checkpoint(args, device)
    stop = StopSignal()  # from here on, SIGINT or SIGTERM ends the run at the next step, with its checkpoint written
    data, action_space = load_dataset_and_env(args)
    # CleanRL's name, plus a random suffix: two runs started in the same second never share a folder
    run_name = (
        f"{data.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}__{os.urandom(3).hex()}"
    )
    seed_everything(args.seed, args.torch_deterministic)
    # the whole dataset lives on the device, with the paper's reward transform and actions normalised to [−1, 1]
    dataset, norm, action_map = to_device(args, data, transform_rewards(args, data), action_space, device)
    n = len(dataset.obs)
    print(
        f"dataset {args.dataset}: {n} transitions, {len(data.episode_returns)} episodes, mean return "
        f"{data.episode_returns.mean():.1f}; eval env {data.env_id}"
        f"{' ' + str(data.env_kwargs) if data.env_kwargs else ''}; preset {args.preset} ({preset_source}); on {device}"
    )

    obs_dim, action_dim = dataset.obs.shape[1], dataset.actions.shape[1]
    critic = Critic(obs_dim, action_dim, args).to(device)
    critic_target = Critic(obs_dim, action_dim, args).to(device)
    critic_target.load_state_dict(critic.state_dict())
    actor = Actor(obs_dim, action_dim, args).to(device)
    q_optimizer = torch.optim.Adam([*critic.q1.parameters(), *critic.q2.parameters()], lr=args.learning_rate)
    v_optimizer = torch.optim.Adam(critic.v.parameters(), lr=args.learning_rate)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate)
    actor_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        actor_optimizer, args.total_timesteps
    )  # the paper's code
    last_finite = LastFinite(actor, critic)
    writer = start_logging(args, run_name)
    model_path = f"runs/{run_name}/{args.exp_name}.pt"
    env = (data.env_id, data.env_kwargs)  # the checkpoint and evaluate need them
    bonus = fit_bonus(args, dataset, device, stop) if args.bonus != "none" else None

    progress = Progress(args, writer)
    step, failure = 0, None
    try:
        while step < args.total_timesteps and not stop.code:
            batch = sample(dataset, args.batch_size)
            v_loss, v = value_loss(args, critic, critic_target, bonus, batch)
            v_optimizer.zero_grad()
            v_loss.backward()
            v_optimizer.step()

            # the paper's code (learner.py) updates the actor here: with the new V and the target Qs of this step,
            # before Q's update and the soft update
            policy_loss = actor_loss(args, actor, critic_target, critic, bonus, batch)
            actor_optimizer.zero_grad()
            policy_loss.backward()
            actor_optimizer.step()
            actor_schedule.step()

            loss_q = q_loss(args, critic, actor, bonus, batch)
            q_optimizer.zero_grad()
            loss_q.backward()
            q_optimizer.step()
            soft_update(critic_target.q1, critic.q1, args.tau)  # the Qs only: V has no target in the paper's code
            soft_update(critic_target.q2, critic.q2, args.tau)
            step += 1

            if step % 100 == 0:  # the losses are read back here anyway: stop if they diverged
                last_finite.check(step, actor, critic, value_loss=v_loss, q_loss=loss_q, actor_loss=policy_loss)
                writer.add_scalar("losses/value_loss", v_loss, step)
                writer.add_scalar("losses/q_loss", loss_q, step)
                writer.add_scalar("losses/actor_loss", policy_loss, step)
                writer.add_scalar("losses/v_values", v.mean(), step)
            if args.checkpoint_frequency and step % args.checkpoint_frequency == 0:
                save_checkpoint(model_path, actor, critic, norm, action_map, env, args)
            # the learning curve; the final evaluation (after the loop) is its last point
            if args.eval_frequency and step % args.eval_frequency == 0 and step < args.total_timesteps:
                returns = evaluate(actor, args, env, norm, action_map, device)
                progress.last_eval = log_learning_curve(writer, step, returns, data.ref_scores)
            progress.report(step)
    except FloatingPointError as e:
        failure = e
    finally:
        if args.save_model:
            save_checkpoint(
                model_path, *(last_finite.networks if failure else (actor, critic)), norm, action_map, env, args
            )
            print(f"model saved to {model_path}" + (" (the last finite weights)" if failure else ""))
        writer.flush()
        stop.restore()
    exit_if_ended_early(failure, stop, step)

    if args.eval_episodes > 0:
        print(f"final evaluation: {args.eval_episodes} episodes", flush=True)
        video_dir = f"videos/{run_name}" if args.capture_video else None
        returns, stopped = evaluate_until_signalled(actor, args, env, norm, action_map, device, video_dir)
        final_evaluation(returns, args, data, writer, step)
        exit_if_evaluation_stopped(stopped, len(returns))
    print(f"total time {time.time() - started:.0f} s, {step} gradient steps")
    writer.close()


def check_args(args: Args) -> list[str]:
    """One line per field outside its range, saying the range; empty when every field is fine. Runs before anything is
    loaded, on the fields that `resolve_defaults` filled."""
    rules = [
        ("seed", 0 <= args.seed < 2**32, "in [0, 2³² − 1], the seeds NumPy takes"),
        ("exp_name", args.exp_name not in ("", ".", "..") and "/" not in args.exp_name, "a name without '/'"),
        ("total_timesteps", args.total_timesteps >= 1, "≥ 1"),
        ("learning_rate", 0 < args.learning_rate < float("inf"), "> 0 and finite"),
        ("batch_size", args.batch_size >= 1, "≥ 1"),
        ("gamma", 0 < args.gamma <= 1, "in (0, 1]"),
        ("tau", 0 < args.tau <= 1, "in (0, 1]"),
        ("expectile", 0 < args.expectile < 1, "in (0, 1)"),
        ("beta", 0 <= args.beta < float("inf"), "≥ 0 and finite"),
        ("exp_adv_max", args.exp_adv_max > 0, "> 0"),
        ("bonus_coef", args.bonus_coef >= 0, "≥ 0"),
        (
            "bonus_pretrain_steps",
            args.bonus_pretrain_steps >= (1 if args.bonus != "none" else 0),
            "≥ 1 with --bonus, else ≥ 0",
        ),
        ("n_quantiles", args.n_quantiles >= 1, "≥ 1"),
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
    return [
        f"--{name.replace('_', '-')} {getattr(args, name)}: must be {rule}" for name, ok, rule in rules if not ok
    ] + machine_problems(args)


# ======================================================================================================================
# Machinery: skip it on a first reading. Defaults, the D4RL and Minari loaders, the device-resident dataset, evaluation,
# checkpoints, logging and run control.
# ======================================================================================================================


def resolve_defaults(args: Args) -> Args:
    """The fields left None: the preset from the dataset's name (antmaze when it holds "antmaze"), and the preset's
    expectile and β (the paper's: 0.7 and 3 for locomotion, 0.9 and 10 for antmaze)."""
    if args.preset is None:
        args.preset = "antmaze" if "antmaze" in os.path.basename(args.dataset).lower() else "locomotion"
    antmaze = args.preset == "antmaze"
    if args.expectile is None:
        args.expectile = 0.9 if antmaze else 0.7
    if args.beta is None:
        args.beta = 10.0 if antmaze else 3.0
    return args


D4RL_ENV_IDS = {"halfcheetah": "HalfCheetah-v4", "hopper": "Hopper-v4", "walker2d": "Walker2d-v4", "ant": "Ant-v4"}


D4RL_ENV_KWARGS = {"ant": {"use_contact_forces": True}}  # D4RL's ant observes its contact forces: 111 dims, not 27


# D4RL's reference returns (d4rl/infos.py): random and expert policies, for the normalised score
D4RL_REF_SCORES = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
}


class Transitions(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor  # 1.0 where the episode terminated (a timeout is not a terminal)


class Dataset(NamedTuple):
    """Numpy transitions plus what the script needs to know about where they came from."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    episode_returns: np.ndarray  # the return of every episode in the data
    env_id: Optional[str]  # an id gymnasium can make, or None
    env_kwargs: dict  # made with gym.make(env_id, **env_kwargs)
    ref_scores: Optional[tuple]  # (random, expert) returns for the normalised score, or None


def split_episodes(ends: np.ndarray) -> list[slice]:
    """Steps 0..T−1 as slices of whole episodes, `ends[t]` marking the last step of one; a trailing partial episode
    is kept as its own episode (its last transition has no true next observation and is dropped by the loader)."""
    stops = np.flatnonzero(ends) + 1
    starts = np.concatenate([[0], stops])
    stops = np.concatenate([stops, [len(ends)]])
    return [slice(a, b) for a, b in zip(starts, stops) if b > a]


def check_arrays(source: str, arrays: dict) -> None:
    """Raises ValueError naming the first array that is not numbers, is empty, has a length other than the first's or
    the wrong shape (observations, next observations and actions [N, dim]; rewards and flags [N]; next observations
    shaped as the observations), holds NaN or infinite values (with their count), or flags other than 0 and 1: each
    would otherwise surface as a traceback, a NaN loss or a silently broadcast target later."""
    length, width = len(next(iter(arrays.values()))), arrays["observations"].shape[1:]
    for key, array in arrays.items():
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ValueError(f"{source}: {key!r} holds {array.dtype} values, not numbers")
        if len(array) == 0 or len(array) != length:
            raise ValueError(
                f"{source}: {key!r} has {len(array)} entries" + ("" if len(array) == 0 else f", the others {length}")
            )
        vector = key in ("observations", "next_observations", "actions")
        if array.ndim != (2 if vector else 1):
            shape = f"({length}, dim)" if vector else f"({length},), one value per step"
            raise ValueError(f"{source}: {key!r} has shape {array.shape}: must be {shape}")
        if key == "next_observations" and array.shape[1:] != width:
            raise ValueError(
                f"{source}: 'next_observations' has shape {array.shape}, the observations {(length, *width)}"
            )
        bad = np.count_nonzero(~np.isfinite(array))
        if bad:
            raise ValueError(f"{source}: {key!r} holds {bad} NaN or infinite values (of {array.size})")
        if key in ("terminals", "timeouts", "terminations") and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{source}: {key!r} holds values other than 0 and 1")


def load_hdf5(path: str, env_id: Optional[str]) -> Dataset:
    """A D4RL-style file: `observations`, `actions`, `rewards`, `terminals`, `timeouts`, optional `next_observations`.
    An episode ends at a terminal or a timeout. A terminal does not bootstrap; a timeout does, from the next
    observation, which without `next_observations` is only known inside an episode: the last step of an episode
    that timed out has no known next observation and is dropped, so no transition crosses an episode boundary."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except OSError as e:  # an empty, truncated or non-hdf5 file
        raise ValueError(f"{path} is not a readable hdf5 file ({e})") from None
    missing = {"observations", "actions", "rewards", "terminals", "timeouts"} - set(data)
    if missing:
        raise ValueError(f"{path} lacks the D4RL keys {sorted(missing)}")
    keys = ["observations", "actions", "rewards", "terminals", "timeouts"] + (
        ["next_observations"] if "next_observations" in data else []
    )
    check_arrays(path, {k: data[k] for k in keys})
    terminals, timeouts = data["terminals"].astype(bool), data["timeouts"].astype(bool)
    ends = terminals | timeouts
    ends[-1] = True
    next_obs = data.get("next_observations")
    keep = np.ones(len(terminals), dtype=bool)
    if next_obs is None:
        next_obs = np.concatenate([data["observations"][1:], data["observations"][-1:]])
        keep = ~ends | terminals  # a terminal needs no next observation; the other episode ends have none
    if not keep.any():
        raise ValueError(f"{path}: no usable transition (every step ends an episode with no next observation)")
    returns = np.array([data["rewards"][s].sum() for s in split_episodes(ends)])
    name = os.path.basename(path).split("-")[0].split("_")[0].lower()
    env_kwargs = D4RL_ENV_KWARGS.get(name, {}) if env_id is None else {}
    if env_id is None:
        env_id = D4RL_ENV_IDS.get(name)
    return Dataset(
        data["observations"][keep],
        data["actions"][keep],
        data["rewards"][keep],
        next_obs[keep],
        terminals[keep],
        returns,
        env_id,
        env_kwargs,
        D4RL_REF_SCORES.get(name),
    )


def load_minari(dataset_id: str, env_id: Optional[str]) -> Dataset:
    """A Minari dataset: episodes of T actions and T + 1 observations, so every transition has its true next
    observation; terminations do not bootstrap, truncations do. Its env is recreated from the dataset itself."""
    import minari

    try:
        dataset = minari.load_dataset(dataset_id)
    except Exception as e:  # minari raises several types for a dataset that is not there
        raise FileNotFoundError(
            f"no Minari dataset {dataset_id!r} here ({e}). On a machine with internet: `minari download {dataset_id}`; "
            f"or build one locally: `python ddpg_td3_sac.py --env-id <env> --save-dataset <id>`"
        ) from e
    obs, actions, rewards, next_obs, terminated, returns = [], [], [], [], [], []
    for episode in dataset.iterate_episodes():
        obs.append(episode.observations[:-1])
        next_obs.append(episode.observations[1:])
        actions.append(episode.actions)
        rewards.append(episode.rewards)
        terminated.append(episode.terminations)
        returns.append(episode.rewards.sum())
    if not returns:
        raise ValueError(f"the Minari dataset {dataset_id} holds no episodes")
    arrays = dict(
        zip(
            ["observations", "actions", "rewards", "next_observations", "terminations"],
            map(np.concatenate, (obs, actions, rewards, next_obs, terminated)),
        )
    )
    check_arrays(f"the Minari dataset {dataset_id}", arrays)
    if env_id is None:
        env_id = dataset.spec.env_spec.id if dataset.spec.env_spec is not None else None
    low, high = (dataset.storage.metadata.get(k) for k in ("ref_min_score", "ref_max_score"))
    ref = (low, high) if low is not None and high is not None else None
    return Dataset(*arrays.values(), np.array(returns), env_id, {}, ref)


def load_dataset(args: Args) -> Dataset:
    """The HDF5 file (D4RL's format) at the path `--dataset`, whatever its extension, else the Minari dataset of that
    id."""
    path = args.dataset
    if os.path.exists(path):
        import h5py

        if os.path.isfile(path) and (path.lower().endswith((".hdf5", ".h5")) or h5py.is_hdf5(path)):
            return load_hdf5(path, args.env_id)
        kind = "a folder" if os.path.isdir(path) else f"a {os.path.splitext(path)[1] or 'plain'} file"
        raise ValueError(f"{path} is {kind}, not HDF5: this script reads D4RL-style HDF5 and Minari ids")
    if path.lower().endswith((".hdf5", ".h5")):
        raise FileNotFoundError(
            f"no file {path}; D4RL files cannot be downloaded here: convert one, "
            f"or build a Minari dataset with `python ddpg_td3_sac.py --save-dataset <id>`"
        )
    return load_minari(path, args.env_id)


def load_dataset_and_env(args: Args):
    """The dataset, and its eval env's action space; stops with one line when either is missing or they don't fit."""
    try:
        data = load_dataset(args)
        if data.env_id is None:
            raise ValueError(f"cannot tell which env {args.dataset} comes from; pass --env-id")
        eval_env = gym.make(gym.spec(data.env_id), **data.env_kwargs)
        action_space, obs_space = eval_env.action_space, eval_env.observation_space
        eval_env.close()
    except (FileNotFoundError, ValueError, ImportError, gym.error.Error) as e:
        fail(str(e))
    if not isinstance(action_space, gym.spaces.Box):
        fail(f"{data.env_id} has action space {action_space}; IQL here needs a Box action space")
    if args.batch_size > len(data.obs):
        fail(f"--batch-size {args.batch_size}: must be ≤ the dataset's {len(data.obs)} transitions")
    if data.obs.shape[1:] != obs_space.shape or data.actions.shape[1:] != action_space.shape:
        fail(
            f"the dataset's observations {data.obs.shape[1:]} / actions {data.actions.shape[1:]} do not "
            f"match {data.env_id}'s {obs_space.shape} / {action_space.shape}"
        )
    return data, action_space


def to_device(args: Args, data, rewards, action_space, device):
    """The dataset as device tensors, observations standardised with `--normalize-states` and actions mapped onto
    [−1, 1] (a tanh policy's range); returns it, the observation normaliser and the action map (scale, bias)."""
    as_tensor = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)  # noqa: E731
    obs_mean = data.obs.mean(0) if args.normalize_states else np.zeros(data.obs.shape[1])
    obs_std = data.obs.std(0) + 1e-3 if args.normalize_states else np.ones(data.obs.shape[1])
    action_scale = torch.as_tensor((action_space.high - action_space.low) / 2, dtype=torch.float32, device=device)
    action_bias = torch.as_tensor((action_space.high + action_space.low) / 2, dtype=torch.float32, device=device)
    norm = (as_tensor(obs_mean), as_tensor(obs_std))
    dataset = Transitions(
        obs=(as_tensor(data.obs) - norm[0]) / norm[1],
        actions=((as_tensor(data.actions) - action_bias) / action_scale).clamp(-1 + 1e-5, 1 - 1e-5),
        rewards=as_tensor(rewards),
        next_obs=(as_tensor(data.next_obs) - norm[0]) / norm[1],
        terminated=as_tensor(data.terminated),
    )
    return dataset, norm, (action_scale, action_bias)


def sample(dataset, batch_size: int):
    """A uniform minibatch of the device-resident dataset."""
    idx = torch.randint(len(dataset.obs), (batch_size,), device=dataset.obs.device)
    return Transitions(*(x[idx] for x in dataset))


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


def evaluate(actor, args: Args, env, norm, action_scale, device, video_dir=None, stop=None) -> list[float]:
    """The first episode of each of `eval_episodes` parallel envs with the mean action; `env` is (env_id,
    env_kwargs). With a `StopSignal`, a signal ends it at the next step: the returns are those of the episodes
    finished by then."""
    if video_dir:  # frames are rendered off-screen; without this SDL looks for a display and complains
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    envs = gym.make_vec(
        env[0],
        args.eval_episodes,
        vectorization_mode="sync",
        render_mode="rgb_array" if video_dir else None,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **env[1],
    )
    try:
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
        mean, std = norm
        scale, bias = action_scale
        while not finished.all() and not (stop and stop.code):
            if writers:
                frames = envs.render()
                for i in np.flatnonzero(~finished):
                    writers[i].append_data(frames[i])
            with torch.no_grad():
                actions = actor((torch.as_tensor(obs, device=device, dtype=torch.float32) - mean) / std) * scale + bias
            obs, rewards, terminations, truncations, _ = envs.step(actions.cpu().numpy())
            returns += rewards * ~finished
            finished |= terminations | truncations
        for w in writers:
            w.close()
        return returns[finished].tolist()
    finally:  # also where a video cannot be written: the caller then plays the games again in new envs
        envs.close()


def normalized_scores(returns, ref_scores) -> list[float]:
    """D4RL's normalised score, 100 (R − R_random) / (R_expert − R_random), from the dataset's reference returns."""
    low, high = ref_scores
    return [100 * (r - low) / (high - low) for r in returns]


def log_learning_curve(writer, step, returns, ref_scores) -> str:
    """A point of the learning curve: the evaluation's mean return (and mean normalised score) at `step`; returns it as
    text for the progress line."""
    writer.add_scalar("eval/mean_return", np.mean(returns), step)
    if ref_scores is None:
        return f"{np.mean(returns):.1f}"
    score = np.mean(normalized_scores(returns, ref_scores))
    writer.add_scalar("eval/mean_normalized_score", score, step)
    return f"{np.mean(returns):.1f} (normalized {score:.1f})"


def evaluate_checkpoint(args: Args, device) -> None:
    """`--eval-checkpoint`: the saved actor evaluated with this command line's seed and episodes (videos under
    videos/eval__{checkpoint}__{seed}__{time}); the env, the normalisers and the other flags are the checkpoint's."""
    seed_everything(args.seed, args.torch_deterministic)
    try:
        actor, ckpt_args, env, norm, action_scale = load_checkpoint(args.eval_checkpoint, device)
    except ValueError as e:
        fail(str(e))
    if args.env_id not in (None, env[0]):
        fail(f"--env-id {args.env_id}: the checkpoint plays {env[0]}; leave --env-id out to evaluate it")
    ckpt_args.eval_episodes, ckpt_args.seed = args.eval_episodes, args.seed
    name = os.path.basename(args.eval_checkpoint).removesuffix(".pt")
    video_dir = f"videos/eval__{name}__{args.seed}__{int(time.time())}" if args.capture_video else None
    returns, stopped = evaluate_until_signalled(actor, ckpt_args, env, norm, action_scale, device, video_dir)
    if returns:
        print(f"eval: mean return {np.mean(returns):.2f} over {len(returns)} episodes: {returns}")
    exit_if_evaluation_stopped(stopped, len(returns))


def evaluate_until_signalled(actor, args: Args, env, norm, action_scale, device, video_dir):
    """`evaluate` that SIGINT or SIGTERM ends at the next step: the returns of the episodes finished by then, and the
    exit status the signal asks for (128 + its number; 0 when none came). Videos that cannot be written (a full disk,
    an ffmpeg that died) are given up with a warning, and the episodes played again without them."""
    stop = StopSignal()
    try:
        if video_dir:
            print(f"videos: {video_dir}/")
        try:
            returns = evaluate(actor, args, env, norm, action_scale, device, video_dir, stop)
        except OSError as e:
            print(f"warning: the videos could not be written ({e}); evaluating again without them", file=sys.stderr)
            returns = evaluate(actor, args, env, norm, action_scale, device, None, stop)
    finally:
        stop.restore()
    return returns, stop.code


def exit_if_evaluation_stopped(code: int, finished: int) -> None:
    if code:
        print(f"evaluation stopped by {signal.Signals(code - 128).name} after {finished} finished episodes")
        raise SystemExit(code)


def final_evaluation(returns, args: Args, data, writer, step: int) -> None:
    """The evaluation after training: each episode's return (and normalised score, where the dataset has reference
    returns) logged with step = the episode's index, and the learning curve's last point with `--eval-frequency`.
    `returns` may be fewer than `--eval-episodes` (a signal ended the evaluation), or none."""
    for i, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, i)
    if returns:
        if args.eval_frequency:
            log_learning_curve(writer, step, returns, data.ref_scores)
        mean_return, dataset_mean = np.mean(returns), data.episode_returns.mean()
        message = f"eval: mean return {mean_return:.2f} over {len(returns)} episodes (dataset mean {dataset_mean:.1f})"
        if data.ref_scores is not None:
            scores = normalized_scores(returns, data.ref_scores)
            for i, score in enumerate(scores):
                writer.add_scalar("eval/normalized_score", score, i)
            message += f", normalized score {np.mean(scores):.1f}"
        else:
            message += "; no reference scores for this dataset, so no normalized score"
        print(message)
    writer.flush()


def save_checkpoint(path, actor, critic, norm, action_scale, env, args: Args):
    """Weights, normalisers, the eval env (id and kwargs) and args, written atomically."""
    extras = {"obs_mean": norm[0], "obs_std": norm[1], "action_scale": action_scale[0], "action_bias": action_scale[1]}
    checkpoint = {
        "actor": actor.state_dict(),
        "critic": critic.state_dict(),
        "env_id": env[0],
        "env_kwargs": env[1],
        "args": asdict(args),
        "algorithm": ALGORITHM,
        **extras,
    }
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path, device):
    """The actor, args, eval env and normalisers of a checkpoint this script wrote. Raises ValueError, in one line, on a
    missing file, one that is not a torch checkpoint (empty, truncated, another format) or one of another algorithm."""
    script = os.path.basename(__file__)
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # EOFError, UnpicklingError or RuntimeError, depending on the damage
        raise ValueError(
            f"{path} is not a readable checkpoint (empty, truncated or another format: {type(e).__name__})"
        ) from None
    written_by = ckpt.get("algorithm") if isinstance(ckpt, dict) else None
    if written_by != ALGORITHM:
        raise ValueError(f"{path} is a checkpoint of {written_by or 'an unknown program'}, not of {ALGORITHM}")
    try:
        args = Args(**ckpt["args"])
        actor = Actor(ckpt["obs_mean"].shape[-1], ckpt["action_scale"].shape[-1], args).to(device)
        actor.load_state_dict(ckpt["actor"])
    except (KeyError, TypeError, RuntimeError) as e:  # written by another version of this script
        raise ValueError(f"{path} does not fit this version of {script}: {str(e).splitlines()[0]}") from None
    env = (ckpt["env_id"], ckpt.get("env_kwargs", {}))
    return actor, args, env, (ckpt["obs_mean"], ckpt["obs_std"]), (ckpt["action_scale"], ckpt["action_bias"])


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
    """A progress line every 5 s with the gradient steps, their rate, the ETA and the latest evaluation
    (`last_eval`)."""

    def __init__(self, args: Args, writer):
        self.writer, self.total = writer, args.total_timesteps
        self.start_time = self.last_print = time.time()
        self.last_print_step, self.last_eval = 0, "n/a"

    def report(self, step):
        if time.time() - self.last_print <= 5 and step < self.total:
            return
        sps = (step - self.last_print_step) / (time.time() - self.last_print)
        eta = max(self.total - step, 0) / max(sps, 1e-9)
        print(
            f"step {step}/{self.total}  {sps:.0f} gradient steps/s  ETA {duration(eta)}  eval {self.last_eval}",
            flush=True,
        )
        self.writer.add_scalar("charts/SPS", sps, step)
        self.last_print, self.last_print_step = time.time(), step


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
