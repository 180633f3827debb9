"""Tables and plots of a benchmark suite's results against the published anchors (benchmark/anchors.toml) and the
published learning curves (benchmark/published/*.json).

    python benchmark/report.py --suite classic

Writes benchmark/results/<suite>.md (per script and env, for each of the suite's measures and each anchor's: our mean
± std over seeds with every seed's value, a 95% bootstrap CI from 5 seeds up, next to the anchor's number and source;
for multi-game suites, the IQM of anchor-normalised scores with stratified-bootstrap CIs from rliable; for each
(script, env) whose mean is outside its anchor's band, a link to the section of the script's docs page that explains
it) and
benchmark/results/<suite>.png (learning curves: ours against the anchors' points and the published curves). It reads
whatever runs have finished, so it can be run while a suite is still going.
"""

import argparse
import json
import re
import sys
import tomllib
import warnings
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import WINDOW  # noqa: E402
from suites import SUITES, Run  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PUBLISHED = HERE / "published"  # published whole learning curves, one JSON each (`load_published`)
DOCS = HERE.parent / "docs"  # a page per script: its section headed with a suite's name explains that suite's results
MULTI_GAME = {"minatar"}  # suites whose games are aggregated (IQM); classic control's returns have no common scale
MIN_CI_SEEDS = 5  # below this a percentile bootstrap over seeds is the seeds' range, or close to it (`bootstrap_ci`)
DIRTY = "+changes"  # run.py's mark on the commit of a run started from a tree with uncommitted changes


def train_return_last100(result: dict) -> float:
    """The mean training episodic return over the run's last 100 episodes (fewer if it had fewer)."""
    value = result["train_return_last100"]
    return float("nan") if value is None else value


def train_return_at(result: dict, step: int) -> float:
    """The training curve (the mean return of the last 100 episodes finished by then) at `step`: its point there, or
    linear between the two around it; NaN outside the curve."""
    return float(curve(result, np.array([step], dtype=float), "curve")[0])


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
    "train_return_at": train_return_at,
    "eval_return": eval_return,
    "eval_return_at": eval_return_at,
    "normalized_score": normalized_score,
}
STEP_METRICS = {"train_return_at", "eval_return_at"}  # read at the anchor's step, not at the run's end
TRAIN_METRICS = {"train_return_last100", "train_return_at"}  # of the training episodes; the others evaluate
METRIC_NAMES = {
    "train_return_last100": f"mean training episodic return over the last {WINDOW} episodes",
    "train_return_at": f"training curve, the mean return of the last {WINDOW} training episodes finished by that step",
    "eval_return": "mean return of the final evaluation",
    "eval_return_at": "mean return of the deterministic evaluation",
    "normalized_score": "normalised score of the final evaluation",
}
METRIC_SHORT = {
    "train_return_last100": f"train return, last {WINDOW} episodes",
    "train_return_at": f"train return ({WINDOW}-episode curve)",
    "eval_return": "final eval return",
    "eval_return_at": "eval return",
    "normalized_score": "final normalised score",
}
# what each suite's table gives per (script, env): (metric, step); step None is the run's end. Anchors at another
# (metric, step) add their own rows (`measures`).
MEASURES = defaultdict(lambda: [("train_return_last100", None), ("eval_return", None)])
MEASURES["mujoco"] = [
    ("eval_return_at", 100_000),
    ("eval_return_at", 300_000),
    ("train_return_last100", None),
    ("train_return_last100", 1_000_000),
]
MEASURES["offline"] = [("normalized_score", None), ("eval_return", None)]
# the plots' y: (the results' curve, its axis label, the x axis label, "train" or "eval")
CURVES = defaultdict(lambda: ("curve", f"training return ({WINDOW}-episode mean)", "environment steps", "train"))
CURVES["mujoco"] = ("eval_curve", "evaluation return (10 episodes)", "environment steps", "eval")
CURVES["offline"] = ("eval_curve_normalized", "normalised score (evaluation)", "gradient steps", "eval")
MARKERS = {"eval": "*", "train": "D", "context": "X"}
NEUTRAL = ["0.3", "0.55", "0.75"]  # published curves of a script the suite does not run
EDGE = 0.05  # an anchor beyond the runs' end sits this fraction of the x axis right of it


