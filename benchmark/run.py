"""Run a benchmark suite on Ray: each run is a task that starts a script as a subprocess and returns its metrics.

    python benchmark/run.py --suite classic                   # a local Ray instance on every core
    python benchmark/run.py --suite minatar --address auto    # join a running cluster (or set RAY_ADDRESS)

Each finished run is written at once to benchmark/results/<suite>/<run id>.json: its final evaluation returns, its
training curve (the 100-episode moving average of training returns at 200 steps) and final training return, start and
wall time, command, the commit it ran from and the host's software (`software`: the packages' versions, Python and the
CPU). A run whose file exists is skipped, so a suite stopped at any point resumes where it stopped. A run that fails is
reported with its last lines (and kept in <run id>.failed.json) while the others go on; it is tried again on the next
start. Runs get one CPU and one torch thread each, or `--threads` of both. `python benchmark/report.py --suite <suite>`
turns the results into tables and plots.

`--seeds` runs the suite's cells at other seeds, into the suite's folder, where the report leaves them out (it reads
the suite's seeds). `--flags` with `--tag` runs the cells with flags changed, as runs of their own (`<variant>_<tag>`)
in benchmark/results/<suite>-<tag>, or `--results-dir`:

    python benchmark/run.py --suite mujoco --only '^ddpg_td3_sac-ddpg__' --seeds 4-12 \\
        --flags='--learning-rate 1e-3' --tag lr1e-3 --results-dir benchmark/results/mujoco-ddpg-lr

It refuses to start from a tree with uncommitted changes to tracked files (outside benchmark/results/), so that every
result can be reproduced from git; `--allow-dirty` runs anyway and records the commit as `<hash>+changes`. It also
refuses offline runs whose dataset on this machine is missing or differs from the one that the results folder's
datasets.json describes: the recipe that builds the datasets (offline_datasets.py) gives other datasets on some hosts,
and results on those are not comparable. Runs on other datasets belong in a `--results-dir` without datasets.json (a
new folder, as `--tag` makes, has none: copy the suite's there to have its runs checked).
"""

import argparse
import collections
import heapq
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suites import SUITES, Run, flag_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmark" / "results"
# Ray's workers can't import benchmark/'s modules (it is not on their path), so the tasks ship them by value: suites
# (Run), and this module where it is imported (as the tests do) rather than run
ray.cloudpickle.register_pickle_by_value(sys.modules["suites"])
if __name__ != "__main__":
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


WINDOW = 100  # episodes: the MinAtar paper's moving average of training returns
CURVE_POINTS = 200
# the packages whose code computes a run's numbers (requirements.txt's names); the others only log or plot
PACKAGES = ("torch", "numpy", "gymnasium", "mujoco", "ale-py", "minatar", "minari", "h5py")
# every script's progress line, "step N/total  ...": what a run in flight posts to the Board
PROGRESS_LINE = re.compile(r"^step (\d+)/(\d+)\s")
PACE_WINDOW_S = 600  # a run's pace: its steps over the last 10 min of its progress lines, evaluations included
POLL_S = 600  # the runner prints its progress line when a run ends, and after each POLL_S without one


def moving_average(episodes, steps, window=WINDOW) -> np.ndarray:
    """The mean return of the last `window` training episodes finished by each of `steps` (all of them before the
    `window`-th; NaN before the first). `episodes`: [(step at its end, return)] in order."""
    episodes = np.asarray(episodes, dtype=float).reshape(-1, 2)
    cumulative = np.concatenate([[0.0], np.cumsum(episodes[:, 1])])
    count = np.searchsorted(episodes[:, 0], steps, side="right")
    first = np.maximum(count - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (cumulative[count] - cumulative[first]) / (count - first), np.nan)


