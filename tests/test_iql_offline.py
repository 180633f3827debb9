"""Tests of iql_offline.py: the expectile loss from its definition and its minimiser, the D4RL-style hdf5 and the
Minari loaders, D2RL, the bonus models, every flag combination, bad input, and learning from a mixed-quality
Pendulum dataset against the dataset's mean and behaviour cloning."""

import itertools
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import (
    CHECKPOINT_KINDS,
    COMMON_BAD_ARGS,
    assert_final_evaluation_ends_on_a_signal,
    assert_one_line_error,
    assert_refuses_a_runs_file,
    assert_start_up_signal_keeps_the_checkpoint,
    bad_checkpoint,
    eval_returns,
    no_host_sync,
    only_run_dir,
    read_scalars,
    run_and_terminate,
    run_main,
    run_script,
)

import ddpg_td3_sac as ac
import iql_offline as iql
from test_qrdqn_atari import example_inputs, loss_by_definition


def test_expectile_loss_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    diff = torch.randn(1000, generator=g, dtype=torch.float64)
    for tau in [0.1, 0.5, 0.7, 0.9]:
        expected = np.mean([abs(tau - (d < 0)) * d**2 for d in diff.tolist()])
        assert iql.expectile_loss(diff, tau).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kappa", [0.0, 1.0, 2.0])
def test_quantile_huber_loss_matches_the_definition(kappa):
    """`--distributional`'s loss: the batch's mean of QR-DQN's per-sample loss, its value and its written-out
    gradient those of the definition, in float64."""
    quantiles, targets, taus = example_inputs(per_sample_taus=False)
    expected = loss_by_definition(quantiles, targets, taus, kappa).mean()
    assert iql.quantile_huber_loss(quantiles, targets, taus, kappa).item() == pytest.approx(expected.item(), rel=1e-12)
    grads = []
    for fn in [iql.quantile_huber_loss, lambda *inputs: loss_by_definition(*inputs).mean()]:
        theta = quantiles.clone().requires_grad_()
        grads.append(torch.autograd.grad(fn(theta, targets, taus, kappa), theta)[0])
    assert torch.allclose(grads[0], grads[1], rtol=1e-12, atol=1e-15), grads


@pytest.mark.parametrize("tau", [0.5, 0.7, 0.9, 0.99])
def test_expectile_loss_minimiser_is_the_expectile(tau):
    """The τ-expectile e of y solves τ E[(y − e)+] = (1 − τ) E[(e − y)+]; gradient descent on v must land on it."""
    y = torch.distributions.Gamma(2.0, 1.0).sample((20_000,)).double()  # skewed, so expectiles differ from quantiles
    low, high = y.min().item(), y.max().item()
    for _ in range(100):  # bisection on the first-order condition gives the expectile independently
        e = (low + high) / 2
        if tau * (y - e).clamp(min=0).mean() > (1 - tau) * (e - y).clamp(min=0).mean():
            low = e
        else:
            high = e
    v = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([v], lr=0.05)
    for _ in range(3000):
        optimizer.zero_grad()
        iql.expectile_loss(y - v, tau).backward()
        optimizer.step()
    assert v.item() == pytest.approx(e, abs=1e-2)
    if tau == 0.5:
        assert e == pytest.approx(y.mean().item(), abs=1e-6)
    assert tau < 0.6 or e > y.mean().item() + 0.3  # upper expectiles lie above the mean


def write_hdf5(path, with_next_obs):
    """Two episodes: one ends by termination at step 3, one by timeout at step 7; then 2 steps of an unfinished one.
    Observation t is [t, t], so every next observation can be checked by value."""
    import h5py

    obs = np.repeat(np.arange(10, dtype=np.float32)[:, None], 3, 1)
    terminals = np.zeros(10, dtype=bool)
    timeouts = np.zeros(10, dtype=bool)
    terminals[3], timeouts[7] = True, True
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.full((10, 1), 0.5, dtype=np.float32)
        f["rewards"] = np.arange(10, dtype=np.float32)
        f["terminals"], f["timeouts"] = terminals, timeouts
        if with_next_obs:
            f["next_observations"] = obs + 100  # a distinct marker: the loader must use these
    return obs


def test_hdf5_loader_without_next_observations(tmp_path):
    write_hdf5(tmp_path / "pendulum-test.hdf5", with_next_obs=False)
    data = iql.load_hdf5(str(tmp_path / "pendulum-test.hdf5"), "Pendulum-v1")
    # steps 0-3 (3 terminates, needs no next obs), 4-6 (7 timed out: its next obs is unknown), 8 (9 is the file's end)
    assert data.obs[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 8]
    assert data.next_obs[:, 0].tolist()[:3] == [1, 2, 3] and data.next_obs[4:7, 0].tolist() == [5, 6, 7]
    assert data.next_obs[7, 0] == 9
    assert data.terminated.tolist() == [0, 0, 0, 1, 0, 0, 0, 0]  # a timeout is not a terminal
    assert data.episode_returns.tolist() == [0 + 1 + 2 + 3, 4 + 5 + 6 + 7, 8 + 9]
    assert data.env_id == "Pendulum-v1" and data.ref_scores is None


