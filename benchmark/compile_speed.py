"""torch.compile for `ddpg_td3_sac.py`'s update, measured (it is not a flag: on this CPU it did not help;
docs/performance.md): the time of one update step (critics, and the actor, temperature and targets
at their frequency) eager and compiled, in one process, alternating blocks (A B B A ...), on HalfCheetah-v5's shapes at
batch 256, one thread. Not a test.

    python benchmark/compile_speed.py --algo sac
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ddpg_td3_sac as ac  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="sac", choices=["ddpg", "td3", "sac"])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=300, help="update steps per block")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    envs = ac.make_env("HalfCheetah-v5", 1)
    args = ac.resolve_defaults(ac.Args(algo=cli.algo))
    actor = ac.Actor(envs, stochastic=cli.algo == "sac")
    actor_target = copy.deepcopy(actor) if cli.algo != "sac" else None
    qfs = torch.nn.ModuleList(ac.QNetwork(envs) for _ in range(1 if cli.algo == "ddpg" else 2))
    qf_targets = copy.deepcopy(qfs)
    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    envs.close()
    log_alpha = torch.zeros((), requires_grad=True)
    optimizers = [
        torch.optim.Adam(qfs.parameters(), lr=args.q_lr),
        torch.optim.Adam(actor.parameters(), lr=args.learning_rate),
        torch.optim.Adam([log_alpha], lr=args.q_lr) if cli.algo == "sac" else None,
    ]
    data = ac.ReplayBatch(
        obs=torch.randn(256, obs_dim),
        actions=torch.rand(256, action_dim) * 2 - 1,
        rewards=torch.randn(256),
        next_obs=torch.randn(256, obs_dim),
        terminated=torch.zeros(256),
    )
    steps = {
        "eager": (ac.update_critics, ac.update_actor),
        "compiled": (torch.compile(ac.update_critics), torch.compile(ac.update_actor)),
    }

    def block(name, n) -> float:
        """Milliseconds per update step over n steps."""
        critic_step, actor_step = steps[name]
        start = time.perf_counter()
        for i in range(n):
            critic_step(args, data, actor, actor_target, qfs, qf_targets, optimizers[0], log_alpha)
            if i % args.policy_frequency == 0:
                actor_step(args, data, actor, qfs, optimizers[1], log_alpha, optimizers[2], -float(action_dim))
                ac.soft_update(qf_targets, qfs, args.tau)
        return (time.perf_counter() - start) / n * 1e3

    start = time.perf_counter()
    block("compiled", 3)
    print(f"{cli.algo}: compile time (the first 3 compiled steps) {time.perf_counter() - start:.1f} s", flush=True)
    block("eager", 20)
    ms = {"eager": [], "compiled": []}
    for r in range(cli.rounds):
        for name in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
            ms[name].append(block(name, cli.steps))
    ratios = np.array(ms["eager"]) / np.array(ms["compiled"])
    for name, values in ms.items():
        print(
            f"{cli.algo} {name}: {np.median(values):.2f} ms per update step "
            f"(median; rounds {np.round(values, 2).tolist()})"
        )
    print(f"{cli.algo}: eager / compiled per round {np.round(ratios, 2).tolist()}, median {np.median(ratios):.2f}")


if __name__ == "__main__":
    main()
