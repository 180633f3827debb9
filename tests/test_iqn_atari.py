"""Tests of iqn_atari.py: the risk distortions and the per-sample-τ quantile loss from their definitions, the
τ embedding, and the script end to end."""

import math

import numpy as np
import pytest
import torch
from conftest import (
    ACROBOT,
    ATARI_BAD_ARGS,
    CHECKPOINT_KINDS,
    QUICK,
    assert_one_line_error,
    assert_stops_on_divergence,
    atari_checkpoint,
    atari_hot_path,
    bad_checkpoint,
    eval_returns,
    evaluate_checkpoint_twice,
    greedy_visited_states,
    run_main,
    run_script,
    smoke_test,
)
from test_qrdqn_atari import assert_gradient_is_the_definitions, example_inputs, loss_by_definition

import dqn_atari as dqn
import iqn_atari as iqn

MEASURES = [
    ("cvar", 0.25),
    ("wang", 0.75),
    ("wang", -0.75),
    ("pow", 2.0),
    ("pow", -2.0),
    ("cpw", 0.71),
    ("neutral", 0.0),
]


def phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def phi_inverse(p):
    return torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(p, dtype=torch.float64)).item()


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.9])
def test_distortions_match_their_formulas(tau):
    expected = {
        ("cvar", 0.25): 0.25 * tau,
        ("wang", 0.75): phi(phi_inverse(tau) + 0.75),
        ("wang", -0.75): phi(phi_inverse(tau) - 0.75),
        ("pow", 2.0): tau ** (1 / 3),
        ("pow", -2.0): 1 - (1 - tau) ** (1 / 3),
        ("cpw", 0.71): tau**0.71 / (tau**0.71 + (1 - tau) ** 0.71) ** (1 / 0.71),
        ("neutral", 0.0): tau,
    }
    for (measure, eta), value in expected.items():
        got = iqn.distort_taus(torch.tensor([tau], dtype=torch.float64), measure, eta).item()
        assert got == pytest.approx(value, rel=1e-9), (measure, eta)


@pytest.mark.parametrize("measure,eta", MEASURES)
def test_distortions_map_the_unit_interval_monotonically(measure, eta):
    taus = torch.linspace(0, 1, 1001, dtype=torch.float64)
    distorted = iqn.distort_taus(taus, measure, eta)
    assert torch.isfinite(distorted).all()
    assert (distorted >= 0).all() and (distorted <= 1).all()
    assert (distorted[1:] >= distorted[:-1]).all(), "a distortion must be non-decreasing"
    if measure != "cvar":  # CVaR_η maps [0, 1] onto [0, η]: only the lower tail is ever sampled
        assert distorted[0].item() == pytest.approx(0, abs=1e-12) and distorted[-1].item() == pytest.approx(1)


def test_risk_averse_and_seeking_distortions_move_the_mean_fraction():
    """Concave β (risk-averse) lowers the average τ it samples, convex β raises it."""
    taus = torch.rand(100_000, dtype=torch.float64)
    assert iqn.distort_taus(taus, "wang", -0.75).mean() < 0.45 < 0.55 < iqn.distort_taus(taus, "wang", 0.75).mean()
    assert iqn.distort_taus(taus, "pow", -2.0).mean() < 0.45 < 0.55 < iqn.distort_taus(taus, "pow", 2.0).mean()
    assert iqn.distort_taus(taus, "cvar", None).max() <= 0.25  # the paper's η


@pytest.mark.parametrize("kappa", [0.0, 1.0, 2.0])
def test_loss_with_per_sample_taus_matches_the_definition(kappa):
    quantiles, targets, taus = example_inputs(per_sample_taus=True, n=6, n_target=8)
    got = iqn.quantile_huber_loss(quantiles, targets, taus, kappa).tolist()
    assert got == pytest.approx(loss_by_definition(quantiles, targets, taus, kappa).tolist(), rel=1e-12)


@pytest.mark.parametrize("kappa", [0.0, 1.0, 2.0])
def test_gradient_with_per_sample_taus_matches_the_definition(kappa):
    assert_gradient_is_the_definitions(iqn.quantile_huber_loss, kappa, per_sample_taus=True, n=6, n_target=8)


