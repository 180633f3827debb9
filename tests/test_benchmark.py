"""Tests of benchmark/: the runner (Ray tasks, resuming, failures), the report's statistics and the smoke suite."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmark"))
import report  # noqa: E402
import run as runner  # noqa: E402
from suites import SUITES, Run  # noqa: E402


def run_tool(tool, *args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmark" / tool), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def result_with(returns, evals=()):
    """A run's metrics as the runner writes them, for training returns ending 10 steps apart."""
    episodes = [(10 * (k + 1), r) for k, r in enumerate(returns)]
    return {**runner.summarise(episodes, evals, 10 * len(returns)), "wall_s": 1.0}


def test_smoke_suite_runs_resumes_and_reports(tmp_path):
    """The CI suite: three short runs (CartPole, MinAtar, TD3 on Pendulum with a learning curve) as Ray tasks, their
    metrics written as they finish; a second start skips them; the report writes the table and the plot."""
    results = tmp_path / "results"
    out = run_tool("run.py", "--suite", "smoke", "--results-dir", results, "--num-cpus", 2, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3/3 runs  0 failed" in out.stdout
    for run in SUITES["smoke"]:
        result = json.loads((results / f"{run.id}.json").read_text())
        assert (
            result["episodes"] >= 3
            and len(result["curve"]) == 200
            and len(result["eval_returns"]) == 2
            and result["wall_s"] > 0
        )
        assert result["run"]["env_id"] == run.env_id and "--seed 1" in result["command"]
    td3 = json.loads((results / "ddpg_td3_sac-td3__Pendulum-v1__s1.json").read_text())
    assert [step for step, _ in td3["eval_curve"]] == [200, 400, 600] and td3["eval_curve"][-1][1] == pytest.approx(
        np.mean(td3["eval_returns"]), rel=1e-4
    )
    again = run_tool("run.py", "--suite", "smoke", "--results-dir", results, cwd=tmp_path)
    assert again.returncode == 0 and "3 finished before (skipped), 0 to run" in again.stdout, (
        again.stdout + again.stderr
    )
    out = run_tool("report.py", "--suite", "smoke", "--results-dir", results, "--out-dir", tmp_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "smoke.md").read_text()
    assert "| dqn_atari.py | CartPole-v1 | 1/1 |" in table and "| c51_atari.py | MinAtar/Breakout-v1 | 1/1 |" in table
    assert "| ddpg_td3_sac.py:td3 | Pendulum-v1 | 1/1 |" in table
    assert (tmp_path / "smoke.png").stat().st_size > 10_000


def test_a_failed_run_is_reported_with_its_last_lines_and_the_others_go_on(tmp_path, capsys):
    good = Run(
        "dqn_atari.py",
        "CartPole-v1",
        1,
        ("--total-timesteps", "300", "--learning-starts", "100", "--eval-episodes", "1"),
    )
    bad = Run(
        "dqn_atari.py",
        "CartPole-v1",
        2,
        (
            "--total-timesteps",
            "0",
        ),
    )
    failures = runner.run_suite("test", [bad, good], tmp_path, num_cpus=2)
    assert [f["run"]["seed"] for f in failures] == [2]
    assert (tmp_path / f"{good.id}.json").exists() and not (tmp_path / f"{bad.id}.json").exists()
    failed = json.loads((tmp_path / f"{bad.id}.failed.json").read_text())
    assert failed["returncode"] == 2 and any("--total-timesteps 0: must be ≥ 1" in line for line in failed["tail"])
    printed = capsys.readouterr().out
    assert "FAILED (exit 2)" in printed and "--total-timesteps 0: must be ≥ 1" in printed and "1 runs failed" in printed


def test_curve_is_the_moving_average_of_the_last_100_returns():
    """At each step, the mean return of the last 100 episodes finished by then (all of them before the 100th); the
    final training return is the mean of the last 100."""
    returns = np.arange(1, 251, dtype=float)  # episode k ends at step 10k with return k
    episodes = [(10 * k, r) for k, r in enumerate(returns, 1)]
    got = runner.moving_average(episodes, np.array([5, 10, 500, 999, 1000, 2500, 9999]))
    assert np.isnan(got[0])
    assert got[1:].tolist() == [
        1.0,
        np.mean(returns[:50]),
        np.mean(returns[:99]),
        np.mean(returns[:100]),
        np.mean(returns[150:]),
        np.mean(returns[150:]),
    ]
    result = result_with(returns)
    assert report.train_return_last100(result) == np.mean(returns[150:])
    assert report.train_return_last100(result_with(returns[:30])) == np.mean(returns[:30])
    assert len(result["curve"]) == 200 and result["curve"][-1] == [2500, np.mean(returns[150:])]
    assert report.curve(result, np.array([2500.0]))[0] == np.mean(returns[150:])


def test_evaluation_measures_read_the_learning_curve():
    """`eval_return_at` is the evaluation at exactly that step (NaN where there was none), and the normalised score
    is the last point of its curve, the final evaluation's."""
    result = runner.summarise(
        [(10, 1.0)], [7.0, 9.0], 30, eval_curve=[(10, 2.0), (20, 5.0), (30, 8.0)], eval_scores=[(10, 20.0), (30, 80.0)]
    )
    assert report.metric(result, "eval_return_at", 20) == 5.0 and np.isnan(report.metric(result, "eval_return_at", 25))
    assert report.metric(result, "normalized_score", None) == 80.0 and report.metric(result, "eval_return", None) == 8.0
    assert report.curve(result, np.array([15.0]), "eval_curve")[0] == 3.5
    assert np.isnan(report.curve(result, np.array([35.0]), "eval_curve")[0])


def test_an_anchor_beyond_the_runs_end_is_shown_but_not_compared():
    """The mujoco suite's CleanRL anchors sit at 1M steps, its runs end at 300k: the row names the anchor and where our
    runs end, with no verdict against the band; an anchor at the runs' end is compared. Mutation run: the training
    return at the end compared with the 1M anchor ("below")."""
    run = Run("ddpg_td3_sac.py", "Hopper-v5", 1, ("--total-timesteps", "300000"), variant="td3")
    anchor = {"label": "far", "mean": 5000.0, "std": 1.0, "step": 1_000_000, "metric": "train_return_last100"}
    anchors = {
        ("ddpg_td3_sac.py:td3", "Hopper-v5", "train_return_last100", 1_000_000): anchor,
        ("ddpg_td3_sac.py:td3", "Hopper-v5", "eval_return_at", 100_000): {
            **anchor,
            "label": "near",
            "mean": 1.0,
            "step": 100_000,
        },
    }
    grouped = {("ddpg_td3_sac.py:td3", "Hopper-v5"): [{**result_with([10.0] * 30), "eval_curve": [[100_000, 3.0]]}]}
    rows = report.table("mujoco", [run], grouped, anchors)
    far = next(row for row in rows if "at 1,000,000 " in row)
    assert (
        "runs end at 300,000" in far
        and "far: 5000.0" in far
        and not any(w in far for w in ("inside", "above", "below"))
    )
    near = next(row for row in rows if "eval return at 100,000 " in row)
    assert "3.0 (1 seed)" in near and "| above |" in near


def test_bootstrap_ci_of_the_mean():
    lo, hi = report.bootstrap_ci([3.0, 3.0, 3.0])
    assert lo == hi == 3.0
    values = np.random.default_rng(1).normal(10, 2, size=50)
    lo, hi = report.bootstrap_ci(values)
    half = 1.96 * values.std() / np.sqrt(len(values))  # the normal approximation it must agree with at n = 50
    assert lo < values.mean() < hi and abs((hi - lo) / 2 - half) < 0.06 * half
    assert all(np.isnan(report.bootstrap_ci([1.0])))


def test_iqm_of_scores_equal_to_the_anchors_is_one():
    """Each game's score is divided by its anchor before aggregating: a run scoring exactly the published numbers on
    every game has an IQM of 1.0, and twice them 2.0, whatever the games' scales."""
    anchors = report.load_anchors("minatar")
    published = {env: a["mean"] for (name, env, _, _), a in anchors.items() if name == "dqn_atari.py"}
    for factor in (1.0, 2.0):
        grouped = {("dqn_atari.py", env): [result_with([factor * mean] * 100)] * 2 for env, mean in published.items()}
        (line,) = [row for row in report.iqm_lines(grouped, anchors) if row.startswith("| dqn_atari.py")]
        assert f"| {factor:.2f} | {factor:.2f} – {factor:.2f} |" in line


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_anchor_names_a_source_and_every_suite_runs_scripts_that_exist(suite):
    for (name, env_id, _, _), anchor in report.load_anchors(suite).items():
        assert (
            anchor["source"]
            and anchor["metric"] in report.METRICS
            and ("std" in anchor or "band" in anchor or anchor.get("context"))
        )
        assert any(r.name == name and r.env_id == env_id for r in SUITES[suite]), anchor
    assert len({run.id for run in SUITES[suite]}) == len(SUITES[suite])  # no two runs write the same file
    for run in SUITES[suite]:
        assert (ROOT / run.script).exists() and int(run.flags[run.flags.index("--total-timesteps") + 1]) > 0