def summarise(episodes, eval_returns, total_steps, eval_curve=(), eval_scores=()) -> dict:
    """A run's metrics: the training curve downsampled (the moving average at 200 evenly spaced steps), its final value
    (the mean return of the last 100 episodes), the final evaluation's returns, and the evaluations' learning curve
    ([step, mean return], and [step, mean normalised score] where the script logs one)."""
    steps = np.linspace(total_steps / CURVE_POINTS, total_steps, CURVE_POINTS).round()
    values = moving_average(episodes, steps)
    return {
        "curve": [[int(s), None if np.isnan(v) else round(float(v), 3)] for s, v in zip(steps, values)],
        "train_return_last100": float(np.mean([r for _, r in episodes][-WINDOW:])) if len(episodes) else None,
        "episodes": len(episodes),
        "eval_returns": list(eval_returns),
        "eval_curve": [[int(s), round(float(v), 3)] for s, v in eval_curve],
        "eval_curve_normalized": [[int(s), round(float(v), 3)] for s, v in eval_scores],
    }


def read_run_dir(run_dir: Path, total_steps: int) -> dict:
    """The metrics (`summarise`) of the scalars a run logged: its training episodes and its final evaluation."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = ("charts/episodic_return", "eval/episodic_return", "eval/mean_return", "eval/mean_normalized_score")
    scalars = {
        tag: [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else [] for tag in tags
    }
    return summarise(
        scalars["charts/episodic_return"],
        [v for _, v in scalars["eval/episodic_return"]],
        total_steps,
        scalars["eval/mean_return"],
        scalars["eval/mean_normalized_score"],
    )


def software() -> dict:
    """The host's side of a result: the same commit, seed and command can give other floats on another CPU or with
    other packages, so a result records them. `cpu_capability` is the instruction set torch's CPU kernels were picked
    for (AVX2, AVX512, ...), and `packages` maps each of PACKAGES to its installed version (None if not installed)."""
    import torch  # here: a module-level torch can't go to Ray's workers with this module by value (above)

    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "packages": packages,
        "cpu": models[0] if models else platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def progress_step(line: str) -> tuple[int, int] | None:
    """(steps done, total) from a script's progress line; None for any other line, and for a line printed before
    learning starts (`ETA n/a ...`): random play runs far faster than learning and would set a pace the run can't
    keep."""
    seen = PROGRESS_LINE.match(line)
    return None if seen is None or "ETA n/a" in line else (int(seen[1]), int(seen[2]))


def seconds_left(points, total: int, now: float) -> float | None:
    """A run's seconds left from its progress `points`, (time, steps done) oldest first: the steps left at the pace
    from the first point to the last, less the time since the last (an evaluation prints no line); at least 0. None
    until the steps have moved."""
    (t_first, first), (t_last, last) = points[0], points[-1]
    if last <= first:
        return None
    return max((total - last) * (t_last - t_first) / (last - first) - (now - t_last), 0.0)


class Board:
    """Where the runs in flight post their progress (`execute`) and the runner reads how long each has left. run_suite
    makes it a Ray actor, one per sitting, so that a run on any node can post to it; its `clock` times every point (the
    tests use it as a plain class, with a clock of their own)."""

    def __init__(self, clock=time.time):
        self.clock, self.points, self.totals = clock, collections.defaultdict(collections.deque), {}  # by run id

    def post(self, run_id: str, step: int, total: int):
        points = self.points[run_id]
        if points and step < points[-1][1]:  # Ray ran the task again (its node lost): the steps start over
            points.clear()
        points.append((self.clock(), step))
        # the oldest point kept is the last one at least PACE_WINDOW_S older than the newest: the pace spans the window
        while len(points) > 2 and points[1][0] <= points[-1][0] - PACE_WINDOW_S:
            points.popleft()
        self.totals[run_id] = total

    def left(self) -> dict[str, float]:
        """Seconds left, by the id of each run whose steps have moved."""
        now = self.clock()
        left = {run_id: seconds_left(points, self.totals[run_id], now) for run_id, points in self.points.items()}
        return {run_id: seconds for run_id, seconds in left.items() if seconds is not None}


@ray.remote(num_cpus=1)  # run_suite asks for `threads` CPUs per task
def execute(run: dict, threads: int, board, tail_lines: int = 30) -> dict:
    """Start the script in a fresh folder with `threads` torch threads, post its progress lines to `board` (a Board
    actor) as they come, and return its metrics (or its last lines if it failed). The task's working directory is the
    repository, which Ray ships to every node (`runtime_env` in `run_suite`)."""
    repo = Path.cwd()
    command = [
        sys.executable,
        str(repo / run["script"]),
        run["env_flag"],
        run["env_id"],
        "--seed",
        str(run["seed"]),
        "--threads",
        str(threads),
        *run["flags"],
    ]
    with tempfile.TemporaryDirectory() as cwd:
        run_id, start, lines = Run(**run).id, time.time(), collections.deque(maxlen=tail_lines)
        # unbuffered: the lines come as they are printed, and errors (stderr) in their place among them
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        with subprocess.Popen(command, cwd=cwd, env=env, **pipes) as proc:
            try:
                for line in proc.stdout:
                    lines.append(line.rstrip("\n"))
                    step = progress_step(line)
                    if step is not None:
                        board.post.remote(run_id, *step)
            except BaseException:  # as subprocess.run does: no script left running without its task
                proc.kill()
                raise
        wall = time.time() - start
        lines = list(lines)
        result = {
            "run": run,
            "command": " ".join(command[1:]).replace(str(repo) + "/", ""),
            "start_s": round(start, 2),  # Unix time
            "wall_s": round(wall, 1),
            "returncode": proc.returncode,
            "tail": lines,
            "host": os.uname().nodename,
            "nice": os.nice(0),  # the run's niceness (the script inherits the worker's)
            "software": software(),
        }
        if proc.returncode == 0:
            run_dirs = list(Path(cwd, "runs").iterdir())
            result.update(
                read_run_dir(run_dirs[0], Run(**run).total_steps)
                if len(run_dirs) == 1
                else {
                    "returncode": -1,
                    "tail": lines + [f"runner: expected one run folder, found {len(run_dirs)}"],
                }
            )
    return result


def uncommitted_changes() -> list[str]:
    """`git status --porcelain` lines of the tracked files changed since the last commit, outside benchmark/results/
    (which the runs and reports themselves write); untracked files are not counted."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmark/results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return out.stdout.splitlines()