def test_hdf5_loader_with_next_observations_keeps_the_timeout_step(tmp_path):
    write_hdf5(tmp_path / "halfcheetah-medium-v2.hdf5", with_next_obs=True)
    data = iql.load_hdf5(str(tmp_path / "halfcheetah-medium-v2.hdf5"), None)
    assert len(data.obs) == 10 and (data.next_obs == data.obs + 100).all()
    assert data.terminated.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    # a D4RL name maps to its gymnasium env and reference scores
    assert data.env_id == "HalfCheetah-v4" and data.ref_scores == (-280.178953, 12135.0)


def controller(obs):
    """A decent hand-written Pendulum controller: PD near the top, energy pumping elsewhere (about −130 a game)."""
    cos, sin, dot = obs[:, 0], obs[:, 1], obs[:, 2]
    energy = 0.5 * dot**2 / 3 + 5 * (cos - 1)  # 0 upright at rest (m = l = 1, g = 10)
    pd = np.clip(-(10 * np.arctan2(sin, cos) + 2 * dot), -2, 2)
    return np.where(cos > 0.85, pd, 2.0 * np.sign(dot) * (energy < 0))[:, None].astype(np.float32)


def collect(policy, episodes, seed):
    """Whole Pendulum episodes (200 steps, truncated) as Minari EpisodeBuffers and their returns."""
    from minari.data_collector import EpisodeBuffer

    envs = gym.make_vec("Pendulum-v1", episodes, vectorization_mode="sync")
    rng = np.random.default_rng(seed)
    obs, _ = envs.reset(seed=seed)
    observations, actions, rewards = [obs], [], []
    for _ in range(200):
        a = policy(obs, rng)
        obs, r, *_ = envs.step(a)  # default next-step autoreset: the truncating step returns the true last obs
        observations.append(obs)
        actions.append(a)
        rewards.append(r)
    envs.close()
    observations, actions, rewards = np.stack(observations, 1), np.stack(actions, 1), np.stack(rewards, 1)
    buffers = [
        EpisodeBuffer(
            observations=observations[i],
            actions=actions[i],
            rewards=list(rewards[i]),
            terminations=[False] * 200,
            truncations=[False] * 199 + [True],
        )
        for i in range(episodes)
    ]
    return buffers, rewards.sum(1)


POLICIES = {
    "controller": lambda obs, rng: controller(obs),
    "noisy": lambda obs, rng: np.clip(controller(obs) + 1.5 * rng.normal(size=(len(obs), 1)), -2, 2).astype(np.float32),
    "random": lambda obs, rng: rng.uniform(-2, 2, (len(obs), 1)).astype(np.float32),
}


@pytest.fixture(scope="module")
def pendulum_dataset(tmp_path_factory):
    """A mixed-quality Minari dataset: 30 episodes each of the controller, a noisy copy and random actions."""
    import minari

    root = tmp_path_factory.mktemp("minari")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    buffers, returns = [], []
    for k, policy in enumerate(POLICIES.values()):
        b, r = collect(policy, 30, seed=k)
        buffers += b
        returns += list(r)
    minari.create_dataset_from_buffers("pendulum/mixed-v0", buffers, env="Pendulum-v1", algorithm_name="test mixture")
    return root, float(np.mean(returns))


def test_minari_loader(pendulum_dataset):
    data = iql.load_minari("pendulum/mixed-v0", None)
    assert len(data.obs) == 90 * 200 and data.terminated.sum() == 0  # truncations bootstrap
    assert np.allclose(data.obs[1:200], data.next_obs[:199])  # next observations within an episode
    assert not np.allclose(
        data.next_obs[199], data.obs[200]
    )  # the episode's true last obs, not the next episode's first
    assert data.env_id == "Pendulum-v1" and len(data.episode_returns) == 90


def test_d2rl_feeds_the_input_to_every_hidden_layer():
    net = iql.MLP(5, 1, d2rl=True)
    assert net.layer2.in_features == 256 + 5 and iql.MLP(5, 1, d2rl=False).layer2.in_features == 256
    x = torch.randn(4, 5)
    h1 = torch.relu(net.layer1(x))
    expected = net.out(torch.relu(net.layer2(torch.cat([h1, x], -1))))
    assert torch.allclose(net(x), expected)


