"""What prioritized replay adds to a training run's time, end to end, on this machine: a measurement to run by hand
and quote (docs/performance.md), not a test.

    python benchmark/prioritized_cost.py                      # 3 pairs of 3,000-transition Breakout runs, about 10 min
    python benchmark/prioritized_cost.py --pairs 5 --steps 5000

It trains `dqn_atari.py` on Breakout (1 env, one thread, a 1M-slot replay, learning from transition 500, a gradient step
every 4) twice per pair, with `--prioritized` and without, alternating which goes first, in this one process, and
prints each pair's time ratio (prioritized / uniform) and their median. The 1M slots matter: the sum tree's draw and
update take one step per level, 20 levels at 1M. The bound is a median ratio ≤ 1.15 (prioritized replay may add at
most 15% to a run); the exit status is 1 above it.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dqn_atari as dqn  # noqa: E402


def timed_run(steps: int, prioritized: bool, workdir: Path) -> float:
    """Seconds of one `dqn_atari.main` run (env, replay, network and training; no evaluation)."""
    argv = [
        "--env-id",
        "BreakoutNoFrameskip-v4",
        "--total-timesteps",
        steps,
        "--learning-starts",
        500,
        "--buffer-size",
        1_000_000,
        "--threads",
        1,
        "--eval-episodes",
        0,
        "--no-cuda",
        "--exp-name",
        "benchmark",
    ]
    args = tyro.cli(dqn.Args, args=[*map(str, argv), *(["--prioritized"] if prioritized else [])])
    start = time.perf_counter()
    dqn.main(args)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/prioritized-benchmark"))
    options = parser.parse_args()
    options.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(options.workdir)  # the runs' TensorBoard logs land here
    timed_run(600, True, options.workdir)  # warm-up: first-use costs (ROM load, kernels) out of the pairs
    ratios = []
    for pair in range(options.pairs):
        order = [True, False] if pair % 2 == 0 else [False, True]
        seconds = {prioritized: timed_run(options.steps, prioritized, options.workdir) for prioritized in order}
        ratios.append(seconds[True] / seconds[False])
        print(
            f"pair {pair + 1}: prioritized {seconds[True]:.1f} s, uniform {seconds[False]:.1f} s, "
            f"ratio {ratios[-1]:.3f}",
            flush=True,
        )
    median = statistics.median(ratios)
    print(
        f"prioritized / uniform, end to end: median {median:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}) over "
        f"{len(ratios)} pairs; bound 1.15"
    )
    raise SystemExit(0 if median <= 1.15 else 1)


if __name__ == "__main__":
    main()
