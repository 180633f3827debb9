"""Tests of ddpg_td3_sac.py: each algorithm's target, actor loss and temperature loss from their definitions, the
tanh-Gaussian log-density, exact truncation handling in the replay, bad input, the dataset round trip, and
learning on Pendulum for each algorithm."""

import numpy as np
import pytest
import torch
from conftest import (
    CHECKPOINT_KINDS,
    COMMON_BAD_ARGS,
    assert_final_evaluation_ends_on_a_signal,
    assert_one_line_error,
    assert_refuses_a_runs_file,
    atari_checkpoint,
    bad_checkpoint,
    eval_returns,
    no_host_sync,
    only_run_dir,
    poison_loss,
    read_scalars,
    run_and_terminate,
    run_main,
    run_script,
)

import ddpg_td3_sac as ac
import dqn_atari as dqn


def nets(algo, seed=0):
    torch.manual_seed(seed)
    envs = ac.make_env("Pendulum-v1", 1)  # actions in [-2, 2]: scale 2, bias 0
    actor = ac.Actor(envs, stochastic=algo == "sac")
    actor_target = ac.Actor(envs, stochastic=False)
    qf_targets = [ac.QNetwork(envs) for _ in range(1 if algo == "ddpg" else 2)]
    envs.close()
    return actor, actor_target, qf_targets


def test_ddpg_target_is_the_target_critic_at_the_target_action():
    actor, actor_target, qf_targets = nets("ddpg")
    s = torch.randn(16, 3)
    got = ac.next_state_value(ac.Args(algo="ddpg"), actor, actor_target, qf_targets, s, alpha=0.0)
    assert torch.allclose(got, qf_targets[0](s, actor_target(s)))


def test_td3_target_is_the_smaller_critic_at_a_smoothed_clipped_action():
    actor, actor_target, qf_targets = nets("td3")
    s = torch.randn(4096, 3)
    args = ac.Args(algo="td3", policy_noise=0.2, noise_clip=0.5)
    torch.manual_seed(1)
    got = ac.next_state_value(args, actor, actor_target, qf_targets, s, alpha=0.0)
    torch.manual_seed(1)  # the same noise draw, rebuilt from the definition
    eps = (torch.randn(4096, 1) * 0.2).clamp(-0.5, 0.5) * 2.0  # in units of the half-width 2
    a = (actor_target(s) + eps).clamp(-2, 2)
    expected = torch.min(qf_targets[0](s, a), qf_targets[1](s, a))
    assert torch.allclose(got, expected, atol=1e-6)
    assert (got <= qf_targets[0](s, a) + 1e-6).all() and (got <= qf_targets[1](s, a) + 1e-6).all()
    # no smoothing noise: the clipped double-Q at the target action itself
    args = ac.Args(algo="td3", policy_noise=0.0)
    got = ac.next_state_value(args, actor, actor_target, qf_targets, s, alpha=0.0)
    a = actor_target(s)
    assert torch.allclose(got, torch.min(qf_targets[0](s, a), qf_targets[1](s, a)), atol=1e-6)


def test_sac_target_is_the_soft_value_of_the_current_policy():
    actor, _, qf_targets = nets("sac")
    s = torch.randn(64, 3)
    torch.manual_seed(2)
    got = ac.next_state_value(ac.Args(algo="sac"), actor, None, qf_targets, s, alpha=0.3)
    torch.manual_seed(2)
    a, log_prob = actor.sample(s)
    assert torch.allclose(got, torch.min(qf_targets[0](s, a), qf_targets[1](s, a)) - 0.3 * log_prob, atol=1e-5)


def test_critic_loss_masks_only_termination():
    """y = r + γ (1 − terminated) V(s'), and the loss is the sum of each critic's mean squared error, each returned
    for `losses/qf1_loss` and `losses/qf2_loss`. Mutation run: critic 1's term returned as the sum."""
    actor, actor_target, qfs = nets("td3")
    data = ac.ReplayBatch(
        obs=torch.randn(5, 3),
        actions=torch.rand(5, 1) * 4 - 2,
        rewards=torch.arange(5.0),
        next_obs=torch.randn(5, 3),
        terminated=torch.tensor([0, 1, 0, 1, 0.0]),
    )
    next_value = torch.full((5,), 10.0)
    loss, losses, q1 = ac.critic_loss(ac.Args(gamma=0.9), qfs, data, next_value)
    y = torch.arange(5.0) + 0.9 * torch.tensor([10, 0, 10, 0, 10.0])
    expected = [((qf(data.obs, data.actions) - y) ** 2).mean() for qf in qfs]
    assert torch.allclose(loss, sum(expected)) and torch.allclose(q1, qfs[0](data.obs, data.actions))
    assert len(losses) == 2 and all(torch.allclose(a, b) for a, b in zip(losses, expected))


