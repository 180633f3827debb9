"""Tables and plots of a benchmark suite's results against the published anchors (benchmark/anchors.toml).

    python benchmark/report.py --suite classic

Writes benchmark/results/<suite>.md (per script and env: our mean ± std over seeds with a 95% bootstrap CI, next to
the anchor's number and source; for multi-game suites, the IQM of anchor-normalised scores with stratified-bootstrap
CIs from rliable) and benchmark/results/<suite>.png (learning curves: ours against the anchors' points). It reads
whatever runs have finished, so it can be run while a suite is still going.
"""

import argparse
import json
import sys
import tomllib
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


METRICS = {"train_return_last100": train_return_last100, "eval_return": eval_return}
METRIC_NAMES = {"train_return_last100": f"mean training episodic return over the last {WINDOW} episodes",
                "eval_return": "mean return of the final evaluation"}  # fmt: skip


def curve(result: dict, steps: np.ndarray) -> np.ndarray:
    """The run's stored moving-average curve, at `steps` (linear between its points; NaN before its first)."""
    points = np.array([(s, np.nan if v is None else v) for s, v in result["curve"]], dtype=float)
    return np.interp(steps, points[:, 0], points[:, 1], left=np.nan)


def bootstrap_ci(values, reps=10_000, seed=0) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean over seeds (resampling seeds with replacement)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    means = np.random.default_rng(seed).choice(values, size=(reps, len(values))).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def load_results(results_dir: Path, runs: list[Run]) -> dict:
    """{(script, env_id): [result, ...]} of the suite's finished runs, in the suite's order."""
    grouped = defaultdict(list)
    for run in runs:
        path = results_dir / f"{run.id}.json"
        if path.exists():
            grouped[(run.script, run.env_id)].append(json.loads(path.read_text()))
    return grouped


def load_anchors(suite: str) -> dict:
    anchors = tomllib.loads((HERE / "anchors.toml").read_text())["anchor"]
    return {(a["script"], a["env_id"]): a for a in anchors if a["suite"] == suite}


def anchor_range(anchor: dict) -> tuple[float, float]:
    """The anchor's band: mean ± std over its seeds, or ± the reading error of a value read off a plot."""
    half = anchor.get("band", anchor.get("std", 0.0))
    return anchor["mean"] - half, anchor["mean"] + half


def fmt(x, digits=1) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.{digits}f}"


def table(runs: list[Run], grouped: dict, anchors: dict) -> list[str]:
    planned = defaultdict(int)
    for run in runs:
        planned[(run.script, run.env_id)] += 1
    lines = ["| script | env | seeds | ours: train return, last 100 episodes | 95% CI | ours: final eval | anchor | "
             "vs the anchor's band | wall per run |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (script, env_id), n_planned in planned.items():
        results = grouped.get((script, env_id), [])
        scores = [train_return_last100(r) for r in results]
        evals = [eval_return(r) for r in results]
        anchor = anchors.get((script, env_id))
        ours = f"{fmt(np.mean(scores))} ± {fmt(np.std(scores))}" if scores else "not run yet"
        lo, hi = bootstrap_ci(scores)
        where, anchor_text = "", "none"
        if anchor:
            half = f"± {anchor['std']}" if "std" in anchor else f"± {anchor['band']} (read off a plot)"
            anchor_text = f"{anchor['label']}: {anchor['mean']} {half} [^{list(anchors).index((script, env_id)) + 1}]"
            if scores:
                a_lo, a_hi = anchor_range(anchor)
                m = np.mean(scores)
                where = "inside" if a_lo <= m <= a_hi else ("above" if m > a_hi else "below")
        wall = f"{np.mean([r['wall_s'] for r in results]) / 60:.1f} min" if results else ""
        lines.append(f"| {script} | {env_id} | {len(results)}/{n_planned} | {ours} | "
                     f"{f'{fmt(lo)} – {fmt(hi)}' if len(scores) > 1 else ''} | {fmt(np.mean(evals)) if evals else 'n/a'} | {anchor_text} | "
                     f"{where} | {wall} |")  # fmt: skip
    return lines


def iqm_lines(grouped: dict, anchors: dict) -> list[str]:
    """Aggregate IQM over games of the score divided by the anchor's (1.0 = the published score), per script, with
    stratified-bootstrap 95% CIs (Agarwal et al. 2021, `rliable`). Uses the games that have both an anchor and a run,
    and as many seeds per game as every one of them has."""
    from rliable import library as rly
    from rliable import metrics

    by_script = defaultdict(dict)
    for (script, env_id), results in grouped.items():
        if (("dqn_atari.py", env_id) in anchors) and results:
            reference = anchors.get((script, env_id), anchors[("dqn_atari.py", env_id)])["mean"]
            by_script[script][env_id] = [train_return_last100(r) / reference for r in results]
    lines = []
    for script, games in by_script.items():
        n = min(len(v) for v in games.values())
        scores = {script: np.array([v[:n] for v in games.values()]).T}  # [runs, games]
        if n < 1 or len(games) < 2:
            continue
        point, interval = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=2000,
                                                        random_state=np.random.RandomState(0))  # fmt: skip
        lines.append(f"| {script} | {len(games)} ({', '.join(g.split('/')[-1] for g in games)}) | {n} | "
                     f"{point[script][0]:.2f} | {interval[script][0, 0]:.2f} – {interval[script][1, 0]:.2f} |")  # fmt: skip
    if not lines:
        return []
    return ["", "Aggregate over games: IQM of our score divided by the MinAtar paper's DQN score (1.0 = the published "
            "score), stratified-bootstrap 95% CI (rliable):", "", "| script | games | seeds per game | IQM | 95% CI |",
            "|---|---|---|---|---|", *lines]  # fmt: skip