def dataset_mismatches(runs: list[Run], results_dir: Path) -> list[str]:
    """One line per dataset that `runs` train on (`--dataset`) and that Minari on this machine either lacks or holds
    with other episodes, steps, mean return or reference returns than `results_dir`/datasets.json says; none where that
    file is absent. The machine that starts the suite is checked, not the nodes of a cluster joined with `--address`."""
    described = results_dir / "datasets.json"
    dataset_ids = sorted({r.env_id for r in runs if r.env_flag == "--dataset"})
    if not dataset_ids or not described.exists():
        return []
    import minari
    from offline_datasets import summary

    expected, local, problems = json.loads(described.read_text()), minari.list_local_datasets(), []
    for dataset_id in dataset_ids:
        if dataset_id not in local:
            problems.append(f"{dataset_id} is not on this machine (python benchmark/offline_datasets.py builds it)")
        elif dataset_id not in expected:
            problems.append(f"{dataset_id} is not in {described}")
        else:
            keys = ("episodes", "steps", "mean_return", "ref_min_score", "ref_max_score")
            found = summary(dataset_id)
            here = {k: found[k] for k in keys}
            there = {k: expected[dataset_id].get(k) for k in keys}
            if here != there:
                problems.append(f"{dataset_id} here has {here}, {described} has {there}")
    return problems


