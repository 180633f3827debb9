"""DDPG at Adam 3e-4 (the script's default, CleanRL's) and at 1e-3 (Tianshou's), seed by seed, against Tianshou's DDPG
curve. A summary of committed results, not a test; docs/ddpg_td3_sac.md ("DDPG's learning rate, all seeds") quotes its
first table.

    python benchmark/ddpg_lr.py          # writes benchmark/results/mujoco-ddpg-lr.md

It reads the `mujoco` suite's DDPG runs (seeds 1-3, at the default 3e-4), the runs outside the suite in
benchmark/results/mujoco-ddpg-lr/ (variants `ddpg_lr3e-4` and `ddpg_lr1e-3`; that folder's README says how to start
more) and Tianshou's DDPG curves in benchmark/published/. Runs that failed are left out. Tianshou's band is its mean ±
std over 10 seeds, edges included. Every count is over the 28 evaluations from 30k to 300k, every 10k: Tianshou's
curve starts at 25k, where both protocols' uniform-random steps end.
"""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PUBLISHED = HERE / "published"
ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
RATES = ("3e-4", "1e-3")  # 3e-4: the script's default
STEPS = range(30_000, 300_001, 10_000)  # the evaluations compared, 28 of them
POINTS = (100_000, 300_000)  # the steps the tables give values at


def versus_band(value: float, lo: float, hi: float) -> str:
    return "inside" if lo <= value <= hi else ("above" if value > hi else "below")


def tianshou_band(env_id: str, published: Path = PUBLISHED) -> dict[int, tuple[float, float, float]]:
    """{step: (mean, lo, hi)} of Tianshou's DDPG on `env_id`, at the steps where it has a point."""
    curve = json.loads((published / f"mujoco__ddpg_td3_sac-ddpg__{env_id}__tianshou.json").read_text())
    return {int(s): (m, lo, hi) for s, m, lo, hi in zip(curve["steps"], curve["mean"], curve["lo"], curve["hi"])}


def learning_rate(result: dict) -> str:
    """The `--learning-rate` the run's flags set last, else the script's default."""
    flags = result["run"]["flags"]
    given = [value for flag, value in zip(flags, flags[1:]) if flag == "--learning-rate"]
    return given[-1] if given else RATES[0]


def seed_runs(env_id: str, rate: str, results: Path = RESULTS) -> dict[int, dict]:
    """{seed: result} of the successful runs at `rate` on `env_id`: at 3e-4 the suite's runs and the runs outside it."""
    paths = list((results / "mujoco-ddpg-lr").glob(f"ddpg_td3_sac-ddpg_lr{rate}__{env_id}__s*.json"))
    if rate == RATES[0]:
        paths += (results / "mujoco").glob(f"ddpg_td3_sac-ddpg__{env_id}__s*.json")
    runs = {}
    for path in paths:
        result = json.loads(path.read_text())
        seed = result["run"]["seed"]
        if result["returncode"] != 0:  # a .failed.json
            continue
        if learning_rate(result) != rate or seed in runs:
            sys.exit(f"error: {path}: learning rate {learning_rate(result)}, or seed {seed} twice, at {rate}")
        runs[seed] = result
    return dict(sorted(runs.items()))


def places(curve: dict[int, float], band: dict) -> dict[int, str]:
    """Where `curve` ({step: return}) is at each compared evaluation: inside, above or below the band."""
    return {step: versus_band(curve[step], *band[step][1:]) for step in STEPS}


def counts(where: dict[int, str]) -> dict[str, int]:
    """At how many of the compared evaluations `places` put a curve inside, above and below the band."""
    return {place: list(where.values()).count(place) for place in ("inside", "above", "below")}


def seeds_label(seeds) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1–3, 5, 7, 8'."""
    spans = []
    for seed in seeds:
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(f"{a}–{b}" if b > a + 1 else ", ".join(map(str, range(a, b + 1))) for a, b in spans)