def plot(runs: list[Run], grouped: dict, anchors: dict, path: Path):
    """One panel per env: each script's moving-average training return (mean over seeds, band min–max), and the
    anchors' points with their bands."""
    envs = list(dict.fromkeys(r.env_id for r in runs))
    scripts = list(dict.fromkeys(r.script for r in runs))
    colours = dict(zip(scripts, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    cols = min(len(envs), 3)
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, env_id in zip(axes.flat, envs):
        total = max((int(dict(zip(r.flags[::2], r.flags[1::2])).get("--total-timesteps", 0)) for r in runs if r.env_id == env_id))
        steps = np.linspace(0, total, 101)[1:]
        for script in scripts:
            results = grouped.get((script, env_id), [])
            if results:
                curves = np.array([curve(r, steps) for r in results])
                label = f"{script.removesuffix('.py')} ({len(results)} seeds)"
                ax.plot(steps, np.nanmean(curves, 0), color=colours[script], label=label)
                ax.fill_between(steps, np.nanmin(curves, 0), np.nanmax(curves, 0), color=colours[script], alpha=0.2)
            anchor = anchors.get((script, env_id))
            if anchor:
                lo, hi = anchor_range(anchor)
                ax.errorbar([anchor["step"]], [anchor["mean"]], yerr=[[anchor["mean"] - lo], [hi - anchor["mean"]]], fmt="*",
                            markersize=12, color=colours[script], capsize=4, label=anchor["label"])  # fmt: skip
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(f"training return ({WINDOW}-episode mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report(suite: str, results_dir: Path, out_dir: Path) -> str:
    runs = SUITES[suite]
    grouped, anchors = load_results(results_dir, runs), load_anchors(suite)
    done = sum(len(v) for v in grouped.values())
    lines = [f"# Benchmark suite `{suite}`", "",
             f"{done} of {len(runs)} runs finished. Ours: the mean over seeds (± std over seeds, numpy's ddof = 0) of each "
             f"run's mean training return over its last {WINDOW} episodes; the 95% CI is a percentile bootstrap over "
             "seeds. The final evaluation is the script's own (its --eval-episodes at --eval-epsilon). \"vs the anchor's "
             "band\": where our mean falls against the anchor's mean ± std (or ± its reading error).", "",
             f"Reproduce: `python benchmark/run.py --suite {suite} && python benchmark/report.py --suite {suite}`", "",
             *table(runs, grouped, anchors)]  # fmt: skip
    if suite in MULTI_GAME:
        lines += iqm_lines(grouped, anchors)
    if anchors:
        lines += ["", "Anchors:", ""] + [f"[^{i + 1}]: {a['source']}; {METRIC_NAMES[a['metric']]} at {a['step']:,} steps" for i, a in
                                          enumerate(anchors.values())]  # fmt: skip
    failed = sorted(p.name.removesuffix(".failed.json") for p in results_dir.glob("*.failed.json"))
    if failed:
        lines += ["", f"Failed runs (run the suite again to retry): {', '.join(failed)}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(runs, grouped, anchors, out_dir / f"{suite}.png")
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