def metric(result: dict, name: str, step) -> float:
    return METRICS[name](result, step) if name in STEP_METRICS else METRICS[name](result)


def curve(result: dict, steps: np.ndarray, key: str = "curve") -> np.ndarray:
    """The run's stored curve (`key`: the moving average of training returns, or an evaluation curve) at `steps`
    (linear between its points; NaN before its first and after its last)."""
    points = np.array([(s, np.nan if v is None else v) for s, v in result.get(key, [])], dtype=float).reshape(-1, 2)
    if not len(points):
        return np.full(len(steps), np.nan)
    return np.interp(steps, points[:, 0], points[:, 1], left=np.nan, right=np.nan)


def bootstrap_ci(values, reps=10_000, seed=0) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean over seeds (resampling seeds with replacement). With n seeds a resample
    repeating the lowest one n times has probability n^-n, above 2.5% for n ≤ 3: the interval is then the seeds' range,
    and at 4 still close to it. So the table gives it from `MIN_CI_SEEDS` seeds up."""
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


def load_published(suite: str) -> list[dict]:
    """The published learning curves of the suite: PUBLISHED/*.json, each {suite, script, variant ("" for none),
    env_id, label, kind ("eval" or "train"), source, band (what lo and hi are), steps, mean, lo, hi}."""
    paths = sorted(PUBLISHED.glob("*.json")) if PUBLISHED.is_dir() else []
    curves = [json.loads(p.read_text()) for p in paths]
    return [c for c in curves if c["suite"] == suite]


def anchor_range(anchor: dict) -> tuple[float, float]:
    """The anchor's band: mean ± std over its seeds, or ± the reading error of a value read off a plot."""
    half = anchor.get("std", anchor.get("band", 0.0))  # as the table prints it; a context anchor may have neither
    return anchor["mean"] - half, anchor["mean"] + half


def display(name: str) -> str:
    """A script and variant as the tables and plots name them: `c51_atari.py:rainbow` is `c51_atari rainbow`."""
    return name.replace(".py", "").replace(":", " ")


def is_dirty(result: dict) -> bool:
    return result.get("commit", "").endswith(DIRTY)


def short_step(step: int) -> str:
    """1000000 -> 1M, 250000 -> 250k."""
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if step >= size:
            return f"{step / size:g}{unit}"
    return str(step)


def fmt(x, digits=1) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.{digits}f}"


def ours_cell(values: list[float], dirty: list[bool]) -> str:
    """Mean ± std over seeds (numpy's ddof = 0) with each seed's value; one seed: its value alone. † marks a value
    from a tree with uncommitted changes."""
    seeds = [fmt(v) + ("†" if d else "") for v, d in zip(values, dirty)]
    if len(values) == 1:
        return f"{seeds[0]} (1 seed)"
    return f"{fmt(np.mean(values))} ± {fmt(np.std(values))} ({', '.join(seeds)})"


def ci_cell(values: list[float]) -> str:
    if len(values) < MIN_CI_SEEDS:
        return ""
    lo, hi = bootstrap_ci(values)
    return f"{fmt(lo)} – {fmt(hi)}"


def measures(suite: str, name: str, env_id: str, anchors: dict, end: int) -> list[tuple[str, int]]:
    """The (metric, step) rows of a script on an env: the suite's `MEASURES` (step None: the runs' `end`) and every
    anchor of that script and env at another (metric, step), in step order (the suite's order at equal steps)."""
    rows = [(m, step or end) for m, step in MEASURES[suite]]
    rows += [(m, s) for (n, e, m, s) in anchors if (n, e) == (name, env_id) and (m, s) not in rows]
    return sorted(rows, key=lambda row: row[1])


def table(suite: str, runs: list[Run], grouped: dict, anchors: dict) -> list[str]:
    """A row per (script, env) and measure (`measures`): our mean ± std over seeds with each seed's value and, from
    `MIN_CI_SEEDS` seeds, its bootstrap CI, next to the anchor of that measure, if there is one."""
    planned, ends = defaultdict(int), {}
    for run in runs:
        planned[(run.name, run.env_id)] += 1
        ends[(run.name, run.env_id)] = run.total_steps
    lines = [
        "| script | env | seeds | measure | ours: mean ± std over seeds (each seed) | "
        f"95% CI ({MIN_CI_SEEDS}+ seeds) | anchor | vs the anchor's band | wall per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, env_id), n_planned in planned.items():
        results = grouped.get((name, env_id), [])
        end = ends[(name, env_id)]
        for metric_name, step in measures(suite, name, env_id, anchors, end):
            anchor = anchors.get((name, env_id, metric_name, step))
            beyond = step > end  # an anchor at a step our runs do not reach: shown, not compared
            if beyond and not anchor:
                continue
            pairs = [] if beyond else [(metric(r, metric_name, step), is_dirty(r)) for r in results]
            pairs = [(v, d) for v, d in pairs if not np.isnan(v)]
            scores = [v for v, _ in pairs]
            if beyond:
                ours = f"runs end at {end:,}"
            elif scores:
                ours = ours_cell(scores, [d for _, d in pairs])
            else:
                ours = "n/a" if results else "not run yet"
            where, anchor_text = "", "none"
            if anchor:
                context = bool(anchor.get("context"))
                half = (
                    "(context: not compared)"
                    if context
                    else f"± {anchor['std']}"
                    if "std" in anchor
                    else f"± {anchor['band']} (read off a plot)"
                )
                footnote = list(anchors).index((name, env_id, metric_name, step)) + 1
                anchor_text = f"{anchor['label']}: {anchor['mean']} {half} [^{footnote}]"
                if scores and not context:
                    a_lo, a_hi = anchor_range(anchor)
                    m = np.mean(scores)
                    where = "inside" if a_lo <= m <= a_hi else ("above" if m > a_hi else "below")
            # seeds and wall time only where the row has values: an empty row is blank there
            seeds = f"{len(scores)}/{n_planned}" if scores else ""
            wall = f"{np.mean([r['wall_s'] for r in results]) / 60:.1f} min" if scores else ""
            lines.append(
                f"| {display(name)} | {env_id} | {seeds} | {METRIC_SHORT[metric_name]} at {step:,} | {ours} | "
                f"{ci_cell(scores)} | {anchor_text} | {where} | {wall} |"
            )
    return lines


def docs_section(script: str, suite: str) -> tuple[Path, str]:
    """The docs page of a table's script (`dqn_atari`: docs/dqn.md; `ddpg_td3_sac td3`: docs/ddpg_td3_sac.md) and
    its first heading that names the suite in backticks, as "### `classic`: ..." does."""
    page = DOCS / (script.split()[0].removesuffix("_atari").removesuffix("_offline") + ".md")
    headings, code = [], False
    for line in page.read_text().splitlines():
        code ^= line.startswith("```")  # a `#` line in a code block is a shell comment
        if not code and re.match(r"#{1,6} ", line):
            headings.append(line.lstrip("#").strip())
    heading = next((h for h in headings if f"`{suite}`" in h), None)
    if heading is None:
        raise SystemExit(f"error: {page} has no heading naming `{suite}`, to explain its results outside their band")
    return page, heading


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (but - and _), a hyphen for each space."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def outside_lines(suite: str, rows: list[str]) -> list[str]:
    """From the table's `rows`, a line per (script, env) whose mean is outside its anchor's band at some measure:
    above or below, at which steps, and a link to the section of the script's docs page that explains why (the cause
    found, or what was tried and ruled out)."""
    places = defaultdict(list)  # (script, env) -> [(above or below, [steps])], in step order
    for row in rows[2:]:
        script, env_id, _, measure, *_, where, _ = [c.strip() for c in row.strip("|").split("|")]
        if where in ("above", "below"):
            step = short_step(int(measure.split(" at ")[-1].replace(",", "")))
            cell = places[(script, env_id)]
            if cell and cell[-1][0] == where:
                cell[-1][1].append(step)
            else:
                cell.append((where, [step]))
    if not places:
        return []
    lines = ["", "Means outside their anchor's band, each with the docs section that explains it:", ""]
    for (script, env_id), cell in places.items():
        page, heading = docs_section(script, suite)
        where = "; ".join(f"{place} at {' and '.join(', '.join(steps).rsplit(', ', 1))}" for place, steps in cell)
        link = f"../../docs/{page.name}#{heading_anchor(heading)}"  # from benchmark/results/
        lines.append(f"- {script}, {env_id}: {where}. [docs/{page.name}: {heading}]({link})")
    return lines


def dirty_lines(grouped: dict) -> list[str]:
    """The footnote to † (`ours_cell`), naming the commits, where some result has one."""
    commits = sorted({r["commit"] for results in grouped.values() for r in results if is_dirty(r)})
    if not commits:
        return []
    return [
        "",
        f"† run from a tree with uncommitted changes (commit {', '.join(commits)}): not reproducible from git.",
    ]


def iqm_lines(grouped: dict, anchors: dict, step: int = 1_000_000) -> list[str]:
    """Aggregate IQM over games of the score divided by the anchor's (1.0 = the published score), per script, with
    stratified-bootstrap 95% CIs (Agarwal et al. 2021, `rliable`). Uses the `train_return_last100` anchors at `step`
    (the runs' end), the games that have both such an anchor and a run, and as many seeds per game as every one of
    them has."""
    from rliable import library as rly
    from rliable import metrics

    by_script = defaultdict(dict)
    published = {
        (name, env_id): a["mean"]
        for (name, env_id, measure, at), a in anchors.items()
        if measure == "train_return_last100" and at == step
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
        # rliable's StratifiedBootstrap draws its resamples from numpy's global RNG (np.random.choice), whatever its
        # random_state: seeding that, per script, makes the CI the same on every run and independent of the other rows
        state = np.random.get_state()
        np.random.seed(0)
        point, interval = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=2000)
        np.random.set_state(state)
        lines.append(
            f"| {display(script)} | {len(games)} ({', '.join(g.split('/')[-1] for g in games)}) | {n} | "
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


def published_lines(published: list[dict], envs: list[str], suite: str) -> list[str]:
    """The published curves drawn on the plot, with their sources and what their shading is."""
    shown = [c for c in published if c["env_id"] in envs]
    if not shown:
        return []
    kind = CURVES[suite][3]
    lines = ["", "Published learning curves on the plot (dashed; dotted where they show another return than ours):", ""]
    lines += ["| curve | env | shows | shading | source |", "|---|---|---|---|---|"]
    for c in shown:
        shows = "training return" if c["kind"] == "train" else "evaluation return"
        lines.append(
            f"| {c['label']} | {c['env_id']} | {shows}{'' if c['kind'] == kind else ' (not our y)'} | {c['band']} | "
            f"{c['source']} |"
        )
    return lines


def seeds_label(counts: list[int]) -> str:
    lo, hi = min(counts), max(counts)
    if lo == hi:
        return f"{lo} seed{'s' if lo > 1 else ''}"
    return f"{lo}–{hi} seeds per env"


def plot(
    suite: str, runs: list[Run], grouped: dict, anchors: dict, path: Path, datasets: dict, published: list[dict]
) -> str:
    """One panel per env, its x axis ending where the suite's runs end: each script's curve (`CURVES`: the
    moving-average training return, or the evaluations; mean over seeds, band min–max), the published curves (dashed,
    dotted where they show the other return; their band shaded), the anchors' points with their bands (★ evaluation,
    ◆ training return; one beyond the runs' end sits right of the axis with its step), and an offline dataset's own
    score. One legend below the panels. Returns the caption: what each mark means."""
    key, ylabel, xlabel, kind = CURVES[suite]
    envs = list(dict.fromkeys(r.env_id for r in runs))
    scripts = list(dict.fromkeys(r.name for r in runs))
    colours = dict(zip(scripts, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    neutral = {}  # name -> colour of a script and variant the suite does not run (published curves, anchors)

    def colour(name):
        return colours.get(name) or neutral.setdefault(name, NEUTRAL[len(neutral) % len(NEUTRAL)])

    dirty = {s for (s, _), results in grouped.items() if any(map(is_dirty, results))}
    cols = min(len(envs), 3)
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    drawn = set()  # what the caption explains
    for ax, env_id in zip(axes.flat, envs):
        total = max(r.total_steps for r in runs if r.env_id == env_id)
        steps = np.linspace(0, total, 101)[1:]
        for script in scripts:
            results = grouped.get((script, env_id), [])
            if not results:
                continue
            counts = [len(v) for (s, _), v in grouped.items() if s == script and v]
            with np.errstate(all="ignore"), warnings.catch_warnings():  # all-NaN steps (before a curve's start)
                warnings.simplefilter("ignore", RuntimeWarning)
                curves = np.array([curve(r, steps, key) for r in results])
                label = f"{display(script)}{' †' if script in dirty else ''} ({seeds_label(counts)})"
                ax.plot(steps, np.nanmean(curves, 0), color=colours[script], label=label)
                ax.fill_between(steps, np.nanmin(curves, 0), np.nanmax(curves, 0), color=colours[script], alpha=0.2)
            drawn.add("ours")
        for c in published:
            if c["env_id"] != env_id:
                continue
            name = c["script"] + (f":{c['variant']}" if c.get("variant") else "")
            x = np.asarray(c["steps"], dtype=float)
            keep = x <= total
            other = c["kind"] != kind  # another return than the panel's y: still drawn, told apart
            label = c["label"] + (f" ({'training' if c['kind'] == 'train' else 'evaluation'} return)" if other else "")
            style = {"color": colour(name), "linestyle": ":" if other else "--", "linewidth": 1.3}
            ax.plot(x[keep], np.asarray(c["mean"])[keep], **style, label=label)
            ax.fill_between(
                x[keep], np.asarray(c["lo"])[keep], np.asarray(c["hi"])[keep], color=colour(name), alpha=0.1
            )
            drawn.add("published other" if other else "published")
        beyond = defaultdict(list)  # step -> (x, y) of the anchors past the runs' end
        for (name, env, _, _), anchor in anchors.items():
            if env != env_id:
                continue
            lo, hi = anchor_range(anchor)
            mark = "context" if anchor.get("context") else "train" if anchor["metric"] in TRAIN_METRICS else "eval"
            drawn.add(mark)
            x = anchor["step"]
            if anchor["step"] > total:  # right of the axis, apart from a point at the runs' end and from each other
                x = total * (1 + EDGE * (1 + 0.5 * sum(map(len, beyond.values()))))
                beyond[anchor["step"]].append((x, anchor["mean"]))
            ax.errorbar(
                [x],
                [anchor["mean"]],
                yerr=[[anchor["mean"] - lo], [hi - anchor["mean"]]],
                fmt=MARKERS[mark],
                markersize={"eval": 12, "train": 7, "context": 9}[mark],
                color=colour(name),
                markeredgecolor="black" if mark == "train" else None,
                markeredgewidth=0.5,
                capsize=4,
                clip_on=False,  # a point on the right edge is drawn whole
                zorder=3,
                label=anchor["label"],
            )
        for step, points in beyond.items():
            ax.annotate(
                f"→ {short_step(step)}",
                (max(x for x, _ in points), max(y for _, y in points)),
                xytext=(7, 5),
                textcoords="offset points",
                fontsize=8,
                annotation_clip=False,
            )
            drawn.add("beyond")
        if env_id in datasets:
            ax.axhline(
                datasets[env_id]["normalized_score"], color="black", linestyle="-.", label="the dataset's episodes"
            )
            drawn.add("dataset")
        if not any(grouped.get((script, env_id)) for script in scripts):
            box = {"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"}  # over a published curve
            ax.text(0.04, 0.94, "not run yet", transform=ax.transAxes, ha="left", va="top", color="0.3", bbox=box)
        ax.set_xlim(0, total)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: short_step(round(x))))
        ax.set_title(env_id)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(envs) :]:
        ax.axis("off")
    legend = defaultdict(list)  # label -> its handles, one of each kind: a curve and anchors of one label overlaid
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if type(handle) not in map(type, legend[label]):
                legend[label].append(handle)
    fig.tight_layout(w_pad=2.5)
    if legend:
        fig.legend(
            [tuple(handles) for handles in legend.values()],
            list(legend),
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(len(legend), 3),
            fontsize=8,
            frameon=False,
        )
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    other = "training" if kind == "eval" else "evaluation"
    caption = {
        "ours": "Lines: mean over seeds; shading: min–max over seeds",
        "published": "dashed: published curves, shading: their band (listed above)",
        "published other": f"dotted: a published curve of the {other} return, not the panel's y",
        "eval": "★ evaluation anchors",
        "train": "◆ training-return anchors",
        "context": "✕ context anchors (another dataset or another measure: shown, not compared)",
        "beyond": "right of a panel, with → and a step: an anchor beyond our runs' end, at that step",
        "dataset": "dash-dot: the dataset's own episodes",
    }
    parts = [text for mark, text in caption.items() if mark in drawn]
    if {"eval", "train", "context"} & drawn:
        parts.append("bars: the anchor's std or reading error")
    if dirty:
        parts.append("†: some of its runs are not reproducible from git (see the table)")
    return "; ".join(parts) + "."


def report(suite: str, results_dir: Path, out_dir: Path) -> str:
    runs = SUITES[suite]
    grouped, anchors, published = load_results(results_dir, runs), load_anchors(suite), load_published(suite)
    envs = list(dict.fromkeys(r.env_id for r in runs))
    done = sum(len(v) for v in grouped.values())
    rows = {m for run in runs for m, _ in measures(suite, run.name, run.env_id, anchors, run.total_steps)}
    lines = [
        f"# Benchmark suite `{suite}`",
        "",
        f"{done} of {len(runs)} runs finished. Ours: the mean ± std over seeds (numpy's ddof = 0) of each run's "
        "measure, then each seed's value in seed order; a single seed is given alone. The 95% CI, a percentile "
        f"bootstrap of the mean over seeds, is given from {MIN_CI_SEEDS} seeds up: with fewer it is no more than the "
        "range of the seeds (with 3, a resample repeating the lowest seed three times has probability 1/27, above "
        "2.5%). Measures: "
        + "; ".join(f"{METRIC_SHORT[m]}: the {METRIC_NAMES[m]}" for m in METRIC_SHORT if m in rows)
        + ". Evaluations are the script's own (--eval-episodes; greedy or deterministic, at --eval-epsilon for the "
        "Atari scripts). \"vs the anchor's band\": where our mean falls against the anchor's mean ± std (or ± its "
        "reading error).",
        "",
        f"Reproduce: `python benchmark/run.py --suite {suite} && python benchmark/report.py --suite {suite}`",
        "",
    ]
    table_rows = table(suite, runs, grouped, anchors)
    lines += [*table_rows, *dirty_lines(grouped), *outside_lines(suite, table_rows)]
    if suite in MULTI_GAME:
        lines += iqm_lines(grouped, anchors, max(r.total_steps for r in runs))
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
    lines += published_lines(published, envs, suite)
    if anchors:
        lines += ["", "Anchors:", ""] + [
            f"[^{i + 1}]: {a['source'].rstrip('.')}; "
            f"our measure: the {METRIC_NAMES[a['metric']]}, at {a['step']:,} steps"
            for i, a in enumerate(anchors.values())
        ]
    failed = sorted(r.id for r in runs if (results_dir / f"{r.id}.failed.json").exists())
    if failed:
        lines += ["", f"Failed runs (run the suite again to retry): {', '.join(failed)}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    caption = plot(suite, runs, grouped, anchors, out_dir / f"{suite}.png", datasets, published)
    lines += ["", f"![learning curves]({suite}.png)", "", f"*{caption}*"]
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