def test_tanh_gaussian_log_prob_matches_a_density_estimate():
    """log π(a|s) from the change of variables equals the log of a histogram density of many sampled actions."""
    actor, _, _ = nets("sac")
    s = torch.randn(1, 3).expand(400_000, 3)
    with torch.no_grad():
        a, log_prob = actor.sample(s)
    a, log_prob = a[:, 0].numpy(), log_prob.numpy()
    counts, edges = np.histogram(a, bins=40, range=(-2, 2))
    density = counts / (len(a) * (edges[1] - edges[0]))
    centres = (edges[:-1] + edges[1:]) / 2
    order = np.argsort(a)
    predicted = np.exp(np.interp(centres, a[order], log_prob[order]))
    well_sampled = (counts > 2000) & (
        np.abs(centres) < 1.9
    )  # a bin's average is not its centre's value where the density bends fast
    assert well_sampled.sum() > 10
    assert np.allclose(density[well_sampled], predicted[well_sampled], rtol=0.05), (
        density[well_sampled],
        predicted[well_sampled],
    )
    assert np.all(np.abs(a) <= 2)


def test_sac_log_std_is_clamped_to_the_sac_authors_range():
    """log σ(s) is clamped to [−20, 2] (haarnoja/sac, Tianshou): a head output of −10 is kept, so with μ = 0
    the sampled u ≈ 0 and E[log π] = Σ_k (−½ − log σ_k − ½ log 2π − log scale_k); an output of 5 acts as 2.
    Mutation run: the clamp at [−5, 2] (E[log π] off by 5)."""
    actor, _, _ = nets("sac")
    s = torch.randn(100_000, 3)
    with torch.no_grad():
        for layer in (actor.mean, actor.log_std):
            layer.weight.zero_()
            layer.bias.zero_()
        actor.log_std.bias.fill_(-10.0)
        _, log_prob = actor.sample(s)
        expected = -0.5 + 10.0 - 0.5 * np.log(2 * np.pi) - np.log(2.0)  # Pendulum: one action, scale 2
        assert abs(log_prob.mean().item() - expected) < 0.02, (log_prob.mean().item(), expected)
        draws = []
        for log_std in (5.0, 2.0):
            actor.log_std.bias.fill_(log_std)
            torch.manual_seed(0)
            draws.append(actor.sample(s))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])


def test_actor_losses():
    for algo in ["ddpg", "td3"]:
        actor, _, qfs = nets(algo)
        s = torch.randn(32, 3)
        loss, log_prob = ac.actor_loss(ac.Args(algo=algo), actor, qfs, s, alpha=0.0)
        assert log_prob is None and torch.allclose(loss, -qfs[0](s, actor(s)).mean())
    actor, _, qfs = nets("sac")
    torch.manual_seed(3)
    loss, log_prob = ac.actor_loss(ac.Args(algo="sac"), actor, qfs, s, alpha=0.5)
    torch.manual_seed(3)
    a, lp = actor.sample(s)
    assert torch.allclose(loss, (0.5 * lp - torch.min(qfs[0](s, a), qfs[1](s, a))).mean(), atol=1e-6)


def test_alpha_loss_moves_alpha_towards_the_target_entropy():
    """With entropy −log π below the target H̄, gradient descent on J(α) raises α; above it, lowers α."""
    for log_prob, direction in [(torch.full((10,), 2.0), 1), (torch.full((10,), -3.0), -1)]:
        log_alpha = torch.tensor(0.0, requires_grad=True)
        loss = ac.alpha_loss(log_alpha, log_prob, target_entropy=-1.0)
        assert loss.item() == pytest.approx(-(log_prob.mean().item() - 1.0))  # −α (log π + H̄) at α = 1
        loss.backward()
        assert -log_alpha.grad.item() * direction > 0