def git_commit() -> str:
    """The commit the runs are started from, `<hash>+changes` where the tree has uncommitted changes (a result that
    git cannot reproduce)."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return (out.stdout.strip() or "unknown") + ("+changes" if uncommitted_changes() else "")


def finished_walls(results_dir: Path, tag: str = "") -> dict[tuple, list[float]]:
    """The wall times of the runs that succeeded in `results_dir`, by cell (script, variant and env), whatever
    `--threads` they ran at; a file that can't be read is left out. A `tag` is appended to each variant as plan() does,
    so that a suite's own runs are keyed as its cells' tagged runs."""
    walls = collections.defaultdict(list)
    for path in results_dir.glob("*.json"):
        try:
            result = json.loads(path.read_text())
            run, wall = Run(**result["run"]), float(result["wall_s"])
        except (ValueError, TypeError, KeyError):  # cut short, or not a run's result (datasets.json)
            continue
        if result.get("returncode") == 0:  # not a .failed.json
            run = run._replace(variant="_".join(filter(None, (run.variant, tag))))
            walls[(run.name, run.env_id)].append(wall)
    return walls


def known_walls(results_dir: Path, suite_dir: Path, tag: str = "") -> dict[tuple, list[float]]:
    """The wall times the ETA goes by, by cell: those of the runs that succeeded in `results_dir`; a cell with none
    there (the first runs of a new --tag) takes those of the suite's own runs of it in `suite_dir`, until one of its
    runs succeeds here."""
    walls = finished_walls(results_dir)
    for cell, times in finished_walls(suite_dir, tag).items():
        walls.setdefault(cell, times)
    return walls


def eta_s(runs, ended, walls, slots, elapsed, left=None) -> float | None:
    """Seconds until the last of `runs` ends, if they start in order, `slots` at a time, each as soon as a slot is free.
    A run that has ended did so at `ended[run.id]` (seconds into the sitting). A run in flight whose steps have moved
    ends in `left[run.id]` seconds (Board.left). Any other takes the mean wall time of its cell's successful runs
    (`walls`, by script, variant and env), else of every cell's, and ends no sooner than now (`elapsed`). None while a
    run has neither and no run has succeeded to go by."""
    every = [w for cell in walls.values() for w in cell]
    left = {run.id: left[run.id] for run in runs if run.id in (left or {}) and run.id not in ended}
    ends = [0.0] * slots  # a heap: when each slot is free next
    for end in sorted(ended.values()):
        heapq.heapreplace(ends, end)
    for seconds in left.values():  # the runs in flight first, whatever their place in `runs`: each holds a slot
        heapq.heapreplace(ends, elapsed + seconds)
    for run in runs:
        if run.id in ended or run.id in left:
            continue
        known = walls.get((run.name, run.env_id)) or every
        if not known:
            return None
        heapq.heapreplace(ends, max(ends[0] + sum(known) / len(known), elapsed))
    return max(max(ends) - elapsed, 0.0)


def progress_line(done, total, failed, elapsed, eta) -> str:
    """A bar of runs done out of total, the failures, the minutes elapsed and the ETA (`eta`: seconds, or None)."""
    width = 30
    bar = "#" * round(width * done / max(total, 1))
    eta = "ETA n/a" if eta is None else f"ETA {eta / 60:.1f} min"
    return f"[{bar:<{width}}] {done}/{total} runs  {failed} failed  {elapsed / 60:.1f} min  {eta}"


def run_suite(
    suite: str, runs: list[Run], results_dir: Path, address=None, num_cpus=None, parallel=None, threads=1, tag=""
) -> list[dict]:
    """Run every run of `runs` whose result is not in `results_dir` yet, each on `threads` CPUs, at most `parallel` at a
    time (default: as many as the cluster's CPUs allow); return the failures. `tag`: the one plan() gave the runs."""
    results_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in runs if not (results_dir / f"{r.id}.json").exists()]
    print(
        f"suite {suite}: {len(runs)} runs, {len(runs) - len(todo)} finished before (skipped), {len(todo)} to run",
        flush=True,
    )
    if not todo:
        return []
    excludes = ["/.git", ".ruff_cache/", "runs/", "videos/", "benchmark/results/", "__pycache__/", "*.pt", "wandb/"]
    # Ray starts its workers at a niceness 15 above its own (RAY_worker_niceness), so that they yield to Ray's own
    # processes; here a worker is the run, and at that niceness it yields to anything else on the machine too. 0 keeps
    # the runner's niceness in a new instance's workers (`nice python benchmark/run.py ...` lowers their priority); a
    # cluster's workers keep the cluster's setting.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # "local": a new instance on this machine, even where another one runs (ray.init() alone would join that one)
    ray.init(
        address=address or "local",
        num_cpus=None if address else num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"working_dir": str(ROOT), "excludes": excludes},
    )
    print(f"ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs", flush=True)
    nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]]  # their CPUs
    largest = max(nodes, default=0)
    if threads > largest:  # Ray would wait for such a node for ever
        ray.shutdown()
        print(
            f"error: --threads {threads}: no node of this Ray instance has more than {largest:.0f} CPUs",
            file=sys.stderr,
        )
        sys.exit(2)
    commit, failures, started = git_commit(), [], time.time()
    queue, pending = list(todo), {}
    # for the ETA: how many runs fit at once, when each run of this sitting ended, the finished runs' wall times
    slots = max(1, min(parallel or len(todo), sum(int(cpus // threads) for cpus in nodes)))
    ended, ran_elsewhere, walls = {}, [], known_walls(results_dir, RESULTS / suite, tag)
    board = ray.remote(num_cpus=0)(Board).remote()  # the runs in flight post their progress lines to it

    def progress() -> str:
        done, elapsed = len(todo) - len(pending) - len(queue), time.time() - started
        try:
            left = ray.get(board.left.remote())
        except ray.exceptions.RayError:  # the Board lost with its node: the runs in flight go by the wall times
            left = {}
        eta = eta_s([r for r in todo if r not in ran_elsewhere], ended, walls, slots, elapsed, left)
        return progress_line(done, len(todo), len(failures), elapsed, eta)

    print(progress(), flush=True)
    try:
        while queue or pending:
            while queue and len(pending) < (parallel or len(todo)):
                run = queue.pop(0)
                if (results_dir / f"{run.id}.json").exists():  # another driver on the same results has run it
                    ran_elsewhere.append(run)
                else:
                    pending[execute.options(num_cpus=threads).remote(run._asdict(), threads, board)] = run
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            if not ready:
                print(progress() + "  (runs in progress)", flush=True)
                continue
            run = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the task itself died (a node lost, the worker killed)
                result = {"run": run._asdict(), "returncode": -1, "tail": str(e).splitlines()[-5:]}
            result["commit"] = commit
            ended[run.id] = time.time() - started
            if result["returncode"] == 0:
                (results_dir / f"{run.id}.json").write_text(json.dumps(result))
                (results_dir / f"{run.id}.failed.json").unlink(missing_ok=True)
                # read again: the cell now has a time of its own, in place of any it borrowed from the suite
                walls = known_walls(results_dir, RESULTS / suite, tag)
                mean_eval = sum(result["eval_returns"]) / max(len(result["eval_returns"]), 1)
                what = f"eval {mean_eval:.1f}, {result['wall_s']:.0f} s"
            else:
                (results_dir / f"{run.id}.failed.json").write_text(json.dumps(result))
                failures.append(result)
                what = f"FAILED (exit {result['returncode']}):\n    " + "\n    ".join(result["tail"][-10:])
            print(f"{progress()}  {run.id}: {what}", flush=True)
    finally:
        ray.shutdown()
    if failures:
        print(
            f"{len(failures)} runs failed: "
            + ", ".join(Run(**f["run"]).id for f in failures)
            + "; run again to retry them"
        )
    return failures


def parse_seeds(text: str) -> list[int]:
    """`4-12`, `4,7` or `4-6,9`: the seeds, in the order given, each once. ValueError where `text` is not of that
    form, or a range runs backwards."""
    seeds = []
    for part in text.split(","):
        if not re.fullmatch(r"\d+(-\d+)?", part.strip()):
            raise ValueError(f"{part.strip()!r} is not a seed or a range of seeds")
        first, _, last = part.strip().partition("-")
        first, last = int(first), int(last or first)
        if first > last:
            raise ValueError(f"{part.strip()} runs backwards")
        seeds += [s for s in range(first, last + 1) if s not in seeds]
    return seeds


def plan(runs: list[Run], only="", seeds=(), flags=(), tag="") -> list[Run]:
    """The runs to start: the suite's `runs`, or its cells at `seeds`, each seed's cells in the suite's order; of those
    the ones whose id matches the regular expression `only`; then `flags` appended to each run's flags (a repeated
    flag's last value is the one the scripts read) and `tag` to its variant, which names the run's file."""
    if seeds:
        cells = list(dict.fromkeys(r._replace(seed=0) for r in runs))
        runs = [cell._replace(seed=seed) for seed in seeds for cell in cells]
    runs = [r for r in runs if re.search(only, r.id)]
    return [r._replace(flags=(*r.flags, *flags), variant="_".join(filter(None, (r.variant, tag)))) for r in runs]


def refuse(message: str):
    """Stop before anything starts, with one line on stderr and exit status 2 (bad input)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True, choices=sorted(SUITES))
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="a Ray cluster to join (default: RAY_ADDRESS, else a local instance)",
    )
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="CPUs of the local instance, so runs in parallel (default: every core)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="at most this many runs at a time (default: as many as "
        "the cluster's CPUs hold, --threads each), so that suites can share a cluster",
    )
    parser.add_argument(
        "--only",
        default="",
        help="run only the runs whose id (<script>[-<variant>]__<env>__s<seed>, at --seeds and before --tag) matches "
        "this regular expression, e.g. '^dqn_atari__', 'Breakout', 's1$'",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads and CPUs per run (default 1): more shortens a run whose updates are large matrix "
        "products, such as IQN's on MinAtar, but fewer runs fit on the cores at once",
    )
    parser.add_argument(
        "--seeds",
        default="",
        help="run the suite's cells at these seeds instead of its own, e.g. '4-12', '4,7' or '4-6,9'; the report reads "
        "only the suite's seeds",
    )
    parser.add_argument(
        "--flags",
        default="",
        help="flags appended to every run's command, after the suite's (a repeated flag's last value is the one the "
        "script reads), given with '=': --flags='--learning-rate 1e-3'; needs --tag",
    )
    parser.add_argument(
        "--tag",
        default="",
        help="what --flags change, appended to each run's variant (`<variant>_<tag>`) and so to its file name, e.g. "
        "'lr1e-3'; letters, digits and . + - only",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=None, help="default: benchmark/results/<suite>, or <suite>-<tag> with --tag"
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run from a tree with uncommitted changes to tracked files (its results are marked <commit>+changes)",
    )
    args = parser.parse_args()
    if args.threads < 1:
        refuse(f"--threads {args.threads}: must be ≥ 1")
    if args.parallel is not None and args.parallel < 1:
        refuse(f"--parallel {args.parallel}: must be ≥ 1")
    try:
        seeds = parse_seeds(args.seeds) if args.seeds else []
    except ValueError as e:
        refuse(f"--seeds {args.seeds!r}: {e}; give seeds as '4-12', '4,7' or '4-6,9'")
    try:
        flags = shlex.split(args.flags)
    except ValueError as e:  # an unclosed quote
        refuse(f"--flags {args.flags!r}: {e}")
    if bool(flags) != bool(args.tag):
        refuse(
            "--flags and --tag go together: --tag names what --flags change, so that those runs' files are not "
            "the suite's"
        )
    if not re.fullmatch(r"[A-Za-z0-9.+-]*", args.tag):
        refuse(f"--tag {args.tag!r}: letters, digits and . + - only (it is part of file names)")
    passed = sorted({flag_name(f) for f in flags} & {"--seed", "--threads", "--env-id", "--dataset"})
    if passed:
        refuse(
            f"--flags sets {', '.join(passed)}, which the runner passes itself: use --seeds, --threads, or a "
            "suite's own envs and datasets"
        )
    changes = uncommitted_changes()
    if changes and not args.allow_dirty:
        files = ", ".join(line[3:] for line in changes[:5]) + (", ..." if len(changes) > 5 else "")
        refuse(
            f"uncommitted changes to tracked files ({files}): results would not be reproducible from git; "
            "commit them, or pass --allow-dirty to run anyway (the results are marked <commit>+changes)"
        )
    runs = plan(SUITES[args.suite], args.only, seeds, flags, args.tag)
    taken = sorted({r.name for r in runs} & {r.name for r in SUITES[args.suite]})
    if args.tag and taken:
        refuse(f"--tag {args.tag}: {', '.join(taken)} names the suite's own runs; choose another tag")
    results_dir = args.results_dir or RESULTS / "-".join(filter(None, (args.suite, args.tag)))
    problems = dataset_mismatches(runs, results_dir)
    if problems:
        refuse(f"{'; '.join(problems)}: the results in {results_dir} are of the datasets its datasets.json describes")
    failures = run_suite(
        args.suite, runs, results_dir, args.address, args.num_cpus, args.parallel, args.threads, args.tag
    )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
