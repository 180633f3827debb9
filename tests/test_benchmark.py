"""Tests of benchmark/: the runner (Ray tasks, resuming, failures), the report's statistics, the smoke suite, and the
committed reports and their copies in the docs against the committed results."""

import collections
import itertools
import json
import os
import platform
import re
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmark"))
import ddpg_lr  # noqa: E402
import report  # noqa: E402
import run as runner  # noqa: E402
from suites import SUITES, Run  # noqa: E402


def run_tool(tool, *args, cwd, timeout=600):
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmark" / tool), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def result_with(returns, evals=()):
    """A run's metrics as the runner writes them, for training returns ending 10 steps apart."""
    episodes = [(10 * (k + 1), r) for k, r in enumerate(returns)]
    return {**runner.summarise(episodes, evals, 10 * len(returns)), "wall_s": 1.0}


def cells(row: str) -> list[str]:
    """A markdown table row's cells, stripped."""
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_smoke_suite_runs_resumes_and_reports(tmp_path):
    """The CI suite: three short runs (CartPole, MinAtar, TD3 on Pendulum with a learning curve) as Ray tasks, their
    metrics written as they finish; a second start skips them; the report writes the table and the plot."""
    results = tmp_path / "results"
    out = run_tool(
        "run.py", "--suite", "smoke", "--results-dir", results, "--num-cpus", 2, "--allow-dirty", cwd=tmp_path
    )
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
    again = run_tool("run.py", "--suite", "smoke", "--results-dir", results, "--allow-dirty", cwd=tmp_path)
    assert again.returncode == 0 and "3 finished before (skipped), 0 to run" in again.stdout, (
        again.stdout + again.stderr
    )
    out = run_tool("report.py", "--suite", "smoke", "--results-dir", results, "--out-dir", tmp_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "smoke.md").read_text()
    assert "| dqn_atari | CartPole-v1 | 1/1 |" in table and "| c51_atari | MinAtar/Breakout-v1 | 1/1 |" in table
    assert "| ddpg_td3_sac td3 | Pendulum-v1 | 1/1 |" in table
    assert (tmp_path / "smoke.png").stat().st_size > 10_000