@pytest.mark.parametrize("kind", ["rnd", "cvae"])
def test_bonus_is_larger_off_the_data(kind):
    """Fitted to (s, a) pairs whose action is a fixed function of s, the bonus rises for actions off that function."""
    torch.manual_seed(0)
    bonus = iql.Bonus(kind, 3, 1)
    optimizer = torch.optim.Adam(bonus.parameters(), lr=1e-3)
    for _ in range(1500):
        s = torch.randn(256, 3)
        loss = bonus.loss_and_bonus(s, torch.tanh(s[:, :1]))[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    s = torch.randn(2000, 3)
    on, off = bonus(s, torch.tanh(s[:, :1])), bonus(s, -torch.tanh(s[:, :1]))
    assert (on >= 0).all() and off.mean() > 3 * on.mean(), (on.mean(), off.mean())


def test_default_bonus_keeps_staying_alive_worth_more_than_falling():
    """The collapse of `--bonus` on Hopper medium-replay, in one state: "stay" (a = 1) earns 1 and comes back to s,
    "fall" (a = −1) earns 1 and terminates. With the bonus 1 everywhere (its normalised mean), the values pay 2 × coef
    a step, at (s, a) through V and at (s', π(s')) through Q's target, and a fall stops the charge. With γ = 0.9 and
    expectile 0.7, V(s) = 0.7 max_a Q + 0.3 min_a Q − coef, and Q(s, fall) = 1; while staying ranks first,
    Q(s, stay) = (1.27 − 1.8 coef) / 0.37, which holds for coef < 0.5; past that falling ranks first and
    Q(s, stay) = (1.63 − 1.8 coef) / 0.73. At the default, staying must rank first; at coef 1, falling. Mutation run:
    the default back to 1.0 (staying −0.23, falling 1)."""
    torch.manual_seed(0)
    obs = torch.zeros(2, 3)
    data = iql.Transitions(
        obs=obs,
        actions=torch.tensor([[1.0], [-1.0]]),
        rewards=torch.ones(2),
        next_obs=obs,
        terminated=torch.tensor([0.0, 1.0]),
    )
    ones = lambda obs, actions: torch.ones(len(obs))  # noqa: E731

    def fitted_q(coef):
        args = iql.Args(expectile=0.7, beta=3.0, gamma=0.9, bonus_coef=coef)
        critic, actor = iql.Critic(3, 1, args), iql.Actor(3, 1, args)
        v_optimizer = torch.optim.Adam(critic.v.parameters(), lr=3e-3)
        q_optimizer = torch.optim.Adam([*critic.q1.parameters(), *critic.q2.parameters()], lr=3e-3)
        for _ in range(500):  # the online critic as its own target: the fixed point is the same
            for optimizer, loss in [
                (v_optimizer, iql.value_loss(args, critic, critic, ones, data)[0]),
                (q_optimizer, iql.q_loss(args, critic, actor, ones, data)),
            ]:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            return critic.qs(data.obs, data.actions).min(0).values[:, 0].tolist()

    stay, fall = fitted_q(iql.Args().bonus_coef)
    assert stay > fall + 1, (stay, fall)  # at 0.1: 2.95 against 1 (measured 2.945, 0.996)
    stay, fall = fitted_q(1.0)  # (1.63 − 1.8) / 0.73 = −0.23 against 1
    assert stay == pytest.approx((1.63 - 1.8) / 0.73, abs=0.05) and fall == pytest.approx(1.0, abs=0.05), (stay, fall)


def test_bonus_charge_warning():
    """A warning where ~2 × coef a step reaches a positive mean reward and the data terminate (Hopper medium-replay
    at coefficient 1: 2 against 1.04); none at the default, without terminations (Pendulum) or with rewards ≤ 0
    (antmaze's r − 1). Mutations run: the terminations ignored; the comparison reversed."""
    rewards, ends, no_ends = torch.full((10,), 1.04), torch.tensor([0.0] * 9 + [1.0]), torch.zeros(10)
    assert "ending an episode early" in iql.bonus_charge_warning(iql.Args(bonus_coef=1.0), rewards, ends)
    assert iql.bonus_charge_warning(iql.Args(), rewards, ends) is None
    assert iql.bonus_charge_warning(iql.Args(bonus_coef=1.0), rewards, no_ends) is None
    assert iql.bonus_charge_warning(iql.Args(bonus_coef=1.0), -torch.ones(10), ends) is None


def constant_critic(q1, q2, v, args):
    """A Critic whose Q_1, Q_2 and V output the given constants everywhere (zero weights, biases set)."""
    critic = iql.Critic(3, 1, args)
    with torch.no_grad():
        for net, value in ((critic.q1, q1), (critic.q2, q2), (critic.v, v)):
            net.out.weight.zero_()
            net.out.bias.fill_(value)
    return critic


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return iql.Transitions(
        obs=torch.randn(n, 3, generator=g),
        actions=torch.rand(n, 1, generator=g) * 2 - 1,
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, 3, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.3).float(),
    )