def test_explore_stays_in_bounds():
    actor, _, _ = nets("td3")
    a = ac.explore(ac.Args(algo="td3", exploration_noise=5.0), actor, torch.randn(1000, 3))
    assert a.abs().max() <= 2 and a.abs().max() == 2  # large noise is clipped at the bounds


def test_replay_keeps_the_true_last_observation_and_the_flags(tmp_path):
    """Pendulum truncates every 200 steps: at a truncation, s' must be the final observation (not the reset one),
    terminated must be 0; at every other step s' is the next step's s."""
    envs = ac.make_env("Pendulum-v1", 2)
    rb = ac.ReplayBuffer(1000, 3, 1, torch.device("cpu"))
    obs, _ = envs.reset(seed=0)
    finals = []
    for t in range(210):
        actions = np.random.uniform(-2, 2, (2, 1)).astype(np.float32)
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        real = next_obs.copy()
        if truncations.any():
            real[truncations] = np.stack(infos["final_obs"][truncations])
            finals.append((t, real.copy(), next_obs.copy()))
        rb.add(
            torch.as_tensor(obs),
            torch.as_tensor(actions),
            torch.as_tensor(rewards, dtype=torch.float32),
            torch.as_tensor(terminations, dtype=torch.float32),
            torch.as_tensor(real),
        )
        obs = next_obs
    envs.close()
    assert len(finals) == 1 and finals[0][0] == 199
    t, real, reset_obs = finals[0]
    for e in range(2):
        slot = 2 * t + e
        assert torch.allclose(rb.next_obs[slot], torch.as_tensor(real[e])) and rb.terminated[slot] == 0
        assert not torch.allclose(rb.next_obs[slot], torch.as_tensor(reset_obs[e]))
        assert torch.allclose(
            rb.obs[slot + 2], torch.as_tensor(reset_obs[e])
        )  # the next episode starts from the reset obs
    assert torch.allclose(rb.next_obs[: 2 * 199], rb.obs[2 : 2 * 200])  # inside episodes s' is the next s
    assert rb.count == 420 and rb.sample(8).obs.shape == (8, 3)


QUICK = ["--env-id", "Pendulum-v1", "--total-timesteps", 50, "--learning-starts", 10]  # a missed check ends in seconds


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--env-id", "CartPole-v1"], "continuous (Box) action space"),
        (["--env-id", "Hopper-v2"], "moved to the gymnasium-robotics project"),
        (["--env-id", "NoSuchEnv-v0"], "doesn't exist"),
        (["--num-envs", 0], "--num-envs 0: must be ≥ 1"),
        (["--num-envs", -1], "--num-envs -1: must be ≥ 1"),
        (["--batch-size", 0], "--batch-size 0: must be in [1, --buffer-size]"),
        (["--batch-size", 10**9], f"--batch-size {10**9}: must be in [1, --buffer-size]"),
        (["--env-id", "MinAtar/Breakout-v0"], "MinAtar/Breakout-v0: MinAtar's actions are discrete"),
        (["--gamma", 1.5], "--gamma 1.5: must be in (0, 1]"),
        (["--tau", 0], "--tau 0.0: must be in (0, 1]"),
        (["--q-lr", -1], "--q-lr -1.0: must be > 0 and finite"),
        (["--policy-frequency", 0], "--policy-frequency 0: must be ≥ 1"),
        (
            ["--eval-episodes", -3],
            "--eval-episodes -3: must be ≥ 1 with --eval-checkpoint or --eval-frequency, else ≥ 0",
        ),
        (
            ["--eval-checkpoint", "any.pt", "--eval-episodes", 0],
            "--eval-episodes 0: must be ≥ 1 with --eval-checkpoint",
        ),
        (["--checkpoint-frequency", 100], "--checkpoint-frequency 100: must be ≥ 0, and > 0 only with --save-model"),
        *COMMON_BAD_ARGS,
        (["--threads", 0], "--threads 0: must be ≥ 1"),
        (["--buffer-size", 10**13], "lower --buffer-size"),
        (["--eval-frequency", -1], "--eval-frequency -1: must be ≥ 0"),
        (
            ["--eval-frequency", 10, "--eval-episodes", 0],
            "--eval-episodes 0: must be ≥ 1 with --eval-checkpoint or --eval-frequency",
        ),
        (["--save-dataset", "x/replay-v0"], "Malformed dataset ID: x/replay-v0"),
    ],
)
def test_bad_input_fails_fast_with_one_line(tmp_path, monkeypatch, capsys, flags, message):
    """Exit status 2, one `error:` line (Hopper-v2 also prints gymnasium's deprecation warning), no `runs/` folder.
    Mutations run: the num_envs and batch_size checks dropped (IndexError traceback; NaN losses), ImportError not
    caught (traceback)."""
    assert_one_line_error(
        run_main(ac, *QUICK, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys), message, tmp_path
    )