def test_tau_embedding_and_shapes():
    """φ(τ) is built from cos(π i τ), i = 1..n_cos; quantiles come out [B, A, T] and depend on τ."""
    torch.manual_seed(0)
    envs = iqn.make_env("CartPole-v1", 1)
    net = iqn.QNetwork(envs, iqn.Args(n_cos=8, dueling=True))
    assert torch.equal(net.cos_i, torch.arange(1, 9) * torch.pi)
    x, taus = torch.randn(3, 4), torch.rand(3, 5)
    out = net.quantiles(x, taus)
    assert out.shape == (3, 2, 5)
    assert not torch.allclose(out[..., 0], out[..., 1])
    # each τ is embedded on its own: reordering the τ reorders the outputs
    perm = torch.tensor([4, 2, 0, 1, 3])
    assert torch.allclose(net.quantiles(x, taus[:, perm]), out[..., perm], atol=1e-6)
    assert net(x).shape == (3, 2)


# 8 τ samples per set instead of 64/64/32 keep the CPU smoke runs short; the code paths are the same
FEW_TAUS = ["--n-tau-samples", 8, "--n-target-samples", 8, "--n-act-samples", 8]


def test_smoke_breakout(tmp_path):
    smoke_test(
        "iqn_atari.py",
        tmp_path,
        "losses/loss",
        *FEW_TAUS,
        "--double",
        "--dueling",
        "--n-step",
        3,
        "--prioritized",
        "--noisy",
    )


def test_smoke_breakout_risk_cvar(tmp_path):
    smoke_test("iqn_atari.py", tmp_path, "losses/loss", *FEW_TAUS, "--risk", "cvar", "--risk-eta", 0.5)


