"""Two commands timed in turn, A B A B ..., and A's speed-up over B pair by pair (B's wall time over A's), so a
comparison holds when the machine's speed drifts. Not a test. docs/performance.md has the commands.

    python benchmark/versus.py --runs 3 "python dqn_atari.py --env-id Acrobot-v1 ..." "python cleanrl/dqn.py ..."

Each command runs through the shell, its output to /dev/null; a warm-up pair runs first and is not counted.
"""

import argparse
import statistics
import subprocess
import time


def wall_time(command: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: exit {done.returncode} from {command}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("a", help="the command to measure")
    parser.add_argument("b", help="the command to compare it with")
    parser.add_argument("--runs", type=int, default=3, help="counted pairs")
    parser.add_argument("--warmup", type=int, default=1, help="pairs run first and not counted")
    cli = parser.parse_args()
    a_times, b_times = [], []
    for i in range(cli.warmup + cli.runs):
        a, b = wall_time(cli.a), wall_time(cli.b)
        counted = i >= cli.warmup
        if counted:
            a_times.append(a)
            b_times.append(b)
        print(
            f"pair {i + 1}{'' if counted else ' (warm-up)'}: A {a:.1f} s, B {b:.1f} s, A's speed-up {b / a:.2f}x",
            flush=True,
        )
    ratios = [b / a for a, b in zip(a_times, b_times)]
    print(
        f"median: A {statistics.median(a_times):.1f} s, B {statistics.median(b_times):.1f} s, A's speed-up "
        f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} pairs)"
    )


if __name__ == "__main__":
    main()