def env_tables(env_id: str, results: Path = RESULTS, published: Path = PUBLISHED) -> tuple[list, list]:
    """The summary rows (one per rate) and the seed-by-seed rows of `env_id`."""
    band = tianshou_band(env_id, published)
    runs = {rate: seed_runs(env_id, rate, results) for rate in RATES}
    curves = {rate: {seed: dict(r["eval_curve"]) for seed, r in runs[rate].items()} for rate in RATES}
    tianshou = " / ".join(f"{band[p][0]:.0f} ± {band[p][2] - band[p][0]:.0f}" for p in POINTS)  # hi = mean + std
    summary = []
    for rate in RATES:
        seeds = list(curves[rate])
        if not seeds:
            continue
        values = [[curves[rate][seed][p] for seed in seeds] for p in POINTS]
        mean_curve = {step: float(np.mean([curves[rate][seed][step] for seed in seeds])) for step in STEPS}
        where = places(mean_curve, band)
        count = counts(where)
        outside = [f"{step // 1000}k" for step, place in where.items() if place != "inside"]
        under_mean = sum(mean_curve[step] < band[step][0] for step in STEPS)
        summary.append(
            f"| {env_id} | {rate} | {seeds_label(seeds)} ({len(seeds)}) | "
            + " | ".join(f"{np.mean(v):.0f} ± {np.std(v):.0f}" for v in values)
            + f" | {tianshou} | "
            + " / ".join(versus_band(np.mean(v), *band[p][1:]) for v, p in zip(values, POINTS))
            + f" | {count['inside']} / {count['above']} / {count['below']}"
            + (f" ({', '.join(outside)} outside)" if 0 < len(outside) <= 3 else "")
            + f" | {under_mean} |"
        )
    rows = []
    for seed in sorted(set(curves[RATES[0]]) | set(curves[RATES[1]])):
        cells = []
        for rate in RATES:
            if seed not in curves[rate]:
                cells += [""] * 5
                continue
            curve, count = curves[rate][seed], counts(places(curves[rate][seed], band))
            cells += [f"{curve[POINTS[0]]:.0f}", f"{curve[POINTS[1]]:.0f}"]
            cells += [f"{count['inside']} / {count['above']} / {count['below']}", runs[rate][seed]["commit"]]
            cells.append(f"{runs[rate][seed]['wall_s'] / 60:.1f}")
        both = all(seed in curves[rate] for rate in RATES)
        higher = sum(curves[RATES[1]][seed][s] > curves[RATES[0]][seed][s] for s in STEPS) if both else ""
        rows.append(f"| {seed} | " + " | ".join(cells) + f" | {higher} |")
    return summary, rows


def report(results: Path = RESULTS, published: Path = PUBLISHED) -> str:
    lines = [
        "# DDPG's learning rate against Tianshou's DDPG",
        "",
        "Written by `python benchmark/ddpg_lr.py` from the `mujoco` suite's DDPG runs (seeds 1–3, at the script's "
        "default 3e-4) and the runs in `mujoco-ddpg-lr/`. The evaluation return (10 deterministic episodes every 10k "
        "steps) against Tianshou's DDPG (v3 envs, 10 seeds, Adam 1e-3), whose band is its mean ± std. Mean ± std over "
        "seeds (numpy's ddof = 0). The counts are of the 28 evaluations from 30k to 300k: where the mean curve over "
        "seeds, or a seed's curve, is inside, above or below the band, and where the mean curve is under Tianshou's "
        "mean. Wall times are minutes on a 2-core host shared with other work, so upper bounds.",
        "",
        "| env | Adam rate | seeds (how many) | at 100k | at 300k | Tianshou at 100k / 300k | mean vs the band at "
        "100k / 300k | mean curve inside / above / below | mean curve under Tianshou's mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    per_env = {env_id: env_tables(env_id, results, published) for env_id in ENVS}
    lines += [row for summary, _ in per_env.values() for row in summary]
    for env_id, (_, rows) in per_env.items():
        lines += [
            "",
            f"## {env_id}, seed by seed",
            "",
            "| seed | 3e-4: at 100k | at 300k | inside / above / below | commit | wall | 1e-3: at 100k | at 300k | "
            "inside / above / below | commit | wall | 1e-3 above 3e-4 at |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    return "\n".join(lines) + "\n"


def main():
    out = RESULTS / "mujoco-ddpg-lr.md"
    out.write_text(report())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
