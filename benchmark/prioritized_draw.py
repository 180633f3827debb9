"""Two ways to draw a prioritized batch on the training device, timed at 1M slots: the sum tree that the Atari scripts
use (`SumTree`: a draw and a priority update of one batch, O(B log n)), and an inverse-CDF draw (`searchsorted` on a
float64 cumulative sum of p^α over every slot, with the undrawable slots masked: O(n) per batch). Not a test.

    python benchmark/prioritized_draw.py [--slots 1000000] [--batch 32] [--rounds 5] [--cuda]

Each round times `--calls` of each, alternating; it prints the median and range of the per-call times over the rounds.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dqn_atari import SumTree  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cuda", action="store_true")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    device = torch.device("cuda" if options.cuda else "cpu")
    n, batch, alpha = options.slots, options.batch, 0.5
    priorities = torch.rand(n, device=device) + 0.01  # p_i, stored raw for the inverse CDF
    drawable = torch.rand(n, device=device) > 0.01
    tree = SumTree(n, device)
    tree.set(torch.arange(n, device=device), torch.where(drawable, priorities**alpha, 0))

    def sum_tree():
        slots = tree.draw(batch)
        tree.set(slots, torch.rand(batch, device=device) ** alpha)

    def inverse_cdf():
        cdf = torch.where(drawable, priorities**alpha, 0).cumsum(0, dtype=torch.float64)
        slots = torch.searchsorted(cdf, torch.rand(batch, dtype=torch.float64, device=device) * cdf[-1], right=True)
        priorities[slots] = torch.rand(batch, device=device)

    times = {"sum tree (draw + update)": [], "inverse CDF (cumsum + searchsorted + update)": []}
    for _ in range(options.rounds):
        for name, f in zip(times, (sum_tree, inverse_cdf)):
            f()
            if options.cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(options.calls):
                f()
            if options.cuda:
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / options.calls * 1e3)
    print(
        f"{n} slots, batch {batch}, {device}, {options.threads} thread(s): "
        f"ms per batch, median (min-max) of {options.rounds} rounds"
    )
    for name, ms in times.items():
        print(f"  {name:<46} {statistics.median(ms):7.3f} ({min(ms):.3f}-{max(ms):.3f})")
    ratio = statistics.median(a / b for a, b in zip(*times.values()))
    print(f"  inverse CDF / sum tree, per round: median {1 / ratio:.1f}x")


if __name__ == "__main__":
    main()
