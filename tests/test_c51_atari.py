"""Tests of c51_atari.py: the categorical projection from its definition, and the script end to end."""

import math

import numpy as np
import pytest
import torch
from conftest import (
    ACROBOT,
    ATARI_BAD_ARGS,
    CARTPOLE,
    CHECKPOINT_KINDS,
    QUICK,
    assert_one_line_error,
    assert_stops_on_divergence,
    atari_checkpoint,
    atari_hot_path,
    bad_checkpoint,
    eval_returns,
    evaluate_checkpoint_twice,
    only_run_dir,
    read_scalars,
    run_main,
    run_script,
    skewed_bandit,
    smoke_test,
)

import c51_atari as c51
import dqn_atari as dqn

ATOMS = torch.linspace(-10, 10, 51, dtype=torch.float64)  # the paper's support, Δz = 0.4


def projection_by_definition(next_probs, rewards, dones, gamma, atoms):
    """The paper's Algorithm 1, one atom at a time: b = (Tz − v_min)/Δz, the mass to ⌊b⌋ and ⌈b⌉ in
    proportion ⌈b⌉ − b and b − ⌊b⌋, and all of it to b when b is an integer."""
    v_min, v_max, delta_z = atoms[0].item(), atoms[-1].item(), (atoms[1] - atoms[0]).item()
    out = torch.zeros_like(next_probs)
    for k in range(len(rewards)):
        for j in range(len(atoms)):
            tz = min(max(rewards[k].item() + gamma * (1 - dones[k].item()) * atoms[j].item(), v_min), v_max)
            b = (tz - v_min) / delta_z
            lower, upper = math.floor(b), math.ceil(b)
            if lower == upper:
                out[k, lower] += next_probs[k, j]
            else:
                out[k, lower] += next_probs[k, j] * (upper - b)
                out[k, upper] += next_probs[k, j] * (b - lower)
    return out


def random_case(batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(batch, 51, generator=g, dtype=torch.float64).softmax(-1)
    rewards = torch.empty(batch, dtype=torch.float64).uniform_(-15, 15, generator=g)  # some beyond the support
    dones = (torch.rand(batch, generator=g) < 0.3).double()
    return probs, rewards, dones


def test_projection_matches_the_definition():
    probs, rewards, dones = random_case()
    got = c51.categorical_projection(probs, rewards, dones, 0.99, ATOMS)
    assert torch.allclose(got, projection_by_definition(probs, rewards, dones, 0.99, ATOMS), atol=1e-12)


def test_projection_conserves_mass_and_mean():
    probs, rewards, dones = random_case(batch=64, seed=1)
    got = c51.categorical_projection(probs, rewards, dones, torch.full((64,), 0.97, dtype=torch.float64), ATOMS)
    assert (got >= 0).all()
    assert torch.allclose(got.sum(-1), torch.ones(64, dtype=torch.float64), atol=1e-12)
    # linear interpolation between neighbours keeps the mean wherever r + γz stays inside the support
    rewards = torch.empty(64, dtype=torch.float64).uniform_(-0.2, 0.2)
    got = c51.categorical_projection(probs, rewards, torch.zeros(64, dtype=torch.float64), 0.97, ATOMS)
    expected_mean = (probs * (rewards[:, None] + 0.97 * ATOMS)).sum(-1)
    assert torch.allclose((got * ATOMS).sum(-1), expected_mean, atol=1e-12)


def test_projection_when_b_is_an_integer():
    """r = 1, γ = 1 on the integer support −4..4: every atom moves exactly one place up (b is an integer, where
    floor/ceil code drops the mass), and the top atom's mass stays on the top atom after clipping."""
    atoms = torch.linspace(-4, 4, 9)
    probs = torch.rand(3, 9).softmax(-1)
    got = c51.categorical_projection(probs, torch.ones(3), torch.zeros(3), 1.0, atoms)
    expected = torch.cat([torch.zeros(3, 1), probs[:, :-2], probs[:, -2:].sum(1, keepdim=True)], 1)
    assert torch.equal(got, expected)


def test_projection_seed_001_example():
    """r = 1, γ = 0.99 sends z_0 = −10 to −8.9, which lies between −9.2 and −8.8: 0.25 and 0.75 of its mass."""
    probs = torch.zeros(1, 51, dtype=torch.float64)
    probs[0, 0] = 1.0
    got = c51.categorical_projection(
        probs, torch.tensor([1.0], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 0.99, ATOMS
    )
    assert ATOMS[2].item() == pytest.approx(-9.2) and ATOMS[3].item() == pytest.approx(-8.8)
    assert got[0, 2].item() == pytest.approx(0.25) and got[0, 3].item() == pytest.approx(0.75)
    assert got[0].sum().item() == pytest.approx(1.0)


def test_projection_terminal_ignores_the_next_distribution():
    probs, _, _ = random_case(batch=4)
    got = c51.categorical_projection(
        probs, torch.full((4,), 0.3, dtype=torch.float64), torch.ones(4, dtype=torch.float64), 0.99, ATOMS
    )
    expected = torch.zeros(4, 51, dtype=torch.float64)
    expected[:, 25], expected[:, 26] = 0.25, 0.75  # 0.3 lies between the atoms 0.0 and 0.4
    assert torch.allclose(got, expected, atol=1e-12)


def test_loss_is_cross_entropy_and_priority_the_kl_to_the_projected_target():
    """With a one-state MLP, the loss equals −Σ m log p for the target built by hand, the priorities are each sample's
    KL(m ‖ p) = Σ m (log m − log p) (Rainbow's), and the Q it reports is Σ z p. Mutation run: the cross-entropy as the
    priority (it exceeds the KL by H(m), which is > 0 where r + γz falls between atoms)."""
    torch.manual_seed(0)
    envs = c51.make_env("CartPole-v1", 1)
    args = c51.Args(v_min=0.0, v_max=20.0)
    online, target = c51.QNetwork(envs, args), c51.QNetwork(envs, args)
    obs = torch.randn(5, 4)
    data = c51.ReplayBatch(
        obs=obs,
        actions=torch.tensor([0, 1, 1, 0, 1]),
        rewards=torch.tensor([1.0, 0.0, 2.0, 1.0, 0.5]),
        next_obs=torch.randn(5, 4),
        terminated=torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]),
        discounts=torch.full((5,), 0.99),
        weights=torch.ones(5),
    )
    loss, priorities, q = c51.td_loss(online, target, data, double=False)
    with torch.no_grad():
        next_probs = target.logits(data.next_obs).softmax(-1)
        a_star = (next_probs * target.atoms).sum(-1).argmax(1)
        m = projection_by_definition(
            next_probs[range(5), a_star].double(),
            data.rewards.double(),
            data.terminated.double(),
            0.99,
            target.atoms.double(),
        )
        probs = online.logits(obs).softmax(-1)[range(5), data.actions]
    assert loss.item() == pytest.approx(-(m * probs.double().log()).sum(-1).mean().item(), rel=1e-5)
    kl = torch.where(m > 0, m * (m.log() - probs.double().log()), 0.0).sum(-1)
    entropy = torch.where(m > 0, -m * m.log(), 0.0).sum(-1)
    assert entropy.max() > 0.5 and torch.allclose(priorities.double(), kl, atol=1e-5), (priorities, kl)
    assert torch.allclose(q, (probs * online.atoms).sum(-1), atol=1e-5)


