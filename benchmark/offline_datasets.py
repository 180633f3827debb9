"""The recipe of the `offline` suite's datasets: it rebuilds them from nothing, in D4RL's manner but on Hopper-v5.

    python benchmark/offline_datasets.py            # then: python benchmark/run.py --suite offline

- `hopper/sac-medium-replay-v0` ("medium-replay"): every training episode of a SAC run (`ddpg_td3_sac.py`, its
  defaults, seed 1) stopped at its first evaluation of 1000 or more, about a third of D4RL's SAC expert (3234.3):
  D4RL's medium level. That run, watched and stopped by hand, ended at `STOP` transitions; the recipe trains exactly
  that many.
- `hopper/sac-medium-v0` ("medium"): 100 deterministic episodes of that run's final checkpoint.

Both carry reference returns for the normalised score: `ref_max_score` 3234.3, D4RL's SAC expert on Hopper, and a
`ref_min_score` that Minari measures from 100 episodes of uniformly random actions on Hopper-v5. The datasets stay out
of git (Minari keeps them in ~/.minari/datasets, or MINARI_DATASETS_PATH); their summary (episodes, steps, returns,
normalised score) goes to benchmark/results/offline/datasets.json, which the report reads.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmark" / "results" / "offline" / "sac-hopper"  # the SAC run's folder (runs/, its checkpoint)
STOP = 70_098
D4RL_HOPPER_EXPERT = 3234.3  # D4RL's reference return of its SAC expert (d4rl/infos.py, REF_MAX_SCORE of hopper)
REPLAY, MEDIUM = "hopper/sac-medium-replay-v0", "hopper/sac-medium-v0"
COMMANDS = {
    REPLAY: [
        "--algo",
        "sac",
        "--env-id",
        "Hopper-v5",
        "--seed",
        1,
        "--total-timesteps",
        STOP,
        "--save-model",
        "--eval-episodes",
        10,
        "--save-dataset",
        REPLAY,
        "--dataset-ref-max-score",
        D4RL_HOPPER_EXPERT,
        "--threads",
        1,
    ],
    MEDIUM: [
        "--eval-checkpoint",
        "CHECKPOINT",
        "--seed",
        1,
        "--eval-episodes",
        100,
        "--save-dataset",
        MEDIUM,
        "--dataset-ref-max-score",
        D4RL_HOPPER_EXPERT,
        "--threads",
        1,
    ],
}


def summary(dataset_id: str) -> dict:
    import minari

    dataset = minari.load_dataset(dataset_id)
    returns = np.array([episode.rewards.sum() for episode in dataset.iterate_episodes()])
    low, high = dataset.storage.metadata["ref_min_score"], dataset.storage.metadata["ref_max_score"]
    return {
        "episodes": dataset.total_episodes,
        "steps": dataset.total_steps,
        "mean_return": round(float(returns.mean()), 1),
        "normalized_score": round(float(100 * (returns.mean() - low) / (high - low)), 1),
        "ref_min_score": low,
        "ref_max_score": high,
        "command": "python ddpg_td3_sac.py " + " ".join(map(str, COMMANDS[dataset_id])),
    }


def main():
    import minari

    WORK.mkdir(parents=True, exist_ok=True)
    for dataset_id, flags in COMMANDS.items():
        if dataset_id in minari.list_local_datasets():
            print(f"{dataset_id}: already here")
            continue
        checkpoints = sorted((WORK / "runs").glob("*/ddpg_td3_sac.pt"))
        flags = [str(checkpoints[-1]) if f == "CHECKPOINT" else str(f) for f in flags]
        print(f"{dataset_id}: python ddpg_td3_sac.py {' '.join(flags)}", flush=True)
        subprocess.run([sys.executable, str(ROOT / "ddpg_td3_sac.py"), *flags], cwd=WORK, check=True)
    summaries = {dataset_id: summary(dataset_id) for dataset_id in COMMANDS}
    (WORK.parent / "datasets.json").write_text(json.dumps(summaries, indent=1))
    print(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
