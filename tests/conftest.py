"""Helpers shared by the tests: running a script as a subprocess and reading its TensorBoard scalars."""

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scripts are imported as modules
# One torch thread per test process, and per run it starts: pytest-xdist runs a test on every CPU, and a run with more
# threads than its share of the cores runs several times slower (docs/performance.md, "torch threads").
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_script(script, *args, cwd, timeout=3600):
    """Run `python script args...` in `cwd` (so runs/ and videos/ land there) on CPU; return the CompletedProcess.
    The timeout is twice the longest learning run measured here (FQF's Acrobot test, 1,702 s with three runs on the
    two cores), so a slower CI machine doesn't fail a run that would pass, and a hang still ends within CI's limit."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
SMOKE = [
    "--env-id",
    "BreakoutNoFrameskip-v4",
    "--total-timesteps",
    800,
    "--learning-starts",
    300,
    "--train-frequency",
    2,
    "--buffer-size",
    2000,
    "--target-network-frequency",
    100,
    "--exploration-fraction",
    1.0,
    "--batch-size",  # the code paths of the default 32 in less time (IQN's and FQF's heads run once per fraction)
    8,
]

# CartPole recipe of the learning tests (found by a small sweep with dqn_atari.py): Adam 1e-3, batch 64, target
# copy every 500 transitions, ε 1 -> 0.05 over 16% of 60k transitions.
CARTPOLE = [
    "--env-id",
    "CartPole-v1",
    "--total-timesteps",
    60_000,
    "--learning-starts",
    1000,
    "--buffer-size",
    50_000,
    "--learning-rate",
    1e-3,
    "--batch-size",
    64,
    "--train-frequency",
    4,
    "--target-network-frequency",
    500,
    "--exploration-fraction",
    0.16,
    "--end-e",
    0.05,
    "--eval-episodes",
    10,
]

# Acrobot recipe of the rest-state tests (Dopamine's dqn_acrobot.gin: Adam 1e-3, batch 128, a gradient step every 4
# transitions, target copy every 100): from its hanging start the greedy policy must pump energy into the swing, and a
# greedy policy that prefers one action near rest never does (−500, the time limit). Evaluated at ε = 0.001.
ACROBOT = [
    "--env-id",
    "Acrobot-v1",
    "--total-timesteps",
    50_000,
    "--learning-starts",
    1000,
    "--buffer-size",
    50_000,
    "--learning-rate",
    1e-3,
    "--batch-size",
    128,
    "--train-frequency",
    4,
    "--target-network-frequency",
    100,
    "--exploration-fraction",
    0.2,
    "--end-e",
    0.05,
    "--eval-episodes",
    10,
]


def skewed_bandit():
    """Register (once) a one-step bandit with one action and a constant observation, reward 10 with probability 0.1,
    else 0 (so E[r] = 1 and Q = 1), for the tests of prioritized replay's bias; return its id."""
    import gymnasium as gym
    import numpy as np

    class SkewedBandit(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        action_space = gym.spaces.Discrete(1)

        def __init__(self, render_mode=None):
            self.render_mode = render_mode

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(1, np.float32), {}

        def step(self, action):
            return np.zeros(1, np.float32), 10.0 * (self.np_random.random() < 0.1), True, False, {}

    if "SkewedBandit-v0" not in gym.registry:
        gym.register("SkewedBandit-v0", entry_point=SkewedBandit)
    return "SkewedBandit-v0"


def smoke_test(script, tmp_path, loss_tag, *flags):
    """Train a few hundred Breakout steps with gradient steps; check logs and the saved checkpoint; reload it."""
    out = run_script(script, *SMOKE, "--save-model", "--eval-episodes", 1, "--eval-epsilon", 0.05, *flags, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "250 gradient steps" in out.stdout
    run_dir = only_run_dir(tmp_path)
    scalars = read_scalars(run_dir)
    for tag in [
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/SPS",
        "charts/epsilon",
        loss_tag,
        "losses/q_values",
        "eval/episodic_return",
    ]:
        assert tag in scalars, tag
    assert len(scalars[loss_tag]) == 2  # logged every 100 gradient steps
    checkpoint = run_dir / script.replace(".py", ".pt")
    out = run_script(
        script, "--eval-checkpoint", checkpoint, "--eval-episodes", 1, "--eval-epsilon", 0.05, cwd=tmp_path
    )
    assert out.returncode == 0 and "eval: mean return" in out.stdout, out.stderr
    return run_dir


def eval_returns(tmp_path):
    return [v for _, v in read_scalars(only_run_dir(tmp_path))["eval/episodic_return"]]


def greedy_visited_states(script_module, run_root, env_id="CartPole-v1", num_envs=16, steps=50):
    """Load the one checkpoint under `run_root`/runs and play `env_id` greedily with it; return the network
    and the num_envs × steps observations it visited, as one tensor."""
    import numpy as np
    import torch

    q_network, _ = script_module.load_checkpoint(
        str(next((Path(run_root) / "runs").rglob("*.pt"))), torch.device("cpu")
    )
    envs = script_module.make_env(env_id, num_envs)
    obs, _ = envs.reset(seed=0)
    states = []
    for _ in range(steps):
        states.append(obs)
        obs, *_ = envs.step(q_network(torch.as_tensor(obs)).argmax(1).numpy())
    envs.close()
    return q_network, torch.as_tensor(np.concatenate(states))


@contextmanager
def no_host_sync():
    """Fail on anything in the block that would make a CUDA run wait for the device: reading a device tensor back to
    the host (`.item()`, `.cpu()`, `.tolist()`, `.numpy()`, `bool()`, `int()`, `float()`, and `torch._is_all_true`,
    which `torch.distributions`' argument checks call), and indexing a device tensor with an index tensor that lives
    elsewhere (a host `torch.arange(B)` is a blocking copy per call). Run the code on the "meta" device: it has shapes
    but no data, so it stands in for a GPU on a CPU-only machine. Host tensors (Adam's step counters) may be read."""
    import torch

    def on_device(x):
        return isinstance(x, torch.Tensor) and x.device.type != "cpu"

    def guard_read(name, original):  # a Tensor method or a torch function whose first argument is read back
        def read(x, *args, **kwargs):
            if on_device(x):
                raise AssertionError(f"host sync in the hot path: {name} on {x.device}")
            return original(x, *args, **kwargs)

        return read

    def index_tensors(index):
        items = index if isinstance(index, (tuple, list)) else (index,)
        return [i for i in items if isinstance(i, torch.Tensor)]

    def guard_index(name, original):
        def indexed(self, index, *args):
            for i in index_tensors(index):
                if i.device != self.device:
                    raise AssertionError(
                        f"Tensor.{name}: a tensor on {self.device} indexed by one on {i.device} (a host copy per call)"
                    )
            return original(self, index, *args)

        return indexed

    reads = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")
    patches = [(torch.Tensor, n, guard_read(f"Tensor.{n}", getattr(torch.Tensor, n))) for n in reads]
    patches += [(torch.Tensor, n, guard_index(n, getattr(torch.Tensor, n))) for n in ("__getitem__", "__setitem__")]
    patches += [(torch, n, guard_read(f"torch.{n}", getattr(torch, n))) for n in ("_is_all_true", "_is_any_true")]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def atari_hot_path(module, env_id, loss_fn, make_optimizers=None, steps=3, num_envs=2, **arg_overrides):
    """Run `steps` iterations of an Atari script's hot loop on the "meta" device under `no_host_sync`, as `main` runs
    them, twice: with uniform replay, and with `--prioritized --noisy`. Action selection (at ε = 1, so without its
    one read-back, the actions for the env), replay writes staged on the host and flushed to the device by a sampled
    batch (n-step 3, so the n-step code runs), the loss `loss_fn(q_network, target_network, data)`, which returns the
    loss and the priorities, with its backward pass and optimiser steps, the priority update and the target copy."""
    import numpy as np
    import torch

    device = torch.device("meta")
    envs = module.make_env(env_id, num_envs)
    space = envs.single_observation_space
    atari = module.is_atari(envs)
    for prioritized in (False, True):
        args = module.Args(env_id=env_id, noisy=prioritized, **arg_overrides)
        q_network, target_network = module.QNetwork(envs, args).to(device), module.QNetwork(envs, args).to(device)
        optimizers = make_optimizers(q_network) if make_optimizers else [torch.optim.Adam(q_network.parameters())]
        rb = module.ReplayBuffer(
            1000,
            num_envs,
            space.shape,
            torch.uint8 if atari else torch.float32,
            history=space.shape[0] if atari else 1,
            n_step=3,
            gamma=0.99,
            device=device,
            prioritized=prioritized,
        )
        obs, no = (
            np.zeros((num_envs, *space.shape), dtype=np.uint8 if atari else np.float32),
            np.zeros(num_envs, dtype=bool),
        )
        with no_host_sync():
            for _ in range(steps):
                module.resample_noise(q_network)
                actions = module.select_actions(
                    q_network, obs, 1.0
                )  # ε = 1: its one read-back, for the env, is skipped
                rb.add(obs, actions, no.astype(np.float32), no, no, obs)  # host arrays, as the env returns them
                data = rb.sample(8, 0.5)
                module.resample_noise(q_network, target_network)
                loss, priorities = loss_fn(q_network, target_network, data)
                for optimizer in optimizers:
                    optimizer.zero_grad()
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
                if prioritized:
                    rb.update_priorities(data.indices, priorities)
                for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                    target_param.data.lerp_(param.data, 1.0)
    envs.close()


def evaluate_checkpoint_twice(module, tmp_path, capsys):
    """Save an untrained CartPole network as a checkpoint, then evaluate it twice in-process with `--eval-checkpoint`,
    the same `--seed` and ε = 0.5 (so the evaluation's own random draws matter), with other random draws in between.
    Returns the two printed result lines."""
    import torch

    envs = module.make_env("CartPole-v1", 1)
    args = module.Args(env_id="CartPole-v1")
    path = str(tmp_path / "checkpoint.pt")
    module.save_checkpoint(path, module.QNetwork(envs, args), args)
    envs.close()
    lines = []
    for _ in range(2):
        torch.rand(3)  # what ran before must not change the evaluation
        module.main(module.Args(eval_checkpoint=path, eval_episodes=6, eval_epsilon=0.5, seed=3, cuda=False))
        lines.append(capsys.readouterr().out.strip().splitlines()[-1])
    return lines[0], lines[1]


def run_main(module, *argv, cwd, monkeypatch, capsys):
    """`python <module>.py argv...` in-process (no second interpreter to start), on CPU, in `cwd`. Returns the exit
    status, stdout and stderr."""
    import tyro

    monkeypatch.chdir(cwd)
    try:
        module.main(tyro.cli(module.Args, args=[*map(str, argv), "--no-cuda"]))
        status = 0
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


# put before the flags of a bad-input test, so that a check that fails to reject its input ends in seconds, not 10M
# steps
QUICK = ["--env-id", "CartPole-v1", "--total-timesteps", 50, "--learning-starts", 10]


def assert_refuses_a_runs_file(module, flags, tmp_path, monkeypatch, capsys):
    """`runs` a plain file where the run's folder goes: one line, status 2, before anything is built, and the file
    untouched (TensorBoard's makedirs would raise a traceback)."""
    (tmp_path / "runs").write_text("not a folder")
    code, _, err = run_main(module, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "runs: not a folder this user may write in" in err and "Traceback" not in err, (code, err)
    assert (tmp_path / "runs").read_text() == "not a folder"


def assert_no_warning_when_refused(module, flags, tmp_path, monkeypatch, capsys):
    """A run refused for bad input prints its errors and no warning about the flags (they would not run anyway)."""
    code, _, err = run_main(module, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "error:" in err and "warning:" not in err, (code, err)


def assert_final_evaluation_ends_on_a_signal(module, flags, tmp_path, monkeypatch, capsys):
    """SIGINT as the final evaluation begins (sent by a wrapper of `module.evaluate` when it is given a StopSignal):
    the evaluation ends at its next step, before any episode ends, and the run exits 130 with a line saying so, no
    KeyboardInterrupt traceback, and the previous SIGINT handler back in place."""
    import signal

    evaluate = module.evaluate

    def signalled(*args, **kwargs):
        stop = kwargs.get("stop") or next((a for a in args if isinstance(a, module.StopSignal)), None)
        if stop is not None:
            os.kill(os.getpid(), signal.SIGINT)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(module, "evaluate", signalled)
    handler = signal.getsignal(signal.SIGINT)
    code, out, err = run_main(
        module, *flags, "--eval-episodes", 2, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 130 and "stopped by SIGINT" in out and "Traceback" not in err, (code, out, err)
    assert "eval: mean return" not in out, out  # signalled before its first step, it finished no episode
    assert signal.getsignal(signal.SIGINT) is handler


def assert_one_line_error(result, message, cwd, status=2):
    """The run stopped with `status`, one `error:` line holding `message` and no traceback; input rejected before
    training (status 2) leaves no `runs/` folder behind."""
    code, _, err = result
    assert code == status, (code, err)
    assert message in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    if status == 2:
        assert not (Path(cwd) / "runs").exists(), "nothing may be written before the input is checked"


# bad values of the fields every script has, and the message each must give: np.random.seed takes [0, 2³² − 1] only,
# and the experiment's name names a folder and a file under runs/ (with a '/', torch.save fails after training)
COMMON_BAD_ARGS = [
    (["--seed", -1], "--seed -1: must be in [0, 2³² − 1]"),
    (["--seed", 2**70], f"--seed {2**70}: must be in [0, 2³² − 1]"),
    (["--exp-name", "ablation/lr3e-4", "--save-model"], "--exp-name ablation/lr3e-4: must be a name without '/'"),
]

# bad values of the fields every Atari script has, and the message each must give (CartPole where an env is built)
ATARI_BAD_ARGS = [
    *COMMON_BAD_ARGS,
    (["--env-id", "CartPole-v1", "--num-envs", -2], "--num-envs -2: must be ≥ 1"),
    (["--batch-size", 0], "--batch-size 0: must be in [1, --buffer-size]"),
    (["--batch-size", 10**9], f"--batch-size {10**9}: must be in [1, --buffer-size]"),
    (["--n-step", 0], "--n-step 0: must be ≥ 1"),
    (["--gamma", 1.5], "--gamma 1.5: must be in (0, 1]"),
    (["--eval-episodes", -3], "--eval-episodes -3: must be ≥ 1 with --eval-checkpoint, else ≥ 0"),
    (["--learning-rate", "nan"], "--learning-rate nan: must be > 0 and finite"),
    (["--checkpoint-frequency", 100], "--checkpoint-frequency 100: must be ≥ 0, and > 0 only with --save-model"),
    (["--threads", 0], "--threads 0: must be ≥ 1"),
    (["--eval-checkpoint", "any.pt", "--eval-episodes", 0], "--eval-episodes 0: must be ≥ 1 with --eval-checkpoint"),
    (["--env-id", "CartPole-v1", "--buffer-size", 2, "--batch-size", 2], "--buffer-size 2: must be ≥ 3 for 1 envs"),
    (["--prioritized-replay-alpha", 0], "--prioritized-replay-alpha 0.0: must be in (0, 1]"),
    (["--prioritized-replay-alpha", 1000], "--prioritized-replay-alpha 1000.0: must be in (0, 1]"),
    (["--prioritized-replay-beta", 1.5], "--prioritized-replay-beta 1.5: must be in [0, 1]"),
    (["--noisy-sigma0", -0.1], "--noisy-sigma0 -0.1: must be ≥ 0"),
    # n-step replay draws a slot only once its n steps are stored: below this bound the first draw has none
    # (prioritized: a NaN probability, read as divergence; uniform: a zero or negative modulus and unwritten slots)
    (["--learning-starts", 1, "--n-step", 3, "--prioritized"], "--learning-starts 1: must be ≥ 2 = (n-step − 1)"),
    (["--learning-starts", 7, "--n-step", 3, "--num-envs", 4], "--learning-starts 7: must be ≥ 8 = (n-step − 1)"),
]

CHECKPOINT_KINDS = ["missing", "empty", "truncated", "random", "foreign", "other version"]


def bad_checkpoint(tmp_path, kind, own, foreign):
    """A file that `--eval-checkpoint` must refuse, and the message it must give. `own` and `foreign` are real
    checkpoints of the script under test and of another script; the others are made from them."""
    import torch

    path = tmp_path / f"{kind.replace(' ', '-')}.pt"
    if kind == "foreign":
        return foreign, "is a checkpoint of"
    if kind == "other version":  # this script's checkpoint, with a field this version of Args does not have
        checkpoint = torch.load(own, weights_only=True)
        checkpoint["args"]["no_such_field"] = 1
        torch.save(checkpoint, path)
        return path, "does not fit this version of"
    if kind != "missing":
        data = Path(own).read_bytes()
        path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "random": bytes(range(256)) * 16}[kind])
    return path, "no checkpoint at" if kind == "missing" else "is not a readable checkpoint"


def atari_checkpoint(module, path, env_id="CartPole-v1"):
    """The checkpoint `module` (an Atari script) writes for an untrained network on `env_id`."""
    envs = module.make_env(env_id, 1)
    args = module.Args(env_id=env_id)
    module.save_checkpoint(str(path), module.QNetwork(envs, args), args)
    envs.close()
    return path


# a short CartPole run with a gradient step per transition from step 100: the loss is checked at gradient step 100
DIVERGE = [
    "--env-id",
    "CartPole-v1",
    "--total-timesteps",
    1000,
    "--learning-starts",
    100,
    "--train-frequency",
    1,
    "--buffer-size",
    1000,
    "--learning-rate",
    1e30,
    "--eval-episodes",
    1,
    "--save-model",
    "--threads",
    1,
]


def assert_stops_on_divergence(module, tmp_path, monkeypatch, capsys, loss_name):
    """Adam at rate 1e30 drives the loss to inf/NaN within 100 gradient steps: the run stops at the first check with
    exit status 1 and one line naming the loss, and the saved checkpoint holds the last finite weights and loads."""
    import torch

    result = run_main(module, *DIVERGE, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(result, f"{loss_name} became NaN or infinite by step 200", tmp_path, status=1)
    assert "eval:" not in result[1], "a diverged run is not evaluated"
    path = next((tmp_path / "runs").rglob("*.pt"))
    network = module.load_checkpoint(str(path), torch.device("cpu"))[0]
    assert all(p.isfinite().all() for p in network.parameters())


def run_and_terminate(script, argv, cwd, after="step "):
    """Start `python script argv...`, send SIGTERM once a stdout line starts with `after` (the first progress line,
    some 5 s into training), and return the exit status and the whole stdout."""
    import signal

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / script), *map(str, argv)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(after):
            process.send_signal(signal.SIGTERM)
            break
    lines += process.stdout.readlines()
    return process.wait(timeout=120), "".join(lines)


def poison_loss(monkeypatch, module, name, at_call):
    """Make `module.<name>`, a loss function that returns (loss, ...), add a NaN to the loss's value (not to its
    gradient, so the weights stay finite) at its `at_call`-th call."""
    calls, original = [0], getattr(module, name)

    def poisoned(*args):
        calls[0] += 1
        loss, *extra = original(*args)
        return (loss + float("nan"), *extra) if calls[0] == at_call else (loss, *extra)

    monkeypatch.setattr(module, name, poisoned)


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """A script installs its SIGINT/SIGTERM handlers at start-up; one that then fails in-process (a bad env id) exits
    without restoring them, as a process would. They are put back for the next test."""
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def assert_start_up_signal_keeps_the_checkpoint(module, flags, tmp_path, monkeypatch, capsys, where="make_env"):
    """SIGINT while the run is being built (sent by a wrapper of `module.<where>`): the run does not start training,
    writes its checkpoint and exits 130 with a line saying so, and no KeyboardInterrupt traceback."""
    import signal

    original = getattr(module, where)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, where, signalled)
    try:
        code, out, err = run_main(module, *flags, "--save-model", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    except KeyboardInterrupt:
        pytest.fail("SIGINT raised KeyboardInterrupt: no StopSignal was installed yet")
    assert code == 130 and "stopped by SIGINT at step 0" in out and "Traceback" not in err, (code, out, err)
    assert len(list((tmp_path / "runs").rglob("*.pt"))) == 1
    return out


def assert_machine_is_checked_at_the_start(module, tmp_path, monkeypatch):
    """`--track` without a W&B login and `--capture-video` without an ffmpeg that runs are found by check_args, before
    the run, with one line each; W&B's offline mode and a run without evaluation episodes need neither."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc holding a W&B key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    problems = module.machine_problems(module.Args(track=True, capture_video=True))
    assert len(problems) == 2, problems
    assert problems[0].startswith("--track: no W&B login") and problems[1].startswith("--capture-video: no ffmpeg")
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert module.machine_problems(module.Args(track=True, capture_video=True, eval_episodes=0)) == []