def test_runs_a_plain_file_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """Mutation run: the writable_folder check dropped from check_args (TensorBoard's FileExistsError traceback)."""
    assert_refuses_a_runs_file(ac, QUICK, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_bad_checkpoint_fails_with_one_line(tmp_path, monkeypatch, capsys, kind):
    """A damaged file, a dqn_atari.py checkpoint, or one of another version of this script: one line, exit status 2."""
    envs = ac.make_env("Pendulum-v1", 1)
    args = ac.Args(env_id="Pendulum-v1")
    own = tmp_path / "own.pt"
    ac.save_checkpoint(str(own), ac.Actor(envs, True), torch.nn.ModuleList([ac.QNetwork(envs)]), args)
    path, message = bad_checkpoint(tmp_path, kind, own, atari_checkpoint(dqn, tmp_path / "dqn.pt"))
    result = run_main(ac, "--eval-checkpoint", path, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(result, message, tmp_path)


@pytest.mark.parametrize(
    "algo,rates", [("td3", ["--learning-rate", 1e6]), ("sac", ["--learning-rate", 1e30, "--q-lr", 1e30])]
)
def test_divergence_stops_the_run_and_keeps_the_last_finite_weights(tmp_path, monkeypatch, capsys, algo, rates):
    """TD3 at rate 1e6 (which used to end with `eval: mean return nan`, exit 0) and SAC at 1e30 stop at the first check,
    after 100 gradient steps, with exit status 1; the checkpoint holds finite weights. Mutations run: the check dropped
    (exit 0), the diverged networks saved."""
    flags = [
        "--algo",
        algo,
        "--env-id",
        "Pendulum-v1",
        "--total-timesteps",
        1000,
        "--learning-starts",
        100,
        "--save-model",
        "--eval-episodes",
        1,
        *rates,
    ]
    result = run_main(ac, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(result, "became NaN or infinite by step 200", tmp_path, status=1)
    actor, _ = ac.load_checkpoint(str(next((tmp_path / "runs").rglob("*.pt"))), torch.device("cpu"))
    assert all(p.isfinite().all() for p in actor.parameters())


def test_nan_in_the_critic_loss_stops_the_run(tmp_path, monkeypatch, capsys):
    """A NaN added to the critic loss's value (not its gradient) at gradient step 100, where it is checked; the episode
    that finished before it still goes to `--save-dataset`. Mutations run: the losses left out of the check (exit 0);
    the dataset written only when nothing failed (no dataset)."""
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    poison_loss(monkeypatch, ac, "critic_loss", at_call=100)
    flags = ["--env-id", "Pendulum-v1", "--total-timesteps", 400, "--learning-starts", 100, "--eval-episodes", 0]
    flags += ["--save-dataset", "pendulum/diverged-v0"]
    result = run_main(ac, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(result, "qf_loss became NaN or infinite by step 200", tmp_path, status=1)
    assert minari.load_dataset("pendulum/diverged-v0").total_episodes == 1  # the 200-step episode ended at step 200


def test_sigterm_writes_the_checkpoint_and_the_dataset(tmp_path, monkeypatch):
    """SIGTERM mid-run: exit status 143, a checkpoint that loads and a dataset that Minari reads, holding the episodes
    that finished. Mutation run: no handler (status −15, neither file)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    flags = [
        "--env-id",
        "Pendulum-v1",
        "--total-timesteps",
        10**7,
        "--learning-starts",
        10**6,
        "--save-model",
        "--save-dataset",
        "pendulum/sigterm-v0",
        "--threads",
        1,
    ]
    returncode, out = run_and_terminate("ddpg_td3_sac.py", flags, cwd=tmp_path)
    assert returncode == 143 and "stopped by SIGTERM at step" in out, out
    ac.load_checkpoint(str(next((tmp_path / "runs").rglob("*.pt"))), torch.device("cpu"))
    import minari

    dataset = minari.load_dataset("pendulum/sigterm-v0")
    assert dataset.total_episodes >= 1 and dataset.total_steps == 200 * dataset.total_episodes


def test_save_dataset_with_no_finished_episode_fails(tmp_path, monkeypatch, capsys):
    """Mutation run: the empty-dataset check dropped (an empty dataset written, exit 0)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    flags = [
        "--env-id",
        "Pendulum-v1",
        "--total-timesteps",
        150,
        "--learning-starts",
        100,
        "--save-dataset",
        "pendulum/none-v0",
    ]
    result = run_main(ac, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(result, "no training episode finished", tmp_path, status=1)
    assert not (tmp_path / "minari").exists() or not any((tmp_path / "minari").rglob("*.json"))


SMOKE = [
    "--env-id",
    "Hopper-v5",
    "--total-timesteps",
    700,
    "--learning-starts",
    300,
    "--eval-episodes",
    1,
    "--save-model",
]


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_smoke_hopper(tmp_path, algo):
    out = run_script("ddpg_td3_sac.py", "--algo", algo, *SMOKE, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "400 gradient steps" in out.stdout  # one per transition after learning_starts
    run_dir = only_run_dir(tmp_path)
    scalars = read_scalars(run_dir)
    for tag in [
        "charts/episodic_return",
        "charts/SPS",
        "losses/qf1_loss",
        "losses/q_values",
        "losses/actor_loss",
        "eval/episodic_return",
    ]:
        assert tag in scalars, tag
    assert len(scalars["losses/qf1_loss"]) == 4  # logged every 100 gradient steps
    assert ("losses/qf2_loss" in scalars) == (algo != "ddpg")  # each critic's own loss (DDPG has one)
    assert ("losses/alpha" in scalars) == (algo == "sac")  # only SAC has a temperature
    if algo == "sac":  # α is autotuned: it moved off 0.2
        assert scalars["losses/alpha"][-1][1] != pytest.approx(0.2, abs=1e-4)
    out = run_script(
        "ddpg_td3_sac.py", "--eval-checkpoint", run_dir / "ddpg_td3_sac.pt", "--eval-episodes", 1, cwd=tmp_path
    )
    assert out.returncode == 0 and "eval: mean return" in out.stdout, out.stderr


def test_save_dataset_round_trip(tmp_path, monkeypatch):
    """Hopper falls over under random actions, so episodes end by termination; every finished episode, its step
    count and its flags come back from minari.load_dataset, and the dataset recreates the env."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    out = run_script(
        "ddpg_td3_sac.py",
        "--algo",
        "td3",
        "--env-id",
        "Hopper-v5",
        "--total-timesteps",
        500,
        "--learning-starts",
        400,
        "--eval-episodes",
        0,
        "--save-dataset",
        "hopper/test-v0",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr  # Minari's metadata warnings: the script passes what they ask for
    lengths = [int(v) for _, v in read_scalars(only_run_dir(tmp_path))["charts/episodic_length"]]
    import minari

    dataset = minari.load_dataset("hopper/test-v0")
    assert dataset.total_episodes == len(lengths) > 3 and dataset.total_steps == sum(lengths)
    for episode, length in zip(dataset.iterate_episodes(), lengths):
        assert len(episode.actions) == length and len(episode.observations) == length + 1
        assert episode.terminations[-1] and not episode.terminations[:-1].any() and not episode.truncations.any()
    assert dataset.recover_environment().spec.id == "Hopper-v5"
    out = run_script(
        "ddpg_td3_sac.py",
        "--env-id",
        "Hopper-v5",
        "--total-timesteps",
        10,
        "--save-dataset",
        "hopper/test-v0",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "already exists" in out.stderr


def test_eval_frequency_logs_the_learning_curve_and_leaves_training_alone(tmp_path, monkeypatch, capsys):
    """`--eval-frequency 150` on 450 SAC steps: `eval/mean_return` at steps 150 and 300, then the final evaluation's
    mean at 450 as the last point, and the training (returns and losses) is the same as without the evaluations.
    Mutations run: the evaluation draws from the stochastic policy (the training changed); the curve also evaluated
    at the last step (two points at 450)."""
    flags = [
        "--algo",
        "sac",
        "--env-id",
        "Pendulum-v1",
        "--total-timesteps",
        450,
        "--learning-starts",
        100,
        "--eval-episodes",
        2,
    ]
    scalars = {}
    for name, extra in [("plain", []), ("curve", ["--eval-frequency", 150])]:
        (tmp_path / name).mkdir()
        status, out, err = run_main(ac, *flags, *extra, cwd=tmp_path / name, monkeypatch=monkeypatch, capsys=capsys)
        assert status == 0, err
        scalars[name] = read_scalars(only_run_dir(tmp_path / name))
    curve = scalars["curve"]["eval/mean_return"]
    assert [step for step, _ in curve] == [150, 300, 450]
    final = [v for _, v in scalars["curve"]["eval/episodic_return"]]
    assert curve[-1][1] == pytest.approx(np.mean(final), rel=1e-5)
    assert "eval/mean_return" not in scalars["plain"]
    for tag in ["charts/episodic_return", "losses/qf1_loss", "losses/actor_loss"]:
        assert scalars["curve"][tag] == scalars["plain"][tag], tag
    progress = [line for line in out.splitlines() if line.startswith("step ")]
    assert f"eval {curve[1][1]:.1f}" in progress[-1]  # the last progress line shows the latest evaluation


def test_eval_checkpoint_saves_its_episodes_as_a_dataset(tmp_path, monkeypatch):
    """`--eval-checkpoint ... --save-dataset`: the dataset holds the evaluation's episodes, with their returns, and the
    reference scores: the given expert return and Minari's measured random return. Mutation run: the reference
    return not passed to Minari."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    out = run_script(
        "ddpg_td3_sac.py",
        "--algo",
        "td3",
        "--env-id",
        "Hopper-v5",
        "--total-timesteps",
        400,
        "--learning-starts",
        350,
        "--eval-episodes",
        0,
        "--save-model",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    out = run_script(
        "ddpg_td3_sac.py",
        "--eval-checkpoint",
        next((tmp_path / "runs").rglob("*.pt")),
        "--eval-episodes",
        4,
        "--save-dataset",
        "hopper/ckpt-v0",
        "--dataset-ref-max-score",
        3234.3,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    returns = eval(out.stdout.split("episodes: ")[1].splitlines()[0])
    import minari

    dataset = minari.load_dataset("hopper/ckpt-v0")
    assert dataset.total_episodes == 4
    assert sorted(float(e.rewards.sum()) for e in dataset.iterate_episodes()) == pytest.approx(sorted(returns))
    for episode in dataset.iterate_episodes():
        assert len(episode.observations) == len(episode.actions) + 1 and (
            episode.terminations[-1] or episode.truncations[-1]
        )
    metadata = dataset.storage.metadata
    assert metadata["ref_max_score"] == 3234.3 and -100 < metadata["ref_min_score"] < 100  # random play falls at once


def test_evaluation_records_only_the_first_episode_of_each_env():
    """With a recorder, `evaluate` keeps the first episode of each env and none that an env starts after it (the
    vector env resets at once). Two of six envs push the cart hard and fall in 3 steps, restarting several times while
    the others last 20-30 steps. Mutation run: every env's steps recorded (26 episodes)."""

    def actor(obs):
        return torch.where(torch.arange(len(obs))[:, None] < 2, 3.0, 0.0).expand(len(obs), 1)

    recorder = ac.EpisodeRecorder()
    returns = ac.evaluate(
        actor, ac.Args(env_id="InvertedPendulum-v5", eval_episodes=6, seed=1), torch.device("cpu"), recorder=recorder
    )
    assert len(recorder.episodes) == 6 and sorted(len(e["actions"]) for e in recorder.episodes)[:2] == [3, 3]
    assert sorted(sum(e["rewards"]) for e in recorder.episodes) == sorted(returns)
    for episode in recorder.episodes:
        assert len(episode["observations"]) == len(episode["actions"]) + 1 and episode["terminations"][-1]


# Pendulum recipe: 1k random transitions, then one update per transition; SAC and TD3 as their defaults
PENDULUM = ["--env-id", "Pendulum-v1", "--learning-starts", 1000, "--eval-episodes", 10]
# measured at these budgets, seeds 1-3: DDPG −131, −122.5, −132.4; TD3 −134, −122.1, −134.4; SAC −132, −119.6, −131.3
BUDGET = {"ddpg": 12_000, "td3": 16_000, "sac": 8_000}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_learns_pendulum(tmp_path, algo):
    out = run_script("ddpg_td3_sac.py", "--algo", algo, *PENDULUM, "--total-timesteps", BUDGET[algo], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    returns = eval_returns(tmp_path)
    print(f"{algo}: eval mean {np.mean(returns):.1f}")
    assert len(returns) == 10 and np.mean(returns) >= -400, returns  # random play scores about −1200


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_hot_path_has_no_host_sync(algo):
    """Exploration, replay and every update (critics, actor, temperature, targets) on the "meta" device, standing in
    for CUDA (see no_host_sync). Mutation run: SAC's Gaussian through torch.distributions.Normal, which validates its
    arguments, as the script had it before."""
    device = torch.device("meta")
    args = ac.resolve_defaults(ac.Args(algo=algo))
    actor, actor_target, qf_targets = (
        x.to(device) if not isinstance(x, list) else torch.nn.ModuleList(x).to(device) for x in nets(algo)
    )
    qfs = torch.nn.ModuleList(q for q in nets(algo, seed=1)[2]).to(device)
    log_alpha = torch.zeros((), device=device, requires_grad=True)
    optimizers = [torch.optim.Adam(m.parameters()) for m in (qfs, actor)] + [torch.optim.Adam([log_alpha])]
    rb = ac.ReplayBuffer(100, 3, 1, device)
    obs = torch.zeros(2, 3, device=device)
    with no_host_sync():
        for step in range(4):
            actions = ac.explore(args, actor, obs)
            rb.add(obs, actions, obs[:, 0], obs[:, 1], obs)
            data = rb.sample(8)
            alpha = log_alpha.detach().exp()
            next_value = ac.next_state_value(args, actor, actor_target, qf_targets, data.next_obs, alpha)
            qf_loss, _, _ = ac.critic_loss(args, qfs, data, next_value)
            optimizers[0].zero_grad()
            qf_loss.backward()
            optimizers[0].step()
            policy_loss, log_prob = ac.actor_loss(args, actor, qfs, data.obs, alpha)
            optimizers[1].zero_grad()
            policy_loss.backward()
            optimizers[1].step()
            if algo == "sac":
                temperature_loss = ac.alpha_loss(log_alpha, log_prob, -1.0)
                optimizers[2].zero_grad()
                temperature_loss.backward()
                optimizers[2].step()
            ac.soft_update(qf_targets, qfs, args.tau)
            ac.soft_update(actor_target, actor, args.tau)


def run_main_counting(monkeypatch, tmp_path, **overrides):
    """Run main in-process on Pendulum-v1, recording at which critic step each actor update and each target update
    happened, and the temperature α at each temperature update."""
    monkeypatch.chdir(tmp_path)
    critic_steps, actor_updates, target_updates, alphas = [0], [], [], []
    critic_loss, actor_loss, soft_update, alpha_loss = ac.critic_loss, ac.actor_loss, ac.soft_update, ac.alpha_loss

    def counted_critic_loss(*a, **k):
        critic_steps[0] += 1
        return critic_loss(*a, **k)

    def counted_actor_loss(*a, **k):
        actor_updates.append(critic_steps[0])
        return actor_loss(*a, **k)

    def counted_soft_update(target, source, tau):
        target_updates.append((critic_steps[0], "critic" if isinstance(source, torch.nn.ModuleList) else "actor"))
        return soft_update(target, source, tau)

    def recorded_alpha_loss(log_alpha, *a):
        alphas.append(log_alpha.exp().item())
        return alpha_loss(log_alpha, *a)

    monkeypatch.setattr(ac, "critic_loss", counted_critic_loss)
    monkeypatch.setattr(ac, "actor_loss", counted_actor_loss)
    monkeypatch.setattr(ac, "soft_update", counted_soft_update)
    monkeypatch.setattr(ac, "alpha_loss", recorded_alpha_loss)
    args = ac.Args(
        env_id="Pendulum-v1",
        total_timesteps=60,
        learning_starts=20,
        batch_size=8,
        buffer_size=100,
        eval_episodes=0,
        cuda=False,
        **overrides,
    )
    ac.main(args)
    return critic_steps[0], actor_updates, target_updates, alphas


def test_td3_delays_the_actor_and_target_updates(monkeypatch, tmp_path):
    """TD3: one actor update and one update of each target per `policy_frequency` = 2 critic steps, after the critic
    steps 2, 4, 6, ... Mutations run: policy_frequency 1 for TD3, and the targets updated after every critic step."""
    critic_steps, actor_updates, target_updates, _ = run_main_counting(monkeypatch, tmp_path, algo="td3")
    assert critic_steps == 40
    assert actor_updates == list(range(2, 41, 2))
    assert target_updates == [(k, kind) for k in range(2, 41, 2) for kind in ("critic", "actor")]


def test_sac_autotuned_temperature_starts_at_one(monkeypatch, tmp_path):
    """With --autotune, α starts at 1 (log α = 0), as CleanRL and softlearning. Mutation run: the old start at 0.2."""
    critic_steps, actor_updates, target_updates, alphas = run_main_counting(monkeypatch, tmp_path, algo="sac")
    assert critic_steps == 40 and actor_updates == list(range(1, 41))
    assert alphas[0] == 1.0 and 0.9 < alphas[-1] < 1.0, alphas  # α falls from 1 while the entropy is above −|A|
    assert [k for k, kind in target_updates] == list(range(1, 41)) and {kind for _, kind in target_updates} == {
        "critic"
    }


def test_a_signal_during_the_final_evaluation_ends_it_cleanly(tmp_path, monkeypatch, capsys):
    """Mutation run: the final evaluation without its StopSignal (it runs to its end and exits 0)."""
    assert_final_evaluation_ends_on_a_signal(ac, QUICK, tmp_path, monkeypatch, capsys)


def test_save_dataset_into_a_folder_that_cannot_be_written_is_refused_at_the_start(tmp_path, monkeypatch, capsys):
    """Mutation run: the folder check dropped (Minari's makedirs raises FileExistsError, a traceback)."""
    (tmp_path / "minari").write_text("a file where Minari's folder goes")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    result = run_main(
        ac, *QUICK, "--save-dataset", "pendulum/test-v0", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys
    )
    assert_one_line_error(
        result, f"--save-dataset: {tmp_path / 'minari'} is not a folder this user may write in", tmp_path
    )


def test_a_dataset_id_taken_during_the_run_keeps_the_episodes_under_another(tmp_path, monkeypatch, capsys):
    """Two runs started together both pass the start-up check of their --save-dataset id; the one that ends second
    writes its episodes under the id with a random suffix, and says so. (The start-up check is stubbed here, as the
    race would.) Mutation run: the id written as given (exit 1, "already exists", the episodes lost)."""
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    flags = ["--env-id", "Pendulum-v1", "--total-timesteps", 400, "--learning-starts", 400, "--eval-episodes", 0]
    first = run_main(
        ac, *flags, "--save-dataset", "pendulum/race-v0", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys
    )
    assert first[0] == 0, first
    monkeypatch.setattr(ac, "check_dataset_id", lambda dataset_id: None)
    code, out, err = run_main(
        ac, *flags, "--save-dataset", "pendulum/race-v0", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys
    )
    (other,) = set(minari.list_local_datasets()) - {"pendulum/race-v0"}
    assert code == 0 and f"another run wrote pendulum/race-v0 meanwhile; writing {other}" in err, (code, err)
    assert other.startswith("pendulum/race-") and minari.load_dataset(other).total_episodes == 2


def test_mujoco_warns_once_however_many_envs_are_made(capfd):
    """HalfCheetah's model carries a deprecated attribute that MuJoCo's compiler reports at every load: 31 times for
    a run with 30 evaluation episodes. Mutation run: MuJoCo's own printer (6 lines here)."""
    import mujoco

    mujoco.set_mju_user_warning(None)  # as in a fresh process
    for _ in range(3):
        ac.make_env("HalfCheetah-v5", 2).close()
    assert capfd.readouterr().err.count("settotalmass") == 1