def test_each_loss_reads_the_right_critic():
    """L_V regresses V(s) onto the *target* critics' min_i Q̂_i(s, a) (Eq. 5); L_Q bootstraps from the *online* V(s')
    (Eq. 6); the AWR weight uses the target critics' min Q̂ and the online V (Eq. 7). Online and target critics here
    output different constants, so reading the wrong one, or max in place of min, changes every value.
    Mutations run: online critic in value_loss and in actor_loss, target V in q_loss, max in place of min."""
    args = iql.Args(expectile=0.7, beta=0.5, gamma=0.9)
    online, target = constant_critic(5.0, 6.0, 2.0, args), constant_critic(1.0, 3.0, -4.0, args)
    data = batch()
    v_loss, v = iql.value_loss(args, online, target, None, data)
    # u = min(1, 3) − V(s) = 1 − 2 < 0: weight |τ − 1| = 0.3
    assert v_loss.item() == pytest.approx(0.3 * (1.0 - 2.0) ** 2) and torch.allclose(v, torch.full((16, 1), 2.0))

    actor = iql.Actor(3, 1, args)
    q_target = data.rewards + 0.9 * (1 - data.terminated) * 2.0  # online V(s') = 2
    expected = ((5.0 - q_target) ** 2).mean() + ((6.0 - q_target) ** 2).mean()
    assert iql.q_loss(args, online, actor, None, data).item() == pytest.approx(expected.item(), rel=1e-6)

    weight = torch.exp(torch.tensor(0.5 * (1.0 - 2.0)))  # exp(β (min Q̂ − V)) = exp(−0.5)
    expected = -(weight * actor.log_prob(data.obs, data.actions)).mean()
    assert iql.actor_loss(args, actor, target, online, None, data).item() == pytest.approx(expected.item(), rel=1e-6)


def test_awr_weight_is_clamped_at_100():
    """exp(β A) is clipped at `exp_adv_max` = 100 (the paper's code). With A = 10 and β = 3, exp(30) would dominate.
    Mutation run: the clamp removed."""
    args = iql.Args(expectile=0.7, beta=3.0)
    online, target = constant_critic(0.0, 0.0, -10.0, args), constant_critic(0.0, 0.0, 0.0, args)
    actor = iql.Actor(3, 1, args)
    data = batch()
    expected = -(100.0 * actor.log_prob(data.obs, data.actions)).mean()
    assert iql.actor_loss(args, actor, target, online, None, data).item() == pytest.approx(expected.item(), rel=1e-6)
    args.deterministic_actor = True
    actor = iql.Actor(3, 1, args)
    expected = (100.0 * ((actor(data.obs) - data.actions) ** 2).sum(-1)).mean()
    assert iql.actor_loss(args, actor, target, online, None, data).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("flags", [{}, {"distributional": True, "d2rl": True, "bonus": "rnd"}, {"bonus": "cvae"}])
def test_hot_path_has_no_host_sync(flags):
    """Sampling and the V, Q, actor and target updates on the "meta" device, standing in for CUDA (see no_host_sync).
    Mutation run: the actor's log-density through torch.distributions.Normal, which validates its arguments, as the
    script had it before."""
    device = torch.device("meta")
    args = iql.Args(expectile=0.7, beta=3.0, **flags)
    critic, critic_target = iql.Critic(3, 1, args).to(device), iql.Critic(3, 1, args).to(device)
    actor = iql.Actor(3, 1, args).to(device)
    bonus = iql.Bonus(args.bonus, 3, 1).to(device) if args.bonus != "none" else None
    v_optimizer, q_optimizer, actor_optimizer = (torch.optim.Adam(m.parameters()) for m in (critic.v, critic, actor))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(actor_optimizer, 10)
    dataset = iql.Transitions(*(x.to(device) for x in batch(64)))

    def step(optimizer, loss):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with no_host_sync():
        for _ in range(3):
            data = iql.Transitions(*(x[torch.randint(64, (8,), device=device)] for x in dataset))
            step(v_optimizer, iql.value_loss(args, critic, critic_target, bonus, data)[0])
            step(q_optimizer, iql.q_loss(args, critic, actor, bonus, data))
            iql.soft_update(critic_target.q1, critic.q1, args.tau)
            step(actor_optimizer, iql.actor_loss(args, actor, critic_target, critic, bonus, data))
            schedule.step()


def test_d4rl_ant_file_runs_on_the_111_dim_ant(tmp_path):
    """D4RL's ant files hold 111-dim observations (contact forces included): the name maps to Ant-v4 with
    use_contact_forces=True. Mutation run: the plain Ant-v4 mapping (27 dims): the shape check stops the run."""
    import h5py

    n = 50
    with h5py.File(tmp_path / "ant-medium-v2.hdf5", "w") as f:
        f["observations"] = np.random.default_rng(0).normal(size=(n, 111)).astype(np.float32)
        f["actions"] = np.zeros((n, 8), dtype=np.float32)
        f["rewards"] = np.ones(n, dtype=np.float32)
        f["terminals"] = np.zeros(n, dtype=bool)
        f["timeouts"] = np.arange(n) % 25 == 24
    out = run_script(
        "iql_offline.py",
        "--dataset",
        tmp_path / "ant-medium-v2.hdf5",
        "--total-timesteps",
        5,
        "--batch-size",
        8,
        "--eval-episodes",
        0,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "eval env Ant-v4 {'use_contact_forces': True}" in out.stdout
        and "preset locomotion (from the dataset's name)" in out.stdout
    )


