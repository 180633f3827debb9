"""SPS of an Atari script and its split into env, act, replay add, sample and update. Not a test:

    python tests/benchmark.py --script dqn_atari --env-id BreakoutNoFrameskip-v4 --num-envs 1

Each phase is timed on its own (synchronising CUDA), the split is given per environment transition, then
`main()` runs end to end with learning on from the start, and its measured SPS is printed beside the
prediction from the split.
"""

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, repeats, device):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--script", default="dqn_atari", choices=["dqn_atari", "c51_atari", "qrdqn_atari", "iqn_atari"])
    parser.add_argument("--env-id", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000, help="transitions of the end-to-end run")
    parser.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=True)
    cli = parser.parse_args()
    dqn = importlib.import_module(cli.script)
    args = dqn.Args(env_id=cli.env_id, num_envs=cli.num_envs, buffer_size=20_000, cuda=cli.cuda)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    print(f"{cli.script} on {device}, torch threads {torch.get_num_threads()}, env {args.env_id} x {args.num_envs}")

    envs = dqn.make_env(args.env_id, args.num_envs)
    atari = dqn.is_atari(envs)
    shape = envs.single_observation_space.shape
    rb = dqn.ReplayBuffer(args.buffer_size, args.num_envs, shape, torch.uint8 if atari else torch.float32,
                          shape[0] if atari else 0, args.n_step, args.gamma, device)  # fmt: skip
    q_network = dqn.QNetwork(envs, args).to(device)
    target_network = dqn.QNetwork(envs, args).to(device)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)
    obs_np, _ = envs.reset(seed=0)
    obs = torch.as_tensor(obs_np, device=device)
    random_actions = np.zeros(args.num_envs, dtype=np.int64)
    zeros = torch.zeros(args.num_envs, device=device)
    no_flags = torch.zeros(args.num_envs, dtype=torch.bool, device=device)

    env_time = timed(lambda: envs.step(random_actions), 300, device)
    act_time = timed(lambda: dqn.select_actions(q_network, obs, 0.05).cpu().numpy(), 300, device)
    actions = torch.zeros(args.num_envs, dtype=torch.long, device=device)
    add_time = timed(lambda: rb.add(obs, actions, zeros, no_flags, no_flags, torch.as_tensor(obs_np, device=device)), 300, device)
    for _ in range(1000 // args.num_envs):
        rb.add(obs, actions, zeros, no_flags, no_flags, obs)
    sample_time = timed(lambda: rb.sample(args.batch_size), 100, device)
    data = rb.sample(args.batch_size)

    def update():
        extra = [args.loss] if hasattr(args, "loss") else []  # DQN
        extra += [args.kappa] if hasattr(args, "kappa") else []  # QR-DQN and IQN; IQN also takes N and N'
        extra += [args.n_tau_samples, args.n_target_samples] if hasattr(args, "n_tau_samples") else []
        loss, _ = dqn.td_loss(q_network, target_network, data, args.double, *extra)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    update_time = timed(update, 100, device)
    envs.close()

    per_transition = {
        "env": env_time / args.num_envs,
        "act": act_time / args.num_envs,
        "replay add": add_time / args.num_envs,
        "sample": sample_time / args.train_frequency,
        "update": update_time / args.train_frequency,
    }
    total = sum(per_transition.values())
    print("per environment transition (sample and update once every train_frequency=4 transitions):")
    for name, seconds in per_transition.items():
        print(f"  {name:<11} {seconds * 1e3:7.3f} ms  {100 * seconds / total:5.1f}%")
    acting = total - per_transition["sample"] - per_transition["update"]
    print(f"  predicted   {1 / total:7.0f} SPS while learning ({1 / acting:.0f} before learning starts)")

    run = dqn.Args(env_id=args.env_id, num_envs=args.num_envs, buffer_size=20_000, cuda=args.cuda, total_timesteps=cli.steps,
                   learning_starts=200, eval_episodes=0, exp_name="benchmark")  # fmt: skip
    start = time.perf_counter()
    dqn.main(run)
    print(f"end to end: {cli.steps / (time.perf_counter() - start):.0f} SPS over {cli.steps} transitions, learning from step 200")


if __name__ == "__main__":
    main()