@pytest.mark.slow
def test_learns_acrobot_and_leaves_the_rest_state(tmp_path):
    """The greedy evaluation (ε = 0.001) on Acrobot, whose hanging start needs a phase-dependent policy (see
    dqn_atari's test), with N = N' = 32 and K = 16 to halve the CPU time (the paper's 64/64/32 evaluated at −82.4,
    seed 1). As for QR-DQN the return need not see an inverted indicator; the learned quantile function must rise with
    τ: Z(0.95) > Z(0.05) on the states the greedy policy visits. Measured (seed 1): −85.8 and 1.00; with the indicator
    inverted (the mutation run) −83.6 and 0.00. Seeds 2 and 3 evaluated at −80.4 and −104.6."""
    out = run_script(
        "iqn_atari.py",
        *ACROBOT,
        "--n-tau-samples",
        32,
        "--n-target-samples",
        32,
        "--n-act-samples",
        16,
        "--save-model",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    returns = eval_returns(tmp_path)
    assert len(returns) == 10 and np.mean(returns) >= -150, returns
    q_network, states = greedy_visited_states(iqn, tmp_path, "Acrobot-v1")
    taus = torch.linspace(0.05, 0.95, 19).expand(len(states), 19)
    with torch.no_grad():
        quantiles = q_network.quantiles(states, taus)  # [800, A, 19]
    upper_tail_above = (quantiles[..., -1] > quantiles[..., 0]).float().mean().item()
    assert upper_tail_above > 0.9, upper_tail_above


@pytest.mark.parametrize(
    "env_id,risk", [("BreakoutNoFrameskip-v4", "wang"), ("CartPole-v1", "wang"), ("CartPole-v1", "cvar")]
)
def test_hot_path_has_no_host_sync(env_id, risk):
    """Acting (with a risk distortion), replay and the IQN update on the "meta" device, standing in for CUDA (see
    no_host_sync). Mutations run: the host-built `torch.arange(B)` row index, and Wang's Φ through
    torch.distributions.Normal, which validates its arguments: both as the script had them before."""

    def loss(q, target, data):
        return iqn.td_loss(q, target, data, True, 1.0, 8, 8)[:2]

    atari_hot_path(iqn, env_id, loss, dueling=True, risk=risk, n_act_samples=4)


def test_checkpoint_evaluation_is_seeded(tmp_path, capsys):
    """Two evaluations of one checkpoint with the same --seed give the same returns (ε = 0.5). Mutation run: the
    seeding after the --eval-checkpoint branch, as the script had it before."""
    first, second = evaluate_checkpoint_twice(iqn, tmp_path, capsys)
    assert first == second and "eval: mean return" in first


@pytest.mark.parametrize("risk,expected_action", [("cvar", 0), ("neutral", 1)])
def test_bootstrap_action_uses_the_distorted_fractions(monkeypatch, risk, expected_action):
    """The paper's Algorithm 1: a* = argmax_a' (1/K) Σ_k Z_τ̃k(s', a'), τ̃_k ~ β(U[0, 1]). A constructed quantile function
    where action 0 is a sure 0 and action 1 is Z_τ = 10τ − 3 (mean 2, but CVaR_0.25 = −1.75): the risk-neutral a* is
    1, the CVaR a* is 0, so the targets are r + γ·0 = r exactly. Mutation run: a* from undistorted τ (the script
    before), which bootstraps from action 1 under CVaR too."""

    def quantile_function(x, taus):
        return torch.stack([torch.zeros_like(taus), 10 * taus - 3], 1)  # [B, A = 2, T]

    envs = iqn.make_env("CartPole-v1", 1)
    q_network, target_network = (iqn.QNetwork(envs, iqn.Args(risk=risk)) for _ in range(2))
    q_network.quantiles = target_network.quantiles = quantile_function
    captured = {}

    def capture(quantiles, target, taus, kappa):
        captured["target"] = target
        return quantiles.sum()

    monkeypatch.setattr(iqn, "quantile_huber_loss", capture)
    rewards = torch.tensor([1.0, -2.0, 0.5])
    data = iqn.ReplayBatch(
        obs=torch.zeros(3, 4),
        actions=torch.tensor([0, 1, 0]),
        rewards=rewards,
        next_obs=torch.zeros(3, 4),
        terminated=torch.zeros(3),
        discounts=torch.full((3,), 0.99),
        weights=torch.ones(3),
    )
    for double in (False, True):
        iqn.td_loss(q_network, target_network, data, double, 1.0, 8, 16)
        bootstrapped_from_action_1 = not torch.equal(captured["target"], rewards[:, None].expand(3, 16))
        assert bootstrapped_from_action_1 == (expected_action == 1), (risk, double)


@pytest.mark.parametrize(
    "flags,message",
    [
        *ATARI_BAD_ARGS,
        (["--n-tau-samples", 0], "--n-tau-samples 0: must be ≥ 1"),
        (["--n-cos", 0], "--n-cos 0: must be ≥ 1"),
        (["--risk", "cvar", "--risk-eta", 1.5], "--risk-eta 1.5: must be in (0, 1] for cvar, > 0 for cpw"),
        (
            ["--risk-eta", 0.5],
            "--risk-eta 0.5: must be in (0, 1] for cvar, > 0 for cpw, and left out with --risk neutral",
        ),
    ],
)
def test_bad_input_fails_fast_with_one_line(tmp_path, monkeypatch, capsys, flags, message):
    """Each bad field stops the run before anything is built, with exit status 2 and one line saying the allowed range.
    Mutation run: this script's own rules dropped from check_args (the run trains, or fails with a traceback)."""
    assert_one_line_error(
        run_main(iqn, *QUICK, *flags, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys), message, tmp_path
    )


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_bad_checkpoint_fails_with_one_line(tmp_path, monkeypatch, capsys, kind):
    """A damaged file, one of dqn_atari.py, or one of another version of this script: one line, exit status 2."""
    own, foreign = atari_checkpoint(iqn, tmp_path / "own.pt"), atari_checkpoint(dqn, tmp_path / "dqn.pt")
    path, message = bad_checkpoint(tmp_path, kind, own, foreign)
    result = run_main(iqn, "--eval-checkpoint", path, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(result, message, tmp_path)


def test_divergence_stops_the_run_and_keeps_the_last_finite_weights(tmp_path, monkeypatch, capsys):
    """Mutation run: the check dropped (exit 0 with NaN losses)."""
    assert_stops_on_divergence(iqn, tmp_path, monkeypatch, capsys, "loss")
