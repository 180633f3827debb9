"""Tables and plots of a benchmark suite's results against the published anchors (benchmark/anchors.toml).

    python benchmark/report.py --suite classic

Writes benchmark/results/<suite>.md (per script and env, for each of the suite's measures: our mean ± std over seeds
with a 95% bootstrap CI, next to the anchor's number and source; for multi-game suites, the IQM of anchor-normalised
scores with stratified-bootstrap CIs from rliable) and benchmark/results/<suite>.png (learning curves: ours against the
anchors' points). It reads whatever runs have finished, so it can be run while a suite is still going.
"""

import argparse
import json
import sys
import tomllib
import warnings
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import WINDOW  # noqa: E402
from suites import SUITES, Run  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MULTI_GAME = {"minatar"}  # suites whose games are aggregated (IQM); classic control's returns have no common scale


def train_return_last100(result: dict) -> float:
    """The mean training episodic return over the run's last 100 episodes (fewer if it had fewer)."""
    value = result["train_return_last100"]
    return float("nan") if value is None else value


def eval_return(result: dict) -> float:
    """The mean return of the final evaluation (ε = the script's --eval-epsilon), if there was one."""
    return float(np.mean(result["eval_returns"])) if result["eval_returns"] else float("nan")


def eval_return_at(result: dict, step: int) -> float:
    """The mean return of the evaluation at `step` (`--eval-frequency`), NaN where the run made none there."""
    return float(dict(result.get("eval_curve", [])).get(step, np.nan))


def normalized_score(result: dict) -> float:
    """The final evaluation's mean normalised score, 100 (R − R_random) / (R_expert − R_random), of the dataset's
    reference returns (the last point of the `--eval-frequency` curve)."""
    points = result.get("eval_curve_normalized", [])
    return float(points[-1][1]) if points else float("nan")


METRICS = {
    "train_return_last100": train_return_last100,
    "eval_return": eval_return,
    "eval_return_at": eval_return_at,
    "normalized_score": normalized_score,
}
METRIC_NAMES = {
    "train_return_last100": f"mean training episodic return over the last {WINDOW} episodes",
    "eval_return": "mean return of the final evaluation",
    "eval_return_at": "mean return of the deterministic evaluation",
    "normalized_score": "normalised score of the final evaluation",
}
# what each suite's table gives per (script, env): (metric, step); step None is the run's end
MEASURES = defaultdict(lambda: [("train_return_last100", None), ("eval_return", None)])
MEASURES["mujoco"] = [
    ("eval_return_at", 100_000),
    ("eval_return_at", 300_000),
    ("train_return_last100", None),
    ("train_return_last100", 1_000_000),
]
MEASURES["offline"] = [("normalized_score", None), ("eval_return", None)]
CURVES = defaultdict(lambda: ("curve", f"training return ({WINDOW}-episode mean)", "environment steps"))  # the plots' y
CURVES["mujoco"] = ("eval_curve", "evaluation return (10 episodes)", "environment steps")
CURVES["offline"] = ("eval_curve_normalized", "normalised score (evaluation)", "gradient steps")


def metric(result: dict, name: str, step) -> float:
    return METRICS[name](result, step) if name == "eval_return_at" else METRICS[name](result)


def curve(result: dict, steps: np.ndarray, key: str = "curve") -> np.ndarray:
    """The run's stored curve (`key`: the moving average of training returns, or an evaluation curve) at `steps`
    (linear between its points; NaN before its first and after its last)."""
    points = np.array([(s, np.nan if v is None else v) for s, v in result.get(key, [])], dtype=float).reshape(-1, 2)
    if not len(points):
        return np.full(len(steps), np.nan)
    return np.interp(steps, points[:, 0], points[:, 1], left=np.nan, right=np.nan)


def bootstrap_ci(values, reps=10_000, seed=0) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean over seeds (resampling seeds with replacement)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    means = np.random.default_rng(seed).choice(values, size=(reps, len(values))).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def load_results(results_dir: Path, runs: list[Run]) -> dict:
    """{(name, env_id): [result, ...]} of the suite's finished runs, in the suite's order."""
    grouped = defaultdict(list)
    for run in runs:
        path = results_dir / f"{run.id}.json"
        if path.exists():
            grouped[(run.name, run.env_id)].append(json.loads(path.read_text()))
    return grouped


def load_anchors(suite: str) -> dict:
    """{(name, env_id, metric, step): anchor} of the suite; name is the script, with `:variant` where it has one."""
    anchors = tomllib.loads((HERE / "anchors.toml").read_text())["anchor"]
    return {
        (a["script"] + (f":{a['variant']}" if a.get("variant") else ""), a["env_id"], a["metric"], a["step"]): a
        for a in anchors
        if a["suite"] == suite
    }


def total_steps(run: Run) -> int:
    return int(run.flags[run.flags.index("--total-timesteps") + 1])