def test_antmaze_preset_is_inferred_from_the_file_name(tmp_path):
    """An antmaze file gets the antmaze preset (r − 1, expectile 0.9, β 10) unless --preset says otherwise.
    Mutation run: the old fixed default, locomotion."""
    write_hdf5(tmp_path / "antmaze-umaze-v2.hdf5", with_next_obs=True)
    common = [
        "--dataset",
        tmp_path / "antmaze-umaze-v2.hdf5",
        "--env-id",
        "Pendulum-v1",
        "--total-timesteps",
        5,
        "--batch-size",
        4,
        "--eval-episodes",
        0,
    ]
    out = run_script("iql_offline.py", *common, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "preset antmaze (from the dataset's name)" in out.stdout
    out = run_script("iql_offline.py", *common, "--preset", "locomotion", cwd=tmp_path)
    assert out.returncode == 0 and "preset locomotion (given)" in out.stdout, out.stderr


def test_missing_dataset_says_how_to_get_it(tmp_path):
    out = run_script("iql_offline.py", "--dataset", "mujoco/nothing/here-v0", cwd=tmp_path)
    assert out.returncode == 2 and "minari download" in out.stderr and "--save-dataset" in out.stderr
    out = run_script("iql_offline.py", "--dataset", str(tmp_path / "missing.hdf5"), cwd=tmp_path)
    assert out.returncode == 2 and "no file" in out.stderr
    assert not (tmp_path / "runs").exists()


def broken_dataset(tmp_path, kind):
    """A dataset the loader must refuse, as the --dataset value: an hdf5 file with arrays broken (`changes`), a 0-byte
    hdf5 file, or an empty Minari dataset (in the pendulum_dataset fixture's folder)."""
    import h5py

    path = tmp_path / f"pendulum-{kind}.hdf5"
    if kind == "empty minari":
        import minari

        minari.create_dataset_from_buffers(
            "pendulum/empty-v0",
            [],
            env="Pendulum-v1",
            algorithm_name="nothing",
            author="t",
            author_email="t",
            description="no episodes",
            eval_env="Pendulum-v1",
        )
        return "pendulum/empty-v0"
    if kind == "0-byte":
        path.write_bytes(b"")
        return path
    if kind in ("npz", "folder"):  # a path that exists is read as a file, whatever its name says
        if kind == "folder":  # named as the Minari id it shadows
            path = tmp_path / "pendulum/mixed-v0"
            path.mkdir(parents=True)
        else:
            path = tmp_path / "pendulum-npz.npz"
            np.savez(path, observations=np.zeros(3))
        return path
    write_hdf5(path, with_next_obs=kind == "wide next_observations")
    changes = {  # kind: the array replaced, and how
        "nan reward": ("rewards", lambda a: np.where(np.arange(len(a)) == 4, np.nan, a)),
        "byte terminals": ("terminals", lambda a: a.astype("S1")),
        "(N, 1) terminals": ("terminals", lambda a: a[:, None]),
        "(N, 1) rewards": ("rewards", lambda a: a[:, None]),  # would broadcast the targets to [B, B, 1], silently
        "wide next_observations": ("next_observations", lambda a: np.concatenate([a, a], 1)),
        "half terminals": ("terminals", lambda a: a * 0.5),
        "one step": (None, lambda a: a[:1]),  # it ends the file, not by a terminal: its next observation is unknown
        "zero-length": (None, lambda a: a[:0]),
    }
    key, change = changes[kind]
    with h5py.File(path, "r+") as f:
        for key in [key] if key else list(f.keys()):
            array = change(f[key][()])
            del f[key]
            f[key] = array
    return path


QUICK = ["--dataset", "pendulum/mixed-v0", "--total-timesteps", 50, "--batch-size", 16, "--eval-episodes", 0]


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--batch-size", 0], "--batch-size 0: must be ≥ 1"),
        (["--gamma", 1.5], "--gamma 1.5: must be in (0, 1]"),
        (["--tau", 0], "--tau 0.0: must be in (0, 1]"),
        (["--expectile", 1.0], "--expectile 1.0: must be in (0, 1)"),
        (["--beta", -1], "--beta -1.0: must be ≥ 0 and finite"),
        (["--n-quantiles", 0], "--n-quantiles 0: must be ≥ 1"),
        (["--bonus", "rnd", "--bonus-pretrain-steps", 0], "--bonus-pretrain-steps 0: must be ≥ 1 with --bonus"),
        (
            ["--eval-episodes", -3],
            "--eval-episodes -3: must be ≥ 1 with --eval-checkpoint or --eval-frequency, else ≥ 0",
        ),
        (["--eval-frequency", -1], "--eval-frequency -1: must be ≥ 0"),
        (
            ["--eval-checkpoint", "any.pt", "--eval-episodes", 0],
            "--eval-episodes 0: must be ≥ 1 with --eval-checkpoint",
        ),
        (["--checkpoint-frequency", 100], "--checkpoint-frequency 100: must be ≥ 0, and > 0 only with --save-model"),
        *COMMON_BAD_ARGS,
        (["--threads", 0], "--threads 0: must be ≥ 1"),
        ("nan reward", "'rewards' holds 1 NaN or infinite values (of 10)"),
        ("zero-length", "'observations' has 0 entries"),
        ("byte terminals", "'terminals' holds |S1 values, not numbers"),
        ("(N, 1) terminals", "'terminals' has shape (10, 1): must be (10,), one value per step"),
        ("(N, 1) rewards", "'rewards' has shape (10, 1): must be (10,), one value per step"),
        ("wide next_observations", "'next_observations' has shape (10, 6), the observations (10, 3)"),
        ("half terminals", "'terminals' holds values other than 0 and 1"),
        ("one step", "no usable transition"),
        ("0-byte", "is not a readable hdf5 file"),
        ("empty minari", "the Minari dataset pendulum/empty-v0 holds no episodes"),
        ("npz", "pendulum-npz.npz is a .npz file, not HDF5: this script reads D4RL-style HDF5 and Minari ids"),
        ("folder", "is a folder, not HDF5"),
        (["--batch-size", 100_000], "--batch-size 100000: must be ≤ the dataset's"),
    ],
)
def test_bad_input_fails_fast_with_one_line(pendulum_dataset, tmp_path, monkeypatch, capsys, flags, message):
    """Exit status 2, one `error:` line, no `runs/` folder. Mutations run: the batch_size check dropped (NaN losses),
    check_arrays not called on hdf5 files (the NaN reward: a ValueError traceback at step 1; zero-length arrays: an
    IndexError traceback), the OSError not caught (traceback)."""
    if isinstance(flags, str):  # a broken dataset
        flags = ["--dataset", broken_dataset(tmp_path, flags), "--env-id", "Pendulum-v1"]
    assert_one_line_error(
        run_main(iql, *QUICK, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys), message, tmp_path
    )


