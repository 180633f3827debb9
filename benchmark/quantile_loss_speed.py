"""The quantile Huber loss, measured: the scripts' `quantile_huber_loss` (its gradient written out) against the same
Eq. 10 left to autograd, `autograd_form` below. In one process, one thread, alternating blocks (A B B A ...), the
median of each side's blocks. Not a test.

    python benchmark/quantile_loss_speed.py                 # the loss alone, then one gradient step of each script
    python benchmark/quantile_loss_speed.py --batch-size 32 --env-id MinAtar/Breakout-v0
    python benchmark/quantile_loss_speed.py --compile       # and the autograd form under torch.compile, loss alone

The loss alone is its forward and backward pass at QR-DQN's 200 × 200 quantile pairs (τ given as [N]) and IQN's
64 × 64 and FQF's 32 × 32 (τ per sample, [B, N]). A gradient step is the script's whole update on a random batch:
`td_loss`, the backward pass and the optimiser steps, at the script's default quantile counts and the given batch
size and environment (CartPole-v1 and 128: the classic-control suite's protocol).
"""

import argparse
import copy
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SCRIPTS = ["qrdqn_atari", "iqn_atari", "fqf_atari"]


def autograd_form(quantiles, target_quantiles, taus, kappa=1.0):
    """Eq. 10 written elementwise and differentiated by autograd: the reference for the speed and for the values."""
    u = target_quantiles[:, None, :] - quantiles[:, :, None]
    if kappa == 0:
        loss = u.abs()
    else:
        loss = torch.where(u.abs() <= kappa, 0.5 * u**2, kappa * (u.abs() - 0.5 * kappa)) / kappa
    weight = (taus[..., :, None] - (u.detach() < 0).float()).abs()
    return (weight * loss).mean(2).sum(1)


def alternate(blocks: dict, rounds: int) -> dict:
    """Each block's milliseconds per call, the median over `rounds` rounds run A B B A A B ..."""
    times = {name: [] for name in blocks}
    names = list(blocks)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(blocks[name]())
    return {name: statistics.median(t) for name, t in times.items()}


def timed(fn, seconds: float):
    """A block of calls of `fn` lasting about `seconds` (after one warm-up call), returning ms per call."""
    fn()
    start = time.perf_counter()
    fn()
    calls = max(1, int(seconds / (time.perf_counter() - start)))

    def block():
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls * 1e3

    return block


def loss_alone(loss_fn, batch, n, n_target, per_sample):
    g = torch.Generator().manual_seed(0)
    quantiles = torch.randn(batch, n, generator=g, requires_grad=True)
    targets = torch.randn(batch, n_target, generator=g)
    taus = torch.rand(batch, n, generator=g) if per_sample else (torch.arange(n) + 0.5) / n

    def call():
        quantiles.grad = None
        loss_fn(quantiles, targets, taus).mean().backward()

    return call


def gradient_step(module, env_id, batch):
    """One update of `module` on a random batch, as its training loop makes it."""
    torch.manual_seed(0)
    args = module.resolve_defaults(module.Args(env_id=env_id, batch_size=batch))
    envs = module.make_env(env_id, 1)
    q_network = module.QNetwork(envs, args)
    target_network = copy.deepcopy(q_network)
    space = envs.single_observation_space
    obs = torch.rand(batch, *space.shape) if space.dtype.kind == "f" else torch.randint(0, 2, (batch, *space.shape))
    data = module.ReplayBatch(
        obs=obs,  # the networks cast to float
        actions=torch.randint(0, envs.single_action_space.n, (batch,)),
        rewards=torch.randn(batch),
        next_obs=obs.flip(0),
        terminated=torch.zeros(batch),
        discounts=torch.full((batch,), args.gamma),
        weights=torch.ones(batch),
    )
    envs.close()
    if module.__name__ == "fqf_atari":
        fraction_params = list(q_network.fraction_net.parameters())
        params = [p for name, p in q_network.named_parameters() if not name.startswith("fraction_net.")]
        optimizers = [
            torch.optim.Adam(params, lr=args.learning_rate, eps=args.adam_eps, fused=True),
            module.fraction_optimizer(fraction_params, args.fraction_learning_rate),
        ]

        def loss():
            out = module.td_loss(q_network, target_network, data, args.double, args.kappa, args.entropy_coef)
            return out[0] + out[1]
    else:
        optimizers = [torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=args.adam_eps, fused=True)]
        extra = (args.n_tau_samples, args.n_target_samples) if module.__name__ == "iqn_atari" else ()

        def loss():
            return module.td_loss(q_network, target_network, data, args.double, args.kappa, *extra)[0]

    def call():
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss().backward()
        for optimizer in optimizers:
            optimizer.step()

    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="CartPole-v1")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=0.5, help="about this long per block")
    parser.add_argument("--compile", action="store_true", help="time torch.compile(autograd_form) too, loss alone")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    if cli.env_id.startswith("MinAtar"):
        from minatar.gym import register_envs

        register_envs()
    modules = {name: importlib.import_module(name) for name in SCRIPTS}
    fused = modules["qrdqn_atari"].quantile_huber_loss

    print(f"loss alone, forward and backward, batch {cli.batch_size}, ms per call (median of {cli.rounds} blocks):")
    sides = [("autograd", autograd_form), ("written out", fused)]
    if cli.compile:
        start = time.perf_counter()
        compiled = torch.compile(autograd_form)
        loss_alone(compiled, 4, 3, 3, False)()
        print(f"  torch.compile: first call {time.perf_counter() - start:.1f} s")
        sides.append(("compiled", compiled))
    for n, n_target, per_sample in [(200, 200, False), (64, 64, True), (32, 32, True)]:
        blocks = {}
        for name, fn in sides:
            blocks[name] = timed(loss_alone(fn, cli.batch_size, n, n_target, per_sample), cli.seconds)
        ms = alternate(blocks, cli.rounds)
        ratios = ", ".join(f"{name} {t:.2f}" for name, t in ms.items())
        print(f"  {n} x {n_target}: {ratios}; autograd / written out {ms['autograd'] / ms['written out']:.2f}x")

    print(f"one gradient step on {cli.env_id}, batch {cli.batch_size}, ms per step:")
    for name, module in modules.items():
        blocks = {}
        for side, fn in [("autograd", autograd_form), ("written out", module.quantile_huber_loss)]:
            step = gradient_step(module, cli.env_id, cli.batch_size)

            def call(step=step, fn=fn, own=module.quantile_huber_loss):
                module.quantile_huber_loss = fn  # td_loss looks the loss up in its module at each call
                try:
                    step()
                finally:
                    module.quantile_huber_loss = own

            blocks[side] = timed(call, cli.seconds)
        ms = alternate(blocks, cli.rounds)
        ratio = ms["autograd"] / ms["written out"]
        print(f"  {name}: autograd {ms['autograd']:.2f}, written out {ms['written out']:.2f}; {ratio:.2f}x")


if __name__ == "__main__":
    main()
