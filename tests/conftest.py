"""Helpers shared by the tests: running a script as a subprocess and reading its TensorBoard scalars."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scripts are imported as modules


def run_script(script, *args, cwd, timeout=600):
    """Run `python script args...` in `cwd` (so runs/ and videos/ land there) on CPU; return the CompletedProcess."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def read_scalars(run_dir):
    """{tag: [(step, value), ...]} of every scalar in a TensorBoard run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def only_run_dir(cwd):
    runs = list((Path(cwd) / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


# A few hundred Breakout steps that take 250 gradient steps (learning starts at 300, one step per 2 transitions).
SMOKE = ["--env-id", "BreakoutNoFrameskip-v4", "--total-timesteps", 800, "--learning-starts", 300, "--train-frequency", 2,
         "--buffer-size", 2000, "--target-network-frequency", 100, "--exploration-fraction", 1.0]  # fmt: skip

# CartPole recipe of the learning tests (found by a small sweep with dqn_atari.py): Adam 1e-3, batch 64, target
# copy every 500 transitions, ε 1 -> 0.05 over 16% of 60k transitions.
CARTPOLE = ["--env-id", "CartPole-v1", "--total-timesteps", 60_000, "--learning-starts", 1000, "--buffer-size", 50_000,
            "--learning-rate", 1e-3, "--batch-size", 64, "--train-frequency", 4, "--target-network-frequency", 500,
            "--exploration-fraction", 0.16, "--end-e", 0.05, "--eval-episodes", 10]  # fmt: skip


def smoke_test(script, tmp_path, loss_tag, *flags):
    """Train a few hundred Breakout steps with gradient steps; check logs and the saved checkpoint; reload it."""
    out = run_script(script, *SMOKE, "--save-model", "--eval-episodes", 1, "--eval-epsilon", 0.05, *flags, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "250 gradient steps" in out.stdout
    run_dir = only_run_dir(tmp_path)
    scalars = read_scalars(run_dir)
    for tag in ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/epsilon",
                loss_tag, "losses/q_values", "eval/episodic_return"]:  # fmt: skip
        assert tag in scalars, tag
    assert len(scalars[loss_tag]) == 2  # logged every 100 gradient steps
    checkpoint = run_dir / script.replace(".py", ".pt")
    out = run_script(script, "--eval-checkpoint", checkpoint, "--eval-episodes", 1, "--eval-epsilon", 0.05, cwd=tmp_path)
    assert out.returncode == 0 and "eval: mean return" in out.stdout, out.stderr
    return run_dir


def eval_returns(tmp_path):
    return [v for _, v in read_scalars(only_run_dir(tmp_path))["eval/episodic_return"]]


def greedy_visited_states(script_module, run_root, num_envs=16, steps=50):
    """Load the one checkpoint under `run_root`/runs and play CartPole greedily with it; return the network
    and the num_envs × steps observations it visited, as one tensor."""
    import numpy as np
    import torch

    q_network, _ = script_module.load_checkpoint(str(next((Path(run_root) / "runs").rglob("*.pt"))), torch.device("cpu"))
    envs = script_module.make_env("CartPole-v1", num_envs)
    obs, _ = envs.reset(seed=0)
    states = []
    for _ in range(steps):
        states.append(obs)
        obs, *_ = envs.step(q_network(torch.as_tensor(obs)).argmax(1).numpy())
    envs.close()
    return q_network, torch.as_tensor(np.concatenate(states))
