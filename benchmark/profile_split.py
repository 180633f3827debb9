"""Where a training run's time goes: env, act, replay, update, logging. Not a test, and not a timing to quote
on its own (the profiler slows Python-heavy parts more than the rest); the shares locate the costs.

    python benchmark/profile_split.py dqn_atari --env-id Acrobot-v1 --total-timesteps 30000 --learning-starts 10000 \
        --train-frequency 10 --batch-size 128 --buffer-size 10000 --target-network-frequency 500 --threads 1

The script's own flags follow its name. `main` runs under cProfile, in-process, and the time of each part is the
cumulative time of the functions that make it up.
"""

import cProfile
import importlib
import pstats
import sys
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# part -> (file name ends with, function name) of the functions whose cumulative time it is
PARTS = {
    "env step": [("sync_vector_env.py", "step"), ("vector_env.py", "step")],
    "act": [("_atari.py", "select_actions")],
    "replay add (without flush)": [("_atari.py", "add")],
    "replay flush": [("_atari.py", "flush")],
    "replay sample (without flush)": [("_atari.py", "sample")],
    "replay priority update": [("_atari.py", "update_priorities")],
    "noise (--noisy)": [("_atari.py", "resample_noise")],
    "loss (forward)": [("_atari.py", "td_loss"), ("fqf_atari.py", "fraction_loss")],
    "backward": [("~", "<method 'run_backward' of 'torch._C._EngineBase' objects>")],
    "optimiser": [("optimizer.py", "wrapper")],
    "logging": [("writer.py", "add_scalar")],
    "divergence check": [("_atari.py", "check")],
}


def main():
    script, argv = sys.argv[1], sys.argv[2:]
    module = importlib.import_module(script)
    args = tyro.cli(module.Args, args=argv)
    profile = cProfile.Profile()
    profile.runcall(module.main, args)
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, primitive calls, own time, cumulative, callers)
    total = max(cumulative for (_, _, name), (_, _, _, cumulative, _) in stats.items() if name == "main")
    times = {part: [0.0, 0] for part in PARTS}
    for (file, _, name), (calls, _, _, cumulative, callers) in stats.items():
        for part, functions in PARTS.items():
            if any(file.endswith(suffix) and name == function for suffix, function in functions):
                times[part][0] += cumulative
                times[part][1] += calls
        if name == "flush":  # a flush runs inside add or sample: count it once, as its own part
            for (_, _, caller), (_, _, _, from_caller) in callers.items():
                times["replay add (without flush)" if caller == "add" else "replay sample (without flush)"][0] -= (
                    from_caller
                )
    print(f"{script} main: {total:.2f} s under the profiler")
    for part, (seconds, calls) in times.items():
        per_call = f"{seconds / calls * 1e6:8.0f} µs per call ({calls} calls)" if calls else ""
        print(f"  {part:<30} {seconds:7.2f} s  {100 * seconds / total:5.1f}%  {per_call}")
    rest = total - sum(seconds for seconds, _ in times.values())
    print(f"  {'the rest of the loop':<30} {rest:7.2f} s  {100 * rest / total:5.1f}%")


if __name__ == "__main__":
    main()