def test_a_failed_run_is_reported_with_its_last_lines_and_the_others_go_on(tmp_path, capsys):
    """Also: `threads` reach the script (--threads 2 in the recorded command), each run holds that many of Ray's CPUs,
    so that on 2 CPUs the two runs go one after the other, and the runs keep the runner's niceness; a result records the
    versions of the packages that ran it and torch's CPU kernels; the first line's ETA counts one run at a time, each
    taking the wall time of the cell's finished seed. Mutations run: the command's --threads left at 1; the task's CPUs
    left at 1 (the runs overlap); Ray's worker niceness left at its default; the software left out of the result, every
    version read as torch's, a package's name misspelled, the CPU left empty and the kernels' set hard-coded to AVX2;
    the ETA's slots counted without --threads; the finished seeds outside the runs asked for not read; failures read."""
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
    # the results folder also holds a finished seed of the cell, outside the runs asked for (as with --only): the ETA's
    # guess at each run's wall time; a failure's wall time and a file cut short are not read
    earlier = {"run": good._replace(seed=3)._asdict(), "returncode": 0, "wall_s": 1000.0}
    (tmp_path / "dqn_atari__CartPole-v1__s3.json").write_text(json.dumps(earlier))
    (tmp_path / "dqn_atari__CartPole-v1__s4.failed.json").write_text(
        json.dumps({**earlier, "returncode": 1, "wall_s": 1.0})
    )
    (tmp_path / "dqn_atari__CartPole-v1__s5.json").write_text('{"run": ')
    failures = runner.run_suite("test", [bad, good], tmp_path, num_cpus=2, threads=2)
    assert [f["run"]["seed"] for f in failures] == [2]
    assert (tmp_path / f"{good.id}.json").exists() and not (tmp_path / f"{bad.id}.json").exists()
    assert "--threads 2 " in json.loads((tmp_path / f"{good.id}.json").read_text())["command"]
    failed = json.loads((tmp_path / f"{bad.id}.failed.json").read_text())
    first, second = sorted([failed, json.loads((tmp_path / f"{good.id}.json").read_text())], key=lambda r: r["start_s"])
    assert first["wall_s"] >= 1  # long enough for an overlap to show
    assert first["start_s"] + first["wall_s"] - 0.1 <= second["start_s"]
    assert first["nice"] == second["nice"] == os.nice(0)
    software = json.loads((tmp_path / f"{good.id}.json").read_text())["software"]
    assert software["python"] == platform.python_version()
    assert software["packages"]["torch"] == torch.__version__ and software["packages"]["numpy"] == np.__version__
    assert software["packages"]["gymnasium"] == gymnasium.__version__
    assert all(software["packages"].values()) and software["cpu"]  # requirements.txt installs every one of them
    assert software["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert failed["returncode"] == 2 and any("--total-timesteps 0: must be ≥ 1" in line for line in failed["tail"])
    printed = capsys.readouterr().out
    assert "0/2 runs  0 failed  0.0 min  ETA 33.3 min" in printed  # two runs of 1000 s, one at a time
    assert "FAILED (exit 2)" in printed and "--total-timesteps 0: must be ≥ 1" in printed and "1 runs failed" in printed


def test_the_eta_schedules_the_runs_left_on_the_slots_at_their_cells_mean_wall_times():
    """Mutations run: the time elapsed not subtracted; the clamp at 0 dropped; a run going past its guess allowed to end
    before now; the slots ignored (one after the other); an ended run given its cell's mean, not the time it ended;
    no fallback to every cell's mean."""
    iqn_s2, iqn_s3 = Run("iqn_atari.py", "MinAtar/Breakout-v0", 2), Run("iqn_atari.py", "MinAtar/Breakout-v0", 3)
    dqn = Run("dqn_atari.py", "MinAtar/Breakout-v0", 1)
    walls = {("iqn_atari.py", "MinAtar/Breakout-v0"): [3600.0, 2400.0]}
    assert runner.eta_s([iqn_s2, iqn_s3], {}, walls, slots=1, elapsed=600) == 2 * 3000 - 600
    assert runner.eta_s([iqn_s2, iqn_s3], {}, walls, slots=2, elapsed=600) == 3000 - 600
    assert runner.eta_s([iqn_s2, iqn_s3, dqn], {}, walls, slots=2, elapsed=0) == 2 * 3000  # DQN: every cell's mean
    assert runner.eta_s([iqn_s2, iqn_s3], {}, walls, slots=1, elapsed=7000) == 3000  # seed 2 past its guess ends now
    assert runner.eta_s([iqn_s2], {iqn_s2.id: 100.0}, walls, slots=1, elapsed=500) == 0  # all ended: 0, not negative
    walls[("iqn_atari.py", "MinAtar/Breakout-v0")].append(1900.0)  # seed 2 took 1900 s and ended 2000 s in
    assert runner.eta_s([iqn_s2, iqn_s3], {iqn_s2.id: 2000.0}, walls, slots=1, elapsed=2100) == pytest.approx(
        2000 + 7900 / 3 - 2100
    )
    assert runner.eta_s([dqn], {}, {}, slots=1, elapsed=0) is None
    assert "ETA n/a" in runner.progress_line(0, 1, 0, 0.0, None)


def test_a_run_in_flight_is_timed_by_its_progress_lines():
    """The pace is the steps over the window of the last PACE_WINDOW_S, from every script's progress line but those
    printed before learning starts; a run in flight with a pace holds its slot until then, with or without wall
    times to go by. Mutations run: the `ETA n/a` lines read; the time since the last line not subtracted; the
    window's first point dropped one too early and never; the points kept when the steps go back; a run in flight
    put after the others' slots (heappush), or in its place in the list; a run in flight also given its cell's mean."""
    line = "step 1200/100000  SPS 512  ETA 3.2 min  return 10.5 (last 20)  eval n/a  grad steps 300"
    assert runner.progress_step(line) == (1200, 100000)
    assert runner.progress_step("step 5000/1000000  812 gradient steps/s  ETA 20.4 min  eval n/a") == (5000, 1000000)
    assert runner.progress_step("step 100/50000  SPS 900  ETA n/a before learning starts at step 25000") is None
    assert runner.progress_step("bonus rnd: step 10/1000  ETA 5 s") is None  # IQL's bonus pretraining
    assert runner.seconds_left([(0.0, 1000), (60.0, 1600)], 10000, now=70.0) == (10000 - 1600) * 60 / 600 - 10
    assert runner.seconds_left([(0.0, 1000), (60.0, 1000)], 10000, now=70.0) is None  # the steps have not moved
    assert runner.seconds_left([(0.0, 1000), (60.0, 9990)], 10000, now=600.0) == 0

    clock = iter(range(0, 2000, 100))
    board = runner.Board(clock=lambda: float(next(clock)))  # a post every 100 s, then left()
    for step in (0, 50, 100, 200, 400, 600, 800, 1000, 1200, 1400):  # at 0 s, ..., 900 s: slow, then 2 steps/s
        board.post("a", step, 10000)
    board.post("b", 0, 500)  # at 1000 s: no pace yet
    assert board.left() == {"a": (10000 - 1400) / 2 - 200}  # at 1100 s
    assert [t for t, _ in board.points["a"]] == [300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0]  # 600 s from 300 s
    board.post("a", 0, 10000)  # at 1200 s: Ray ran the task again
    assert list(board.points["a"]) == [(1200.0, 0)] and board.left() == {}

    iqn_s2, iqn_s3 = Run("iqn_atari.py", "MinAtar/Breakout-v0", 2), Run("iqn_atari.py", "MinAtar/Breakout-v0", 3)
    walls = {("iqn_atari.py", "MinAtar/Breakout-v0"): [3000.0]}
    in_flight = {iqn_s2.id: 100.0}
    assert runner.eta_s([iqn_s2, iqn_s3], {}, walls, slots=1, elapsed=600, left=in_flight) == 100 + 3000
    assert runner.eta_s([iqn_s2, iqn_s3], {}, walls, slots=2, elapsed=600, left=in_flight) == 3000 - 600
    assert runner.eta_s([iqn_s2], {}, {}, slots=1, elapsed=600, left=in_flight) == 100
    # seed 3 waits while seeds 2 and 4 run (Ray starts runs in any order): it starts at 700 s, when a slot frees
    iqn_s4 = Run("iqn_atari.py", "MinAtar/Breakout-v0", 4)
    in_flight[iqn_s4.id] = 100.0
    assert runner.eta_s([iqn_s2, iqn_s3, iqn_s4], {}, walls, slots=2, elapsed=600, left=in_flight) == 100 + 3000


def test_the_runner_reads_the_eta_of_a_run_in_flight_from_its_progress_lines(tmp_path, monkeypatch, capsys):
    """A script outside the repository (an absolute path, so its failure is written beside it) stands in for a long
    run: a line before learning starts, then four progress lines at 400 steps/s, and a wait. While it runs, the
    runner's ETA is its steps left at that pace (about 4 min), not the 1000 min of the cell's finished seed. Mutations
    run: no post to the board; the board's times left out of the ETA."""
    script = tmp_path / "paced.py"
    script.write_text(
        "import time\n"
        "print('step 900/100000  SPS 9000  ETA n/a before learning starts at step 1000', flush=True)\n"
        "time.sleep(1)\n"
        "for step in (1000, 1200, 1400, 1600):\n"
        "    print(f'step {step}/100000  SPS 400  ETA 4.1 min', flush=True)\n"
        "    time.sleep(0.5)\n"
        "time.sleep(4)\n"
        "raise SystemExit(1)\n"
    )
    run = Run(str(script), "CartPole-v1", 1)
    results = tmp_path / "results"
    results.mkdir()
    finished = {"run": run._replace(seed=2)._asdict(), "returncode": 0, "wall_s": 60000.0}
    (results / "paced__CartPole-v1__s2.json").write_text(json.dumps(finished))
    monkeypatch.setattr(runner, "POLL_S", 1)
    assert len(runner.run_suite("test", [run], results, num_cpus=1)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any("0/1 runs  0 failed  0.0 min  ETA 1000.0 min" in line for line in lines)
    etas = [float(line.split("ETA ")[1].split(" min")[0]) for line in lines if "(runs in progress)" in line]
    assert any(1 < eta < 20 for eta in etas), lines  # about 4: loose, for the posts' delays on a busy machine


def test_a_new_tags_first_runs_take_their_eta_from_the_suites_own_runs_of_their_cells(tmp_path, monkeypatch, capsys):
    """A tagged run whose cell has no finished run in its folder yet (a new --tag) takes the wall times of the suite's
    own runs of that cell, in benchmark/results/<suite>; once a tagged run of the cell succeeds, the cell goes by the
    tagged runs alone. Mutations run: the tag not appended to the suite's variants (the cell takes every cell's mean);
    the suite's times put over the folder's; run_suite reading only its folder; the times not read again when a run
    ends (the suite's and the tagged run's mixed). That main hands the tag to run_suite is checked in
    test_seeds_flags_and_tag_run_a_suites_cells_as_runs_of_their_own."""
    flags = ("--total-timesteps", "300", "--learning-starts", "100", "--eval-episodes", "1")
    cell, other = Run("dqn_atari.py", "CartPole-v1", 1, flags), Run("dqn_atari.py", "Acrobot-v1", 1, flags)
    suite_dir, tagged_dir = tmp_path / "test", tmp_path / "test-lr1e-3"
    suite_dir.mkdir()
    for own, wall in ((cell, 1200.0), (cell._replace(seed=2), 1800.0), (other, 6000.0)):
        (suite_dir / f"{own.id}.json").write_text(json.dumps({"run": own._asdict(), "returncode": 0, "wall_s": wall}))
    runs = runner.plan([cell], seeds=[3, 4], flags=["--learning-rate", "1e-3"], tag="lr1e-3")
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    assert runner.run_suite("test", runs, tagged_dir, num_cpus=1, tag="lr1e-3") == []
    lines = capsys.readouterr().out.splitlines()
    # two runs one at a time, each at the mean of the cell's 1200 s and 1800 s (not every cell's 3000 s)
    assert any(line.startswith("[") and "0/2 runs  0 failed  0.0 min  ETA 50.0 min" in line for line in lines)
    first = next(line for line in lines if "1/2 runs" in line and runs[0].id in line)
    assert float(first.split("ETA ")[1].split(" min")[0]) < 1  # seed 4 at seed 3's seconds, not at ~1000 s
    walls = runner.known_walls(tagged_dir, suite_dir, "lr1e-3")[(runs[0].name, runs[0].env_id)]
    assert len(walls) == 2 and max(walls) < 600  # the tagged runs' own


def test_ddpg_lr_counts_each_seed_and_the_mean_curve_against_tianshous_band(tmp_path):
    """Mutations run: inside/above swapped; the band's edges counted outside; the counts starting at 10k; a failed run
    counted; the suite's runs left out of 3e-4; the seed-by-seed column counting 3e-4 above 1e-3; std with ddof = 1;
    the learning-rate check dropped; a mean equal to Tianshou's counted under it; the steps outside the band listed
    when there are none; a missing seed given four empty cells for five."""
    published, suite, outside = tmp_path / "published", tmp_path / "mujoco", tmp_path / "mujoco-ddpg-lr"
    for folder in (published, suite, outside):
        folder.mkdir()
    steps = range(10_000, 300_001, 10_000)
    for env_id in ddpg_lr.ENVS:  # Tianshou's band: 100 ± 10, at 25k and every 10k (10k and 20k: not compared)
        band = {"steps": [25_000, *steps], "mean": [100.0] * 31, "lo": [90.0] * 31, "hi": [110.0] * 31}
        (published / f"mujoco__ddpg_td3_sac-ddpg__{env_id}__tianshou.json").write_text(json.dumps(band))

    env = "Hopper-v5"

    def write(folder, name, seed, returns, rate=None, returncode=0, env_id=env):
        """A run's result as the runner names it (`.failed.json` if it failed), its evaluations `returns` at their
        steps, else `returns[0]`."""
        curve = [[s, 1000.0 if s < 30_000 else returns.get(s, returns[0])] for s in steps]  # 1000: not compared
        flags = ["--algo", "ddpg"] + (["--learning-rate", rate] if rate else [])
        result = {"run": {"seed": seed, "flags": flags}, "returncode": returncode, "commit": "c0ffee", "wall_s": 90.0}
        path = folder / f"ddpg_td3_sac-{name}__{env_id}__s{seed}{'.failed' if returncode else ''}.json"
        path.write_text(json.dumps({**result, "eval_curve": curve}))

    write(suite, "ddpg", 1, {0: 120.0, 300_000: 110.0})  # above but at 300k, on the band's upper edge
    write(outside, "ddpg_lr3e-4", 2, {0: 80.0, 40_000: 140.0}, "3e-4")  # below but at 40k
    write(outside, "ddpg_lr1e-3", 1, {0: 104.0, **{s: 130.0 for s in range(30_000, 150_001, 10_000)}}, "1e-3")
    write(outside, "ddpg_lr1e-3", 3, {0: 0.0}, "1e-3", returncode=1)  # failed, then run again
    write(outside, "ddpg_lr1e-3", 3, {0: 96.0}, "1e-3")
    summary, rows = ddpg_lr.env_tables(env, tmp_path, published)
    band = "100 ± 10 / 100 ± 10"
    assert [cells(r) for r in summary] == [
        [env, "3e-4", "1, 2 (2)", "100 ± 20", "95 ± 15", band, "inside / inside", "27 / 1 / 0 (40k outside)", "1"],
        [env, "1e-3", "1, 3 (2)", "113 ± 17", "100 ± 4", band, "above / inside", "15 / 13 / 0", "0"],
    ]
    empty = [""] * 5
    assert [cells(r) for r in rows] == [
        ["1", "120", "110", "1 / 27 / 0", "c0ffee", "1.5", "130", "104", "15 / 13 / 0", "c0ffee", "1.5", "13"],
        ["2", "80", "80", "0 / 1 / 27", "c0ffee", "1.5", *empty, ""],
        ["3", *empty, "96", "96", "28 / 0 / 0", "c0ffee", "1.5", ""],
    ]
    for table in ddpg_lr.report(tmp_path, published).split("\n\n"):  # every row as wide as its header
        widths = {len(cells(line)) for line in table.splitlines() if line.startswith("|")}
        assert len(widths) <= 1, table
    write(suite, "ddpg", 1, {0: 100.0}, env_id="Walker2d-v5")  # inside at every evaluation
    assert cells(ddpg_lr.env_tables("Walker2d-v5", tmp_path, published)[0][0])[-2:] == ["28 / 0 / 0", "0"]
    assert ddpg_lr.seeds_label([1, 2, 3, 5, 7, 8]) == "1–3, 5, 7, 8"
    write(outside, "ddpg_lr1e-3", 4, {0: 100.0}, "3e-4")  # a file whose flags are not its name's
    with pytest.raises(SystemExit, match="learning rate 3e-4"):
        ddpg_lr.env_tables(env, tmp_path, published)


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
    runs end, with no verdict against the band, no seed count and no wall time; an anchor at the runs' end is compared.
    Mutations run: the training return at the end compared with the 1M anchor ("below"); the wall time printed on
    every row of a script and env that has runs (the far row's wall cell "0.0 min")."""
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
    assert cells(near)[2] == "1/1" and cells(near)[8] == "0.0 min"
    assert cells(far)[2] == cells(far)[8] == ""  # no seeds and no wall time on a row without values


def test_bootstrap_ci_of_the_mean():
    lo, hi = report.bootstrap_ci([3.0, 3.0, 3.0])
    assert lo == hi == 3.0
    values = np.random.default_rng(1).normal(10, 2, size=50)
    lo, hi = report.bootstrap_ci(values)
    half = 1.96 * values.std() / np.sqrt(len(values))  # the normal approximation it must agree with at n = 50
    assert lo < values.mean() < hi and abs((hi - lo) / 2 - half) < 0.06 * half
    assert all(np.isnan(report.bootstrap_ci([1.0])))


def minatar_dqn_final_anchors() -> dict:
    """The MinAtar paper's DQN anchors of the final training return, the ones the IQM divides by."""
    return {
        key: a
        for key, a in report.load_anchors("minatar").items()
        if key[0] == "dqn_atari.py" and key[2:] == ("train_return_last100", 1_000_000)
    }


def test_iqm_of_scores_equal_to_the_anchors_is_one():
    """Each game's score is divided by its anchor before aggregating: a run scoring exactly the published numbers on
    every game has an IQM of 1.0, and twice them 2.0, whatever the games' scales. Only the final training return's
    anchors count. Mutation run: every anchor of the game counts (the 250k ones replace the 1M ones: IQM 0.01)."""
    anchors = minatar_dqn_final_anchors()
    published = {env: a["mean"] for (_, env, _, _), a in anchors.items()}
    # anchors of the training curve before the end, far from the end's, must not enter the aggregate
    anchors |= {("dqn_atari.py", env, "train_return_at", 250_000): {"mean": 100 * m} for env, m in published.items()}
    for factor in (1.0, 2.0):
        grouped = {("dqn_atari.py", env): [result_with([factor * mean] * 100)] * 2 for env, mean in published.items()}
        (line,) = [row for row in report.iqm_lines(grouped, anchors) if row.startswith("| dqn_atari |")]
        assert f"| {factor:.2f} | {factor:.2f} – {factor:.2f} |" in line


def test_iqm_ci_is_the_same_on_every_run():
    """The aggregate's bootstrap CI is a function of the script's scores alone: not of numpy's global RNG, which
    rliable's resampling draws from, nor of the other scripts' rows. Mutation run: without the seeding in `iqm_lines`
    the lines differ."""
    anchors = minatar_dqn_final_anchors()
    rng = np.random.default_rng(0)

    def runs():
        return {
            env: [result_with([a["mean"] * rng.uniform(0.2, 3.0)] * 100) for _ in range(3)]
            for (_, env, _, _), a in anchors.items()
        }

    dqn, c51 = runs(), runs()
    lines = set()
    for state in range(1, 6):
        for others in ({}, {("c51_atari.py", env): results for env, results in c51.items()}):
            np.random.seed(state)
            grouped = {**others, **{("dqn_atari.py", env): results for env, results in dqn.items()}}
            lines |= {row for row in report.iqm_lines(grouped, anchors) if row.startswith("| dqn_atari |")}
    assert len(lines) == 1


REPORTED = ("classic", "minatar", "mujoco", "offline")  # the suites with committed results


@pytest.mark.parametrize("suite", REPORTED)
def test_each_committed_report_is_what_report_py_writes_from_the_committed_results(suite, tmp_path):
    """benchmark/results/<suite>.md, and mujoco-ddpg-lr.md, are regenerated from the JSON beside them: a result added
    or changed without running the report fails here. Mutation run: one committed result's `wall_s` changed (each
    suite, and a DDPG file in mujoco-ddpg-lr/)."""
    report.report(suite, report.RESULTS / suite, tmp_path)
    assert (tmp_path / f"{suite}.md").read_text() == (report.RESULTS / f"{suite}.md").read_text()
    if suite == "mujoco":
        assert ddpg_lr.report() == (report.RESULTS / "mujoco-ddpg-lr.md").read_text()


def report_rows_and_cells() -> tuple[dict, set]:
    """The committed reports' table rows by (script, env, measure), their cells kept as `kept_cells` keeps them, and
    the set of every cell of every report's tables (− read as -)."""
    assert {path.stem for path in report.RESULTS.glob("*.md")} == {*REPORTED, "mujoco-ddpg-lr"}  # none unchecked
    rows, values = {}, set()
    for path in sorted(report.RESULTS.glob("*.md")):
        for line in path.read_text().splitlines():
            if line.startswith("| "):
                values |= {c.replace("−", "-") for c in cells(line)}
                if path.stem in REPORTED and cells(line)[0] != "script" and row_key(line):  # not a table's header
                    assert rows.setdefault(row_key(line), kept_cells(line)) == kept_cells(line), line  # one row a key
    return rows, values


def row_key(line):
    return tuple(cells(line)[i] for i in (0, 1, 3)) if len(cells(line)) > 3 else None


def kept_cells(line):
    """A table row's cells, the empty ones and the footnote marks aside."""
    return [re.sub(r"\s*\[\^\d+\]", "", c) for c in cells(line) if c]


def table_lines(text, header):
    """The lines of the markdown table whose header row starts with `header`: the header, the rule and the rows."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    return list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))


def test_what_the_docs_pages_quote_from_the_reports_is_the_reports_text():
    """A row of a docs table headed like a report's (`| script | env | seeds | measure |`) names a report row by its
    script, env and measure, and has its cells, the empty ones and footnote marks aside; so has any other table row
    that names one. A table cell that gives a mean ± std with each seed's value is a cell of a report (− read as -).
    Mutation run: a value changed in a copied row of docs/ddpg_td3_sac.md, and in a per-seed cell of docs/dqn.md's
    MinAtar table and of docs/c51.md's; a measure reworded in a row of docs/ddpg_td3_sac.md's report table."""
    rows, values = report_rows_and_cells()
    per_seed = re.compile(r"-?[\d.,]+ ± [\d.,]+ \(.+, .+\)")
    copies = quoted = 0
    for page in sorted((ROOT / "docs").glob("*.md")):
        header = None
        for line in page.read_text().splitlines():
            if not line.startswith("|"):
                header = None
            elif header is None:
                header = cells(line)
            elif not line.startswith("|---"):
                if header[0] == "script" and header[3:4] == ["measure"]:
                    assert row_key(line) in rows, (page.name, line)
                if row_key(line) in rows:
                    assert kept_cells(line) == rows[row_key(line)], (page.name, line)
                    copies += 1
                for cell in (c.replace("−", "-") for c in cells(line)):
                    if per_seed.fullmatch(cell):
                        assert cell in values, (page.name, cell)
                        quoted += 1
    assert copies > 50 and quoted > 80  # the docs pages quote the suites' rows and values


def section_blocks(page, anchor: str) -> tuple[str, list[str]]:
    """The heading of `page` whose GitHub anchor is `anchor`, and the paragraphs and list items of its section, up to
    the next heading of its level or higher; tables, code and images left out."""
    lines = page.read_text().splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line.startswith("#") and report.heading_anchor(line.lstrip("#").strip()) == anchor
    )
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    blocks, code = [], False
    for line in lines[start + 1 :]:
        code ^= line.startswith("```")
        if not code and line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        if code or not line.strip() or line.startswith(("|", "```", "![")):
            blocks.append("")
        elif line.startswith("- ") or not blocks or not blocks[-1]:
            blocks.append(line)
        else:
            blocks[-1] += " " + line.strip()
    return lines[start], [b for b in blocks if b]


def test_headings_anchors_are_githubs():
    """GitHub's rule: lower case, every character but letters, digits, spaces, - and _ dropped, each space a hyphen.
    Mutation run: punctuation kept; spaces dropped instead of made hyphens."""
    assert report.heading_anchor("`classic`: CleanRL's classic-control protocol (500k steps)") == (
        "classic-cleanrls-classic-control-protocol-500k-steps"
    )
    assert report.heading_anchor("Extension 2: anti-exploration bonus (`--bonus rnd|cvae`)") == (
        "extension-2-anti-exploration-bonus---bonus-rndcvae"
    )


VARIANT_NAMES = {  # how a docs page names a variant's algorithm where it explains its results
    "td3": "TD3 with its defaults",
    "td3_paper": "TD3 with the paper's settings",
    "ddpg": "DDPG",
    "sac": "SAC",
}


@pytest.mark.parametrize("suite", REPORTED)
def test_each_cell_outside_its_anchors_band_is_answered_on_its_scripts_page(suite):
    """Every (script, env) of a committed report whose mean is outside its anchor's band at some measure has a line
    under the table linking to the section of the script's docs page that names the suite, and that section has a
    paragraph or list item that names the env's game in its first 40 characters, with the algorithm for a variant
    ("On Breakout (seeds 1–3 ...", "DDPG on HalfCheetah"); what it says is the docs' to get right. Mutation run:
    docs/dqn.md's "On Breakout (seeds" made "On the first game (seeds"; the bullet "DDPG on Walker2d" made "DDPG's
    third env"; "TD3 with its defaults on Walker2d" made "TD3 on Walker2d"; `outside_lines` giving no line (also the
    committed-report test); the link's heading the page's first; the link to docs/c51.md."""
    text = (report.RESULTS / f"{suite}.md").read_text()
    outside = {
        (cells(line)[0], cells(line)[1])
        for line in text.splitlines()
        if line.startswith("| ") and cells(line)[-2] in ("above", "below")
    }
    listed = re.findall(r"^- (\S+(?: \S+)?), (\S+): .+\. \[docs/\S+: .+\]\(\.\./\.\./docs/(\S+)#(\S+)\)$", text, re.M)
    assert {(script, env_id) for script, env_id, *_ in listed} == outside
    for script, env_id, page, anchor in listed:
        assert script.split()[0].startswith(page.removesuffix(".md")), (script, page)  # dqn_atari: dqn.md
        game = re.sub(r"-v\d+$", "", env_id.split("/")[-1])
        algorithm = VARIANT_NAMES[script.split()[1]] if " " in script else ""
        heading, blocks = section_blocks(ROOT / "docs" / page, anchor)
        assert f"`{suite}`" in heading
        openers = [re.sub(r"^- |\*\*", "", block)[:40] for block in blocks]
        assert any(game in o and algorithm in o for o in openers), (suite, script, env_id)
    assert len(listed) == text.count("\n- ")  # every line of the list read


README_SCRIPTS = {  # the README results table's name of each report's script and variant
    "DQN": "dqn_atari",
    "C51": "c51_atari",
    "QR-DQN": "qrdqn_atari",
    "IQN": "iqn_atari",
    "FQF": "fqf_atari",
    "Rainbow": "c51_atari rainbow",
    "Rainbow without prioritized replay": "c51_atari rainbow_no_per",
    "without noisy nets": "c51_atari rainbow_no_noisy",
    "TD3, paper's settings": "ddpg_td3_sac td3_paper",
    "TD3, its defaults": "ddpg_td3_sac td3",
    "DDPG": "ddpg_td3_sac ddpg",
    "SAC": "ddpg_td3_sac sac",
    "IQL": "iql_offline iql",
    "BC": "iql_offline bc",
    "`--d2rl`": "iql_offline d2rl",
    "`--bonus rnd`": "iql_offline rnd",
    "`--bonus cvae`": "iql_offline cvae",
    "`--distributional`": "iql_offline distributional",
}
README_SUITES = {  # suite: its env id, from the last word of the README's env, and the measures it gives, in order
    "classic": ("{}", ["train return, last 100 episodes at 500,000"]),
    "minatar": ("MinAtar/{}", ["train return, last 100 episodes at 1,000,000"]),
    "mujoco": ("{}", ["eval return at 100,000", "eval return at 300,000"]),
    "offline": ("hopper/sac-{}-v0", ["final normalised score at 50,000"]),
}


def test_the_readmes_results_table_gives_its_rows_report_values():
    """Each row of the README's results table names report rows: its scripts, envs and measures, each " / " a list,
    in that order. Each value in "ours" is its report row's mean ± std, or its mean rounded; each "(n)" is the rows'
    finished seeds; each number of its anchor is one of the rows' anchors', rounded ("none" where they have none; the
    offline datasets' own score from `datasets.json`); "vs band" is the rows', empty only where theirs are. Mutation
    run: a mean ± std changed (−87.1 to −87.2), a mean alone of each kind (5350 to 5351, 383 to 384, 17.1 to 17.2), two
    rows' DDPG means swapped (472 and 236), a seed count (3 to 2), a band changed (below to inside) and one emptied
    (MountainCar's above), and an anchor's number changed (488.7 to 499.7, 7697 to 7797, the data's 7.2 to 9.2, and
    Tianshou's 387 to 10, which its label's "10 seeds" holds)."""
    rows, _ = report_rows_and_cells()
    datasets = json.loads((report.RESULTS / "offline" / "datasets.json").read_text())
    table = table_lines((ROOT / "README.md").read_text().replace("−", "-"), "| suite | script | env | ours")
    suite, checked = None, 0
    for line in table[2:]:
        first, scripts, envs, ours, anchor, bands = cells(line)
        suite = first.partition(",")[0] or suite
        env_id, measures = README_SUITES[suite]
        keys = [
            (README_SCRIPTS[s], env_id.format(e.split()[-1]), m)
            for s in scripts.split(" / ")
            for e in envs.split(" / ")
            for m in measures
        ]
        values = re.sub(r" \(\d+\)", "", ours).split(" / ")
        assert len(values) == len(keys) and set(re.findall(r"\((\d+)\)", ours)) == {
            rows[k][2].partition("/")[0] for k in keys
        }, line
        for key, value in zip(keys, values):
            ours_cell = rows[key][4].replace("−", "-")
            mean = float(ours_cell.split(" ± ")[0])
            assert ours_cell.startswith(f"{value} (") if " ± " in value else rounds_to(mean, value), (line, ours_cell)
            checked += 1
        theirs = [next(c for c in rows[k][5:] if c == "none" or ": " in c).replace("−", "-") for k in keys]
        if anchor.startswith("the data's "):
            assert {rounds_to(datasets[k[1]]["normalized_score"], anchor.split()[-1]) for k in keys} == {True}, line
        elif anchor == "none":
            assert set(theirs) == {"none"}, line
        else:
            # the numbers of each side's value, not of its label ("TD3", "v3 envs, 10 seeds")
            numbers = [float(x) for c in theirs for x in re.findall(r"-?\d[\d.]*", c.partition(": ")[2])]
            quoted = re.findall(r"(?<![\w.])-?\d[\d.]*", anchor)
            assert quoted and all(any(rounds_to(n, x) for n in numbers) for x in quoted), line
        expected = [next((c for c in rows[k] if c in ("inside", "above", "below")), "") for k in keys]
        assert bands.split(" / ") == expected or bands == "" == "".join(expected), line
    assert checked == 68  # 41 rows


def rounds_to(value: float, given: str) -> bool:
    """Whether `given` is `value`, a report's number (given there to 0.1 or finer), rounded to `given`'s decimals."""
    decimals = len(given.partition(".")[2])
    return abs(value - float(given)) <= 0.5 * 10**-decimals + (0.05 if decimals == 0 else 0) + 1e-9  # ties either way


def test_the_readmes_headline_results_are_report_values():
    """Each mean ± std of ours in the README's first table (before "vs", its anchor) is a mean ± std of a report row of
    that table row's script, rounded, over the "(n seeds)" it gives. Mutation run: 5350 ± 567 to 5350 ± 568, 12.9 ± 0.9
    to 12.9 ± 1.0 (one without a seed count), −84.2 ± 1.8 (3 seeds) to (2 seeds) and to (1 seed), and DQN's CartPole
    value given as C51's."""
    rows, _ = report_rows_and_cells()
    ours = collections.defaultdict(list)  # script file: (mean, std, seeds) of each of its report rows
    for (script, _, _), row in rows.items():
        match = re.fullmatch(r"(-?[\d.]+) ± ([\d.]+) \((.+)\)", row[4].replace("−", "-"))
        if match:
            ours[f"{script.split()[0]}.py"].append((float(match[1]), float(match[2]), str(len(match[3].split(", ")))))
    table = table_lines((ROOT / "README.md").read_text().replace("−", "-"), "| script | algorithm | headline")
    quoted = [
        (script.strip("`"), *q)
        for script, _, headline, _ in map(cells, table[2:])
        for q in re.findall(r"(-?[\d.]+) ± ([\d.]+)(?: \((\d+) seeds?\))?", headline.partition(" vs ")[0])
    ]
    unmatched = [
        (script, mean, std, seeds)
        for script, mean, std, seeds in quoted
        if not any(rounds_to(m, mean) and rounds_to(s, std) and seeds in ("", n) for m, s, n in ours[script])
    ]
    assert len(quoted) == 17 and unmatched == []


def test_the_ddpg_pages_learning_rate_table_is_ddpg_lrs():
    """Mutation run: a value changed in the page's table (one mean, by 1)."""
    lr_table = table_lines((report.RESULTS / "mujoco-ddpg-lr.md").read_text(), "| env | Adam rate")
    assert table_lines((ROOT / "docs" / "ddpg_td3_sac.md").read_text(), "| env | Adam rate") == lr_table
    assert len(lr_table) == 8  # header, rule, 3 envs x 2 rates


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


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_cell_of_a_suite_is_planned_at_the_same_seeds(suite):
    """Each (script and variant, env) cell gets the suite's seeds, so that no cell is left at fewer."""
    seeds = collections.defaultdict(set)
    for run in SUITES[suite]:
        seeds[run.name, run.env_id].add(run.seed)
    assert len({frozenset(s) for s in seeds.values()}) == 1, dict(seeds)


def classic_rows(values, planned=3, commits=None, anchors=None):
    """{measure: cells} of the classic table's rows for dqn_atari.py on CartPole-v1: `planned` runs of 1000 steps, the
    first len(values) finished with that training return throughout and that final evaluation (each from `commits`,
    default a clean one)."""
    runs = [Run("dqn_atari.py", "CartPole-v1", seed, ("--total-timesteps", "1000")) for seed in range(1, planned + 1)]
    commits = commits or ["abc1234"] * len(values)
    results = [{**result_with([v] * 100, [v]), "commit": c} for v, c in zip(values, commits)]
    grouped = {("dqn_atari.py", "CartPole-v1"): results} if results else {}
    rows = report.table("classic", runs, grouped, anchors or {})
    return {cells(row)[3]: cells(row) for row in rows[2:]}


def test_seeds_print_mean_std_and_each_value_and_a_ci_only_from_five_seeds():
    """Three seeds: mean ± std (ddof 0) with each seed's value, in seed order, and no CI (with 3 seeds a percentile
    bootstrap is their range); five: the CI too. One seed: its value alone, no "± 0.0". Mutations run: the CI from 2
    seeds up (`MIN_CI_SEEDS = 2`: the 3-seed row has one); one seed formatted as several ("7.0 ± 0.0 (7.0)")."""
    row = classic_rows([1.0, 3.0, 2.0])["train return, last 100 episodes at 1,000"]
    assert row[2] == "3/3" and row[4] == "2.0 ± 0.8 (1.0, 3.0, 2.0)" and row[5] == ""
    row = classic_rows([1.0, 2.0, 3.0, 4.0, 5.0], planned=5)["train return, last 100 episodes at 1,000"]
    lo, hi = (float(x) for x in row[5].split(" – "))
    assert row[4].startswith("3.0 ± 1.4 (") and 1.0 < lo < 3.0 < hi < 5.0
    row = classic_rows([7.0])["train return, last 100 episodes at 1,000"]
    assert row[2] == "1/3" and row[4] == "7.0 (1 seed)" and row[5] == ""


def test_a_row_without_runs_has_no_seed_count_and_no_wall_time():
    """Mutation run: the seed count printed on every row ("0/3")."""
    for row in classic_rows([]).values():
        assert row[2] == "" and row[4] == "not run yet" and row[8] == ""
    row = classic_rows([5.0])["final eval return at 1,000"]
    assert row[2] == "1/3" and row[8] == "0.0 min"


def test_a_result_from_uncommitted_changes_is_marked_not_reproducible():
    """run.py records `<hash>+changes` for a dirty tree: its value gets a † and the table a footnote naming the commit;
    clean results neither. Mutation run: `is_dirty` always False (no † and no footnote)."""
    row = classic_rows([1.0, 3.0], commits=["abc1234+changes", "def5678"])["train return, last 100 episodes at 1,000"]
    assert row[4] == "2.0 ± 1.0 (1.0†, 3.0)"
    assert classic_rows([2.0], commits=["abc1234+changes"])["final eval return at 1,000"][4] == "2.0† (1 seed)"
    grouped = {("dqn_atari.py", "CartPole-v1"): [{"commit": "abc1234+changes"}, {"commit": "def5678"}]}
    (_, line) = report.dirty_lines(grouped)
    assert "abc1234+changes" in line and "not reproducible from git" in line and "def5678" not in line
    assert report.dirty_lines({("dqn_atari.py", "CartPole-v1"): [{"commit": "def5678"}]}) == []


def test_train_return_at_reads_the_training_curve_between_its_points():
    """At a curve point its value, between two points linear, outside the curve NaN. Mutation run: the point at exactly
    that step only (as `eval_return_at` reads evaluations): NaN between points."""
    result = {"curve": [[100, 1.0], [200, 3.0], [300, None]]}
    assert report.metric(result, "train_return_at", 100) == 1.0 and report.metric(result, "train_return_at", 200) == 3.0
    assert report.metric(result, "train_return_at", 150) == 2.0 and report.metric(result, "train_return_at", 175) == 2.5
    assert all(np.isnan(report.metric(result, "train_return_at", s)) for s in (50, 250, 300, 400))


def test_anchors_add_their_own_rows_in_step_order():
    """An anchor at a (metric, step) the suite's measures lack gets a row, compared at its step; the rows go in step
    order. Mutation run: the anchors' rows appended unsorted (250k after 750k)."""
    anchor = {"label": "paper", "std": 0.5, "metric": "train_return_at"}
    anchors = {
        ("dqn_atari.py", "CartPole-v1", "train_return_at", step): {**anchor, "mean": mean, "step": step}
        for step, mean in ((750, 3.0), (250, 9.0), (500, 0.0))
    }
    assert report.measures("classic", "dqn_atari.py", "CartPole-v1", anchors, 1000) == [
        ("train_return_at", 250),
        ("train_return_at", 500),
        ("train_return_at", 750),
        ("train_return_last100", 1000),
        ("eval_return", 1000),
    ]
    rows = classic_rows([1.0, 1.0, 1.0], anchors=anchors)  # a constant return: the curve is 1.0 throughout
    assert list(rows)[:3] == [f"train return (100-episode curve) at {step}" for step in (250, 500, 750)]
    row = rows["train return (100-episode curve) at 250"]
    assert row[4] == "1.0 ± 0.0 (1.0, 1.0, 1.0)" and row[7] == "below" and "paper: 9.0 ± 0.5" in row[6]


def test_dirty_tree_refused_unless_allowed(tmp_path, monkeypatch, capsys):
    """run.py stops with a one-line error naming --allow-dirty where a tracked file has uncommitted changes; with the
    flag it runs and records `<hash>+changes`. Untracked files and changes under benchmark/results/ do not count.
    Mutations run: no check (the suite starts); benchmark/results/ counted (the clean tree with a changed result is
    refused)."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    (tmp_path / "benchmark" / "results").mkdir(parents=True)
    (tmp_path / "script.py").write_text("a = 1\n")
    (tmp_path / "benchmark" / "results" / "r.json").write_text("{}\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    started = []
    monkeypatch.setattr(runner, "run_suite", lambda suite, *args: started.append(runner.git_commit()) or [])

    def main(*flags):
        monkeypatch.setattr(sys, "argv", ["run.py", "--suite", "smoke", *flags])
        with pytest.raises(SystemExit) as stop:
            runner.main()
        return stop.value.code

    (tmp_path / "benchmark" / "results" / "r.json").write_text('{"more": 1}\n')
    (tmp_path / "untracked.py").write_text("b = 2\n")
    assert main() == 0 and started == [head]
    (tmp_path / "script.py").write_text("a = 2\n")
    assert main() == 2
    message = capsys.readouterr().err
    assert message.startswith("error: ") and "--allow-dirty" in message and "script.py" in message
    assert len(message.strip().splitlines()) == 1
    assert len(started) == 1
    assert main("--allow-dirty") == 0 and started[1] == f"{head}+changes"


def test_seeds_flags_and_tag_run_a_suites_cells_as_runs_of_their_own(tmp_path, monkeypatch, capsys):
    """`--seeds` plans every cell of the suite at those seeds, each seed's cells in the suite's order; `--flags` end
    each command, so that a repeated flag's last value is the one read (`total_steps` too, in any spelling the scripts
    read); `--tag` names the runs apart from the suite's, in benchmark/results/<suite>-<tag>, and the report lists
    only the suite's own failures. Bad seeds, --flags without --tag (or the reverse), a tag that can't be part of a file
    name or that gives the suite's own runs' names, and flags that the runner passes itself are refused with one line,
    before any run. Mutations run: the seeds not replaced; the flags put before the suite's; `total_steps` reading the
    first --total-timesteps, or not reading `--total_timesteps`; the tag left out of the variant, and out of the default
    folder; the checks of --flags with --tag, of a taken name and of the runner's own flags dropped; a backwards range
    read as empty; `+4` read as a seed; the report listing every failure in the folder; the tag not passed to
    run_suite (its ETA reads the suite's runs with it)."""
    suite = SUITES["mujoco"]
    cells = [(r.name, r.env_id, r.flags) for r in suite if r.seed == 1]
    planned = runner.plan(suite, seeds=[4, 5])
    assert [(r.name, r.env_id, r.flags) for r in planned] == cells * 2
    assert [r.seed for r in planned] == [4] * len(cells) + [5] * len(cells)
    assert runner.plan(suite) == suite
    flags = ["--learning-rate", "1e-3", "--total-timesteps=5000"]
    ddpg = runner.plan(suite, "^ddpg_td3_sac-ddpg__", [12], flags, "lr1e-3")
    envs = ("HalfCheetah", "Hopper", "Walker2d")
    assert [r.id for r in ddpg] == [f"ddpg_td3_sac-ddpg_lr1e-3__{env}-v5__s12" for env in envs]
    assert all(r.flags[-3:] == tuple(flags) and r.total_steps == 5000 for r in ddpg)
    assert Run("s.py", "e", 1, ("--total-timesteps", "10", "--total-timesteps", "20")).total_steps == 20
    assert Run("s.py", "e", 1, ("--total-timesteps", "10", "--total_timesteps", "30")).total_steps == 30
    with pytest.raises(ValueError, match="no --total-timesteps"):
        Run("s.py", "e", 1, ("--seed", "1")).total_steps
    assert runner.parse_seeds("4-6,9,5") == [4, 5, 6, 9]

    started = []
    monkeypatch.setattr(runner, "uncommitted_changes", lambda: [])
    monkeypatch.setattr(
        runner, "run_suite", lambda suite, runs, results_dir, *args: started.append((runs, results_dir, args[-1]))
    )

    def main(*flags):
        monkeypatch.setattr(sys, "argv", ["run.py", *flags])
        with pytest.raises(SystemExit) as stop:
            runner.main()
        return stop.value.code

    assert main("--suite", "mujoco", "--only", "^ddpg_td3_sac-ddpg__", "--seeds", "12") == 0
    assert started.pop() == (runner.plan(suite, "^ddpg_td3_sac-ddpg__", [12]), runner.RESULTS / "mujoco", "")
    tagged = ("--suite", "mujoco", "--only", "^ddpg_td3_sac-ddpg__", "--seeds", "12", "--tag", "lr1e-3")
    assert main(*tagged, "--flags=--learning-rate 1e-3 --total-timesteps=5000") == 0
    assert started.pop() == (ddpg, runner.RESULTS / "mujoco-lr1e-3", "lr1e-3")  # the tag: for the ETA
    capsys.readouterr()
    for bad in (
        ["--seeds", "3-1"],
        ["--seeds", "4-"],
        ["--seeds", "a"],
        ["--seeds", "+4"],
        ["--flags=--learning-rate 1e-3"],
        ["--tag", "lr"],
        ["--flags=--learning-rate 1e-3", "--tag", "a/b"],
        ["--flags=--seed 7", "--tag", "s7"],
        ["--flags=--env_id=CartPole-v0", "--tag", "v0"],
        ["--only", "^ddpg_td3_sac-td3__", "--flags=--batch-size 100", "--tag", "paper"],  # td3 + paper: td3_paper
    ):
        assert main("--suite", "mujoco", *bad) == 2, bad
        message = capsys.readouterr().err
        assert message.startswith("error: --") and len(message.strip().splitlines()) == 1, (bad, message)
    assert not started

    for run in (suite[0], ddpg[0]):  # a failure of the suite's, and one of a tagged run in the suite's folder
        (tmp_path / f"{run.id}.failed.json").write_text("{}")
    text = report.report("mujoco", tmp_path, tmp_path)
    assert f"Failed runs (run the suite again to retry): {suite[0].id}\n" in text


def test_plot_draws_published_curves_anchors_beyond_the_end_and_empty_panels(tmp_path, monkeypatch):
    """A published curve is drawn on its env's panel in its script's colour, dashed, cut at the panel's x end (the
    runs' end), or dotted and labelled "(training return)" when the panel shows evaluations; the report lists it with
    its source and band. The x axis ends at the runs' end; an anchor past it sits right of the axis with its step
    written; a panel without runs says so. Mutations run: the published curve not cut (its last x 1M); a training
    curve drawn dashed like an evaluation one."""
    published = tmp_path / "published"
    published.mkdir()
    steps = [0, 100_000, 200_000, 300_000, 600_000, 1_000_000]
    base = {"suite": "mujoco", "script": "ddpg_td3_sac.py", "variant": "td3", "env_id": "HalfCheetah-v5"}
    for kind, label in (("eval", "Paper TD3"), ("train", "Other TD3")):
        curve = {"steps": steps, "mean": [0, 1, 2, 3, 4, 5], "lo": [0] * 6, "hi": [9] * 6}
        curve |= {"kind": kind, "label": label, "source": f"{label} source", "band": f"{label} band"}
        (published / f"{kind}.json").write_text(json.dumps({**base, **curve}))
    (published / "other_suite.json").write_text(json.dumps({**base, **curve, "suite": "classic", "label": "Nope"}))
    monkeypatch.setattr(report, "PUBLISHED", published)
    far = {"label": "far", "mean": 5.0, "std": 1.0, "step": 1_000_000, "metric": "train_return_last100", "source": "s"}
    key = ("ddpg_td3_sac.py:td3", "HalfCheetah-v5", "train_return_last100", 1_000_000)
    monkeypatch.setattr(report, "load_anchors", lambda suite: {key: far})
    figures = []
    monkeypatch.setattr(report.plt, "close", figures.append)
    text = report.report("mujoco", tmp_path / "none", tmp_path)
    assert "| Paper TD3 | HalfCheetah-v5 | evaluation return | Paper TD3 band | Paper TD3 source |" in text
    assert "Other TD3 band" in text and "Nope" not in text and "dotted" in text and "◆ training-return" in text
    (fig,) = figures
    cheetah, hopper = fig.axes[:2]
    lines = {line.get_label(): line for line in cheetah.get_lines()}
    paper, other = lines["Paper TD3"], lines["Other TD3 (training return)"]
    assert max(paper.get_xdata()) == 300_000 and paper.get_linestyle() == "--" and other.get_linestyle() == ":"
    colours = report.plt.rcParams["axes.prop_cycle"].by_key()["color"]
    assert paper.get_color() == colours[0]  # td3: the suite's first script and variant
    assert cheetah.get_xlim() == (0, 300_000)
    assert any(t.get_text() == "→ 1M" for t in cheetah.texts)
    (edge,) = [bars for bars in cheetah.containers if bars.get_label() == "far"]
    assert edge.lines[0].get_xdata()[0] > 300_000
    assert [t.get_text() for t in hopper.texts] == ["not run yet"]


def test_offline_runs_refused_where_the_local_dataset_is_not_datasets_json(tmp_path, monkeypatch, capsys):
    """run.py stops offline runs, with one error line and before Ray starts, where the dataset is missing on this
    machine, missing from the results folder's datasets.json, or has other episodes, steps, mean return or reference
    returns than that file gives; it runs where they agree, and where the folder has no datasets.json. Mutations run:
    no check in main (the missing dataset starts); mean return left out of the comparison (the dataset with another
    mean return starts); reference returns left out (the dataset with another ref_min_score starts)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setattr(runner, "uncommitted_changes", lambda: [])
    started = []
    monkeypatch.setattr(runner, "run_suite", lambda suite, runs, *args: started.append([r.id for r in runs]) or [])
    results, only = tmp_path / "results", "^iql_offline-iql__hopper-sac-medium-v0__s1$"
    results.mkdir()

    def main():
        argv = ["run.py", "--suite", "offline", "--only", only, "--results-dir", str(results)]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as stop:
            runner.main()
        return stop.value.code

    def describe(dataset_id="hopper/sac-medium-v0", **changed):
        summary = {"episodes": 3, "steps": 3 * 5, "mean_return": 2.5, "ref_min_score": 0.0, "ref_max_score": 10.0}
        (results / "datasets.json").write_text(json.dumps({dataset_id: {**summary, **changed}}))

    describe()
    assert main() == 2
    message = capsys.readouterr().err
    assert message.startswith("error: hopper/sac-medium-v0 is not on this machine") and len(message.splitlines()) == 1
    episodes = [  # three 5-step episodes with returns 2, 2.5 and 3
        EpisodeBuffer(
            observations=np.zeros((6, 3), np.float32),
            actions=np.zeros((5, 1), np.float32),
            rewards=[r / 5] * 5,
            terminations=[False] * 5,
            truncations=[False] * 4 + [True],
        )
        for r in (2.0, 2.5, 3.0)
    ]
    minari.create_dataset_from_buffers(
        "hopper/sac-medium-v0", episodes, env="Pendulum-v1", algorithm_name="test", ref_min_score=0.0, ref_max_score=10
    )
    assert main() == 0 and started == [[only[1:-1]]]
    for changed in ({"episodes": 4}, {"steps": 16}, {"mean_return": 2.6}, {"ref_min_score": -1.0}, {"dataset_id": "x"}):
        describe(**changed)
        assert main() == 2
        message = capsys.readouterr().err
        assert message.startswith("error: hopper/sac-medium-v0 ") and len(message.splitlines()) == 1
        assert ("is not in" if "dataset_id" in changed else "here has") in message and len(started) == 1
    (results / "datasets.json").unlink()
    assert main() == 0 and len(started) == 2


def test_threads_below_one_or_beyond_every_nodes_cpus_are_refused_with_one_line(tmp_path):
    """`--threads 0` and `--parallel 0` stop run.py before Ray starts; more threads than any node of the Ray instance
    has CPUs (a task Ray would wait on for ever) stop it once Ray has started, before any run. Mutations run: no check
    in main (the smoke suite runs; the same for --parallel); no check in run_suite (Ray waits: the call times out)."""
    flags = ["--suite", "smoke", "--results-dir", tmp_path / "results", "--allow-dirty", "--num-cpus", 1]
    out = run_tool("run.py", *flags, "--threads", 0, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and out.stderr == "error: --threads 0: must be ≥ 1\n", out.stdout + out.stderr
    out = run_tool("run.py", *flags, "--parallel", 0, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and out.stderr == "error: --parallel 0: must be ≥ 1\n", out.stdout + out.stderr
    out = run_tool("run.py", *flags, "--threads", 2, cwd=tmp_path, timeout=120)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and errors == ["error: --threads 2: no node of this Ray instance has more than 1 CPUs"]
    assert not list((tmp_path / "results").glob("*.json"))