def test_runs_a_plain_file_is_refused_before_training(pendulum_dataset, tmp_path, monkeypatch, capsys):
    """Mutation run: the writable_folder check dropped from check_args (TensorBoard's FileExistsError traceback)."""
    assert_refuses_a_runs_file(iql, QUICK, tmp_path, monkeypatch, capsys)


def trained_checkpoint(tmp_path, monkeypatch, capsys, *flags):
    """Train 50 gradient steps in-process with --save-model; return the result and the checkpoint's path."""
    result = run_main(iql, *QUICK, "--save-model", *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    return result, next((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_bad_checkpoint_fails_with_one_line(pendulum_dataset, tmp_path, monkeypatch, capsys, kind):
    """A damaged file, a ddpg_td3_sac.py checkpoint, or one of another version of this script: one line, exit 2."""
    (tmp_path / "own").mkdir()
    _, own = trained_checkpoint(tmp_path / "own", monkeypatch, capsys)
    envs = ac.make_env("Pendulum-v1", 1)
    foreign = tmp_path / "sac.pt"
    ac.save_checkpoint(str(foreign), ac.Actor(envs, True), torch.nn.ModuleList(), ac.Args(env_id="Pendulum-v1"))
    path, message = bad_checkpoint(tmp_path, kind, own, foreign)
    result = run_main(iql, "--eval-checkpoint", path, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(result, message, tmp_path)


def test_actor_reads_the_target_critic_before_the_soft_update(pendulum_dataset, tmp_path, monkeypatch, capsys):
    """The paper's code (learner.py) updates V, then the actor against the target Qs of the step and the new V, then Q
    and the target. So the target critic the actor reads is the one V read in the same step, and its V has moved.
    Mutation run: the actor's update after the soft update (its target has moved by τ)."""
    seen = {"value": [], "actor": [], "v at value": [], "v at actor": []}

    def record(name, critic_target, critic):
        seen[name].append(torch.cat([p.detach().flatten() for p in critic_target.parameters()]))
        seen[f"v at {name}"].append(torch.cat([p.detach().flatten() for p in critic.v.parameters()]))

    value_loss, actor_loss = iql.value_loss, iql.actor_loss

    def recording_value_loss(args, critic, critic_target, *rest):
        record("value", critic_target, critic)
        return value_loss(args, critic, critic_target, *rest)

    def recording_actor_loss(args, actor, critic_target, critic, *rest):
        record("actor", critic_target, critic)
        return actor_loss(args, actor, critic_target, critic, *rest)

    monkeypatch.setattr(iql, "value_loss", recording_value_loss)
    monkeypatch.setattr(iql, "actor_loss", recording_actor_loss)
    result = run_main(iql, *QUICK, "--total-timesteps", 3, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert result[0] == 0, result[2]
    assert len(seen["actor"]) == 3 and not torch.equal(seen["value"][0], seen["value"][1])
    assert all(torch.equal(v, a) for v, a in zip(seen["value"], seen["actor"]))
    assert not any(torch.equal(v, a) for v, a in zip(seen["v at value"], seen["v at actor"]))


def test_divergence_stops_the_run_and_keeps_the_last_finite_weights(pendulum_dataset, tmp_path, monkeypatch, capsys):
    """Adam at 1e30: the losses turn inf/NaN before the first check at gradient step 100. Mutations run: the check
    dropped (exit 0), the diverged networks saved (NaN weights)."""
    result, path = trained_checkpoint(tmp_path, monkeypatch, capsys, "--total-timesteps", 300, "--learning-rate", 1e30)
    assert_one_line_error(result, "became NaN or infinite by step 100", tmp_path, status=1)
    actor = iql.load_checkpoint(str(path), torch.device("cpu"))[0]
    assert all(p.isfinite().all() for p in actor.parameters())


def test_checkpoints_are_written_every_checkpoint_frequency_gradient_steps(
    pendulum_dataset, tmp_path, monkeypatch, capsys
):
    """Mutation run: the periodic save dropped (only the final one)."""
    calls = []
    save = iql.save_checkpoint
    monkeypatch.setattr(iql, "save_checkpoint", lambda *a: (calls.append(1), save(*a)))
    result, path = trained_checkpoint(
        tmp_path, monkeypatch, capsys, "--total-timesteps", 70, "--checkpoint-frequency", 20
    )
    assert result[0] == 0 and len(calls) == 3 + 1  # at gradient steps 20, 40, 60, and at the end


def test_sigterm_writes_the_checkpoint_and_exits_143(pendulum_dataset, tmp_path):
    """Mutation run: no handler (status −15, no checkpoint)."""
    flags = ["--dataset", "pendulum/mixed-v0", "--total-timesteps", 10**7, "--save-model", "--threads", 1]
    returncode, out = run_and_terminate("iql_offline.py", flags, cwd=tmp_path)
    assert returncode == 143 and "stopped by SIGTERM at step" in out, out
    actor, args, *_ = iql.load_checkpoint(str(next((tmp_path / "runs").rglob("*.pt"))), torch.device("cpu"))
    assert args.dataset == "pendulum/mixed-v0"


FLAGS = [[], ["--d2rl"], ["--bonus", "rnd"], ["--bonus", "cvae"], ["--distributional"]]


COMBOS = [c for c in itertools.product(["--d2rl", None], ["rnd", "cvae", None], ["--distributional", None]) if any(c)]


@pytest.mark.parametrize("combo", [(), ("--deterministic-actor",), *COMBOS])
def test_smoke_every_flag_combination(pendulum_dataset, tmp_path, combo):
    flags = []
    for f in combo:
        if f in ("rnd", "cvae"):
            flags += ["--bonus", f]
        elif f:
            flags.append(f)
    out = run_script(
        "iql_offline.py",
        "--dataset",
        "pendulum/mixed-v0",
        "--total-timesteps",
        300,
        "--bonus-pretrain-steps",
        50,
        "--eval-episodes",
        1,
        "--save-model",
        *flags,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "300 gradient steps" in out.stdout
    scalars = read_scalars(only_run_dir(tmp_path))
    for tag in ["losses/value_loss", "losses/q_loss", "losses/actor_loss", "eval/episodic_return"]:
        assert tag in scalars, tag
    assert "no normalized score" in out.stdout  # Pendulum has no reference scores


def test_eval_frequency_logs_the_learning_curve_and_leaves_training_alone(pendulum_dataset, tmp_path):
    """`--eval-frequency 100` on 300 gradient steps: `eval/mean_return` and `eval/mean_normalized_score` at gradient
    steps 100 and 200, then the final evaluation's at 300; each score is 100 (R − R_min) / (R_max − R_min) of the
    dataset's reference returns; the losses are the same as without the evaluations. Mutations run: the score's
    reference returns swapped; the evaluation draws from the Gaussian policy (the losses changed)."""
    import minari

    buffers, _ = collect(POLICIES["controller"], 4, seed=7)
    low, high = -1200.0, -130.0
    minari.create_dataset_from_buffers(
        "pendulum/scored-v0",
        buffers,
        env="Pendulum-v1",
        algorithm_name="test controller",
        ref_min_score=low,
        ref_max_score=high,
    )
    flags = ["--dataset", "pendulum/scored-v0", "--total-timesteps", 300, "--eval-episodes", 2]
    scalars = {}
    for name, extra in [("plain", []), ("curve", ["--eval-frequency", 100])]:
        (tmp_path / name).mkdir()
        out = run_script("iql_offline.py", *flags, *extra, cwd=tmp_path / name)
        assert out.returncode == 0, out.stderr
        scalars[name] = read_scalars(only_run_dir(tmp_path / name))
    curve, scores = scalars["curve"]["eval/mean_return"], scalars["curve"]["eval/mean_normalized_score"]
    assert [step for step, _ in curve] == [step for step, _ in scores] == [100, 200, 300]
    for (_, ret), (_, score) in zip(curve, scores):
        assert score == pytest.approx(100 * (ret - low) / (high - low), rel=1e-4)
    assert curve[-1][1] == pytest.approx(np.mean([v for _, v in scalars["curve"]["eval/episodic_return"]]), rel=1e-5)
    assert "eval/mean_return" not in scalars["plain"]
    for tag in ["losses/value_loss", "losses/q_loss", "losses/actor_loss"]:
        assert scalars["curve"][tag] == scalars["plain"][tag], tag
    progress = [line for line in out.stdout.splitlines() if line.startswith("step ")]
    assert "(normalized " in progress[-1]  # the last progress line shows the latest evaluation


# 4k gradient steps: on this dataset the greedy evaluation every 1k steps of an 8k run (seed 3, --d2rl and
# --distributional) rose from about −1,100 at 1k to −163 at 3k and stayed within −146 to −144 from 4k on. A 4k run
# anneals the actor's learning rate over its own 4k steps; the tests' docstrings give those runs' own results.
LEARN = [
    "--dataset",
    "pendulum/mixed-v0",
    "--total-timesteps",
    4000,
    "--normalize-states",
    "--eval-episodes",
    10,
    "--bonus-pretrain-steps",
    2000,
]


def mean_eval_return(pendulum_dataset, cwd, flags):
    """Train on the mixed dataset with `flags` in `cwd`; return the final evaluation's mean return."""
    os.environ["MINARI_DATASETS_PATH"] = str(pendulum_dataset[0])
    cwd.mkdir(exist_ok=True)
    out = run_script("iql_offline.py", *LEARN, *flags, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return float(np.mean(eval_returns(cwd)))


@pytest.mark.slow
def test_learns_from_a_mixed_dataset(pendulum_dataset, tmp_path):
    """IQL must clearly beat the dataset's mean return and behaviour cloning (β = 0: every weight is 1, so the actor
    loss is plain log-likelihood). Measured (seeds 1-3, one thread; dataset mean −560.8): IQL −148.1, −148.6, −160.3;
    BC −515.6, −479.6, −600.7. Mutation run: the advantage's sign flipped in the AWR weight, exp(−β A): −1770.0
    (seed 1)."""
    dataset_mean = pendulum_dataset[1]
    bc = mean_eval_return(pendulum_dataset, tmp_path / "bc", ["--beta", 0.0])
    iql_return = mean_eval_return(pendulum_dataset, tmp_path / "iql", [])
    print(f"dataset mean {dataset_mean:.1f}; bc {bc:.1f}, iql {iql_return:.1f}")
    assert iql_return > bc + 100 and iql_return > dataset_mean + 200, (iql_return, bc, dataset_mean)


# one test per extension, so that pytest-xdist spreads the runs over the workers
@pytest.mark.slow
@pytest.mark.parametrize(
    "flags", [["--d2rl"], ["--bonus", "rnd"], ["--bonus", "cvae"], ["--distributional"]], ids=" ".join
)
def test_each_extension_learns_from_a_mixed_dataset(pendulum_dataset, tmp_path, flags):
    """IQL with each extension must clearly beat the dataset's mean return. Measured (seeds 1-3, one thread; dataset
    mean −560.8, threshold −410.8): --d2rl −161.1, −263.7, −160.6; --bonus rnd −147.7, −148.4, −147.3; --bonus cvae
    −160.6, −148.1, −159.2; --distributional −199.9, −187.9, −199.5. Mutation run: --d2rl with the AWR weight's
    advantage sign flipped: −1774.1 (seed 1)."""
    dataset_mean = pendulum_dataset[1]
    result = mean_eval_return(pendulum_dataset, tmp_path, flags)
    print(f"dataset mean {dataset_mean:.1f}; {' '.join(flags)} {result:.1f}")
    assert result > dataset_mean + 150, (flags, result, dataset_mean)


def test_a_signal_during_the_final_evaluation_ends_it_cleanly(pendulum_dataset, tmp_path, monkeypatch, capsys):
    """Mutation run: the final evaluation without its StopSignal (it runs to its end and exits 0)."""
    assert_final_evaluation_ends_on_a_signal(iql, QUICK, tmp_path, monkeypatch, capsys)


def test_an_hdf5_file_is_read_whatever_its_extension(tmp_path):
    """Mutation run: the extension decides (".HDF5" taken for a Minari id: "not found locally")."""
    write_hdf5(tmp_path / "pendulum.HDF5", with_next_obs=False)
    data = iql.load_dataset(iql.Args(dataset=str(tmp_path / "pendulum.HDF5"), env_id="Pendulum-v1"))
    assert len(data.obs) == 8


def test_a_signal_during_bonus_pretraining_ends_the_run_with_its_checkpoint(
    pendulum_dataset, tmp_path, monkeypatch, capsys
):
    """SIGINT at the bonus model's first step. Mutations run: the StopSignal installed just before the loop (a
    KeyboardInterrupt traceback, no checkpoint); the pretraining deaf to it (all 300 steps taken)."""
    flags = [*QUICK, "--bonus", "rnd", "--bonus-pretrain-steps", 300]
    out = assert_start_up_signal_keeps_the_checkpoint(iql, flags, tmp_path, monkeypatch, capsys, where="sample")
    assert "bonus rnd: fitted in 1 steps" in out, out


def test_checkpoint_evaluation_refuses_another_env(pendulum_dataset, tmp_path, monkeypatch, capsys):
    """Mutation run: the env check dropped (the checkpoint's env evaluated, exit 0)."""
    _, path = trained_checkpoint(tmp_path, monkeypatch, capsys)
    result = run_main(
        iql,
        "--eval-checkpoint",
        path,
        "--env-id",
        "Hopper-v5",
        cwd=tmp_path / "runs",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert_one_line_error(result, "--env-id Hopper-v5: the checkpoint plays Pendulum-v1", tmp_path / "runs")