def anchor_range(anchor: dict) -> tuple[float, float]:
    """The anchor's band: mean ± std over its seeds, or ± the reading error of a value read off a plot."""
    half = anchor.get("band", anchor.get("std", 0.0))  # a context anchor (another dataset) has neither
    return anchor["mean"] - half, anchor["mean"] + half


METRIC_SHORT = {
    "train_return_last100": f"train return, last {WINDOW} episodes",
    "eval_return": "final eval return",
    "eval_return_at": "eval return",
    "normalized_score": "final normalised score",
}


def fmt(x, digits=1) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.{digits}f}"


def table(suite: str, runs: list[Run], grouped: dict, anchors: dict) -> list[str]:
    """A row per (script, env) and measure of the suite (`MEASURES`): our mean ± std over seeds and its bootstrap CI,
    next to the anchor of that measure, if there is one."""
    planned, ends = defaultdict(int), {}
    for run in runs:
        planned[(run.name, run.env_id)] += 1
        ends[(run.name, run.env_id)] = total_steps(run)
    lines = [
        "| script | env | seeds | measure | ours: mean ± std over seeds | 95% CI | anchor | vs the anchor's band | "
        "wall per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, env_id), n_planned in planned.items():
        results = grouped.get((name, env_id), [])
        wall = f"{np.mean([r['wall_s'] for r in results]) / 60:.1f} min" if results else ""
        end = ends[(name, env_id)]
        for metric_name, step in MEASURES[suite]:
            step = step or end
            anchor = anchors.get((name, env_id, metric_name, step))
            beyond = step > end  # an anchor at a step our runs do not reach: shown, not compared
            if beyond and not anchor:
                continue
            scores = [] if beyond else [v for v in (metric(r, metric_name, step) for r in results) if not np.isnan(v)]
            if beyond:
                ours = f"runs end at {end:,}"
            elif len(scores) == 1:
                ours = f"{fmt(scores[0])} (1 seed)"
            else:
                ours = f"{fmt(np.mean(scores))} ± {fmt(np.std(scores))}" if scores else "not run yet"
            lo, hi = bootstrap_ci(scores)
            where, anchor_text = "", "none"
            if anchor:
                half = (
                    f"± {anchor['std']}"
                    if "std" in anchor
                    else f"± {anchor['band']} (read off a plot)"
                    if "band" in anchor
                    else "(not comparable: another dataset)"
                )
                footnote = list(anchors).index((name, env_id, metric_name, step)) + 1
                anchor_text = f"{anchor['label']}: {anchor['mean']} {half} [^{footnote}]"
                if scores and "context" not in anchor:
                    a_lo, a_hi = anchor_range(anchor)
                    m = np.mean(scores)
                    where = "inside" if a_lo <= m <= a_hi else ("above" if m > a_hi else "below")
            lines.append(
                f"| {name} | {env_id} | {len(scores)}/{n_planned} | {METRIC_SHORT[metric_name]} at {step:,} | {ours} | "
                f"{f'{fmt(lo)} – {fmt(hi)}' if len(scores) > 1 else ''} | {anchor_text} | {where} | {wall} |"
            )
    return lines


def iqm_lines(grouped: dict, anchors: dict) -> list[str]:
    """Aggregate IQM over games of the score divided by the anchor's (1.0 = the published score), per script, with
    stratified-bootstrap 95% CIs (Agarwal et al. 2021, `rliable`). Uses the games that have both an anchor and a run,
    and as many seeds per game as every one of them has."""
    from rliable import library as rly
    from rliable import metrics

    by_script = defaultdict(dict)
    published = {
        (name, env_id): a["mean"]
        for (name, env_id, measure, _), a in anchors.items()
        if measure == "train_return_last100"
    }
    for (script, env_id), results in grouped.items():
        if (("dqn_atari.py", env_id) in published) and results:
            reference = published.get((script, env_id), published[("dqn_atari.py", env_id)])
            by_script[script][env_id] = [train_return_last100(r) / reference for r in results]
    lines = []
    for script, games in by_script.items():
        n = min(len(v) for v in games.values())
        scores = {script: np.array([v[:n] for v in games.values()]).T}  # [runs, games]
        if n < 1 or len(games) < 2:
            continue
        point, interval = rly.get_interval_estimates(
            scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=2000, random_state=np.random.RandomState(0)
        )
        lines.append(
            f"| {script} | {len(games)} ({', '.join(g.split('/')[-1] for g in games)}) | {n} | "
            f"{point[script][0]:.2f} | {interval[script][0, 0]:.2f} – {interval[script][1, 0]:.2f} |"
        )
    if not lines:
        return []
    return [
        "",
        "Aggregate over games: IQM of our score divided by the MinAtar paper's DQN score (1.0 = the published "
        "score), stratified-bootstrap 95% CI (rliable):",
        "",
        "| script | games | seeds per game | IQM | 95% CI |",
        "|---|---|---|---|---|",
        *lines,
    ]


def plot(suite: str, runs: list[Run], grouped: dict, anchors: dict, path: Path, datasets: dict):
    """One panel per env: each script's curve (`CURVES`: the moving-average training return, or the evaluations; mean
    over seeds, band min–max), the anchors' points with their bands, and an offline dataset's own score."""
    key, ylabel, xlabel = CURVES[suite]
    envs = list(dict.fromkeys(r.env_id for r in runs))
    scripts = list(dict.fromkeys(r.name for r in runs))
    colours = dict(zip(scripts, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    cols = min(len(envs), 3)
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, env_id in zip(axes.flat, envs):
        total = max(total_steps(r) for r in runs if r.env_id == env_id)
        steps = np.linspace(0, total, 101)[1:]
        for script in scripts:
            results = grouped.get((script, env_id), [])
            if results:
                with np.errstate(all="ignore"), warnings.catch_warnings():  # all-NaN steps (before a curve's start)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    curves = np.array([curve(r, steps, key) for r in results])
                    label = f"{script.removesuffix('.py')} ({len(results)} seeds)"
                    ax.plot(steps, np.nanmean(curves, 0), color=colours[script], label=label)
                    ax.fill_between(steps, np.nanmin(curves, 0), np.nanmax(curves, 0), color=colours[script], alpha=0.2)
            for (name, env, _, _), anchor in anchors.items():
                if (name, env) == (script, env_id):
                    lo, hi = anchor_range(anchor)
                    ax.errorbar(
                        [anchor["step"]],
                        [anchor["mean"]],
                        yerr=[[anchor["mean"] - lo], [hi - anchor["mean"]]],
                        fmt="*" if "context" not in anchor else "x",
                        markersize=12,
                        color=colours[script],
                        capsize=4,
                        label=f"{anchor['label']} ({anchor['step']:,})",
                    )
        if env_id in datasets:
            ax.axhline(
                datasets[env_id]["normalized_score"], color="black", linestyle="--", label="the dataset's episodes"
            )
        ax.set_title(env_id)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(envs) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report(suite: str, results_dir: Path, out_dir: Path) -> str:
    runs = SUITES[suite]
    grouped, anchors = load_results(results_dir, runs), load_anchors(suite)
    done = sum(len(v) for v in grouped.values())
    lines = [
        f"# Benchmark suite `{suite}`",
        "",
        f"{done} of {len(runs)} runs finished. Ours: the mean over seeds (± std over seeds, numpy's ddof = 0) of each "
        "run's measure; the 95% CI is a percentile bootstrap over seeds. Measures: "
        + "; ".join(f"{METRIC_SHORT[m]}: the {METRIC_NAMES[m]}" for m in dict.fromkeys(m for m, _ in MEASURES[suite]))
        + ". Evaluations are the script's own (--eval-episodes; greedy or deterministic, at --eval-epsilon for the "
        "Atari scripts). \"vs the anchor's band\": where our mean falls against the anchor's mean ± std (or ± its "
        "reading error).",
        "",
        f"Reproduce: `python benchmark/run.py --suite {suite} && python benchmark/report.py --suite {suite}`",
        "",
        *table(suite, runs, grouped, anchors),
    ]
    if suite in MULTI_GAME:
        lines += iqm_lines(grouped, anchors)
    datasets = (
        json.loads((results_dir / "datasets.json").read_text()) if (results_dir / "datasets.json").exists() else {}
    )
    if datasets:
        lines += [
            "",
            "The datasets (`python benchmark/offline_datasets.py` builds them), with their reference returns:",
            "",
            "| dataset | episodes | transitions | mean return | normalised score | random, expert return | command |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {d['episodes']} | {d['steps']:,} | {d['mean_return']} | {d['normalized_score']} | "
            f"{d['ref_min_score']:.1f}, {d['ref_max_score']} | `{d['command']}` |"
            for name, d in datasets.items()
        ]
    if anchors:
        lines += ["", "Anchors:", ""] + [
            f"[^{i + 1}]: {a['source']}; {METRIC_NAMES[a['metric']]} at {a['step']:,} steps"
            for i, a in enumerate(anchors.values())
        ]
    failed = sorted(p.name.removesuffix(".failed.json") for p in results_dir.glob("*.failed.json"))
    if failed:
        lines += ["", f"Failed runs (run the suite again to retry): {', '.join(failed)}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(suite, runs, grouped, anchors, out_dir / f"{suite}.png", datasets)
    lines += ["", f"![learning curves]({suite}.png)"]
    text = "\n".join(lines) + "\n"
    (out_dir / f"{suite}.md").write_text(text)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True, choices=sorted(SUITES))
    parser.add_argument("--results-dir", type=Path, default=None, help="default: benchmark/results/<suite>")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where <suite>.md and <suite>.png go")
    args = parser.parse_args()
    print(report(args.suite, args.results_dir or RESULTS / args.suite, args.out_dir))


if __name__ == "__main__":
    main()