def test_smoke_breakout(tmp_path):
    smoke_test(
        "c51_atari.py", tmp_path, "losses/loss", "--double", "--dueling", "--n-step", 3, "--prioritized", "--noisy"
    )  # Rainbow


@pytest.mark.slow
def test_learns_cartpole(tmp_path):
    """The greedy evaluation after the CartPole recipe, atoms on [0, 100]. Measured (one thread): 274.9, 466.3, 304.1,
    480.4, 422.8 and 251.9 at seeds 1-6. The threshold, 100 as dqn_atari's, sits well below them: another install of
    the requirements moves a run as much as another seed does. Mutation runs (seed 1): the projection without its
    termination mask, 9.6. The target's greedy action a* taken by argmin instead of argmax, 218.2, still learns
    CartPole; `test_loss_is_cross_entropy_and_priority_the_kl_to_the_projected_target` catches it."""
    out = run_script("c51_atari.py", *CARTPOLE, "--v-min", 0, "--v-max", 100, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    returns = eval_returns(tmp_path)
    assert len(returns) == 10 and np.mean(returns) >= 100, returns


@pytest.mark.slow
def test_learns_cartpole_with_the_rainbow_flags(tmp_path):
    """Rainbow's components on C51 (Hessel et al. 2018): Double, Dueling, 3-step returns, prioritized replay and noisy
    nets, on the CartPole recipe with ε = 0 throughout (the noise explores). The greedy evaluation measured 410.1,
    378.0, 413.6, 144.0 and 439.5 (seeds 1-5, one thread), so the threshold is 100, above random play (about 22).
    Mutation run: the projection without its (1 − done) mask, 13.8. CartPole does not see how prioritized replay is
    weighted; `test_rainbow_replay_learns_the_expectation` checks that."""
    out = run_script(
        "c51_atari.py",
        *CARTPOLE,
        "--v-min",
        0,
        "--v-max",
        100,
        "--double",
        "--dueling",
        "--n-step",
        3,
        "--prioritized",
        "--noisy",
        "--end-e",
        0,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    returns = eval_returns(tmp_path)
    assert len(returns) == 10 and np.mean(returns) >= 100, returns


def biased_fixed_point():
    """The C51 fit on the skewed bandit (reward 10 at probability 0.1, else 0) when prioritized replay (α = 1) draws
    each sample in proportion to its KL divergence and nothing corrects for it. Each target is a single atom (0 or 10,
    both on the support), so H(m) = 0 and the KL is the cross-entropy: p(10) = 0.1·L₁ / (0.1·L₁ + 0.9·L₀), with
    L₁ = −ln p(10) and L₀ = −ln(1 − p(10)), solved by bisection. Returns Q = 10·p(10)."""
    low, high = 0.1, 0.9
    for _ in range(60):
        p = (low + high) / 2
        drawn = 0.1 * -np.log(p) / (0.1 * -np.log(p) + 0.9 * -np.log(1 - p))
        low, high = (p, high) if drawn > p else (low, p)
    return 10 * p


@pytest.mark.parametrize("beta", [1.0, 0.0])
def test_rainbow_replay_learns_the_expectation(tmp_path, monkeypatch, capsys, beta):
    """C51 with the Rainbow flags on a one-step bandit, reward 10 at probability 0.1 (E[r] = 1; dqn_atari's test has
    the same for |δ|): with the importance weights at β = 1 the learned Q is E[r] = 1; without them (β = 0) the
    prioritized draws (α = 1, each sample's KL as its priority) pull it to the biased fixed point, 2.88.
    The logged Q of the second half of training must be within 0.35 of each (measured 0.91-1.10 and 2.78-2.93).
    Mutations run: the weights ignored in td_loss (β = 1 learns 2.9); `update_priorities` left out of main (uniform
    draws: β = 0 learns 1)."""
    flags = [
        "--env-id",
        skewed_bandit(),
        "--total-timesteps",
        4000,
        "--learning-starts",
        500,
        "--train-frequency",
        1,
        "--buffer-size",
        4000,
        "--batch-size",
        32,
        "--learning-rate",
        1e-3,
        "--target-network-frequency",
        1,
        "--v-min",
        0,
        "--v-max",
        10,
        "--double",
        "--dueling",
        "--n-step",
        3,
        "--noisy",
        "--prioritized",
        "--prioritized-replay-alpha",
        1.0,
        "--prioritized-replay-beta",
        beta,
        "--prioritized-replay-beta-end",
        beta,
        "--eval-episodes",
        0,
        "--threads",
        1,
    ]
    result = run_main(c51, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert result[0] == 0, result[2]
    q = [v for step, v in read_scalars(only_run_dir(tmp_path))["losses/q_values"] if step > 2000]
    expected = 1.0 if beta == 1.0 else biased_fixed_point()
    assert abs(np.mean(q) - expected) < 0.35, (np.mean(q), expected)


@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "CartPole-v1"])
def test_hot_path_has_no_host_sync(env_id):
    """Acting, replay and the C51 update on the "meta" device, standing in for CUDA (see no_host_sync).
    Mutation run: the host-built `torch.arange(B)` row index the script had before."""
    atari_hot_path(c51, env_id, lambda q, target, data: c51.td_loss(q, target, data, True)[:2], dueling=True)


def test_checkpoint_evaluation_is_seeded(tmp_path, capsys):
    """Two evaluations of one checkpoint with the same --seed give the same returns (ε = 0.5). Mutation run: the
    seeding after the --eval-checkpoint branch, as the script had it before."""
    first, second = evaluate_checkpoint_twice(c51, tmp_path, capsys)
    assert first == second and "eval: mean return" in first


@pytest.mark.slow
def test_greedy_policy_leaves_the_rest_state_on_acrobot(tmp_path):
    """The greedy evaluation (ε = 0.001) on Acrobot, whose hanging start needs a phase-dependent policy (see
    dqn_atari's test). Atoms on [−100, 0] hold its returns. Measured (one thread): −93.5, −85.4 and −73.3 (seeds 1-3).
    Mutation run: the projection's atoms mirrored (−500). Two others were not caught, and learn Acrobot: no
    termination mask (−95.7) and γ = 1 (−77.5)."""
    out = run_script("c51_atari.py", *ACROBOT, "--v-min", -100, "--v-max", 0, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    returns = eval_returns(tmp_path)
    assert len(returns) == 10 and np.mean(returns) >= -150, returns


@pytest.mark.parametrize(
    "flags,message",
    [
        *ATARI_BAD_ARGS,
        (["--n-atoms", 1], "--n-atoms 1: must be ≥ 2"),
        (["--v-min", 5, "--v-max", 5], "--v-max 5.0: must be > --v-min"),
    ],
)
def test_bad_input_fails_fast_with_one_line(tmp_path, monkeypatch, capsys, flags, message):
    """Each bad field stops the run before anything is built, with exit status 2 and one line saying the allowed range.
    Mutation run: this script's own rules dropped from check_args (the run trains, or fails with a traceback)."""
    assert_one_line_error(
        run_main(c51, *QUICK, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys), message, tmp_path
    )


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_bad_checkpoint_fails_with_one_line(tmp_path, monkeypatch, capsys, kind):
    """A damaged file, one of dqn_atari.py, or one of another version of this script: one line, exit status 2."""
    own, foreign = atari_checkpoint(c51, tmp_path / "own.pt"), atari_checkpoint(dqn, tmp_path / "dqn.pt")
    path, message = bad_checkpoint(tmp_path, kind, own, foreign)
    result = run_main(c51, "--eval-checkpoint", path, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(result, message, tmp_path)


def test_divergence_stops_the_run_and_keeps_the_last_finite_weights(tmp_path, monkeypatch, capsys):
    """Mutation run: the check dropped (exit 0 with NaN losses)."""
    assert_stops_on_divergence(c51, tmp_path, monkeypatch, capsys, "loss")
