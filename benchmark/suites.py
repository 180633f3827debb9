"""The benchmark suites: each is a list of runs (script, env id, seed, flags), in the order they are started.

A suite is the protocol of the numbers it is compared with (benchmark/anchors.toml), written as the scripts' flags:
the scripts keep their own (Atari) defaults, and a suite overrides what its protocol sets.
"""

from typing import NamedTuple


class Run(NamedTuple):
    script: str
    env_id: str
    seed: int
    flags: tuple = ()
    variant: str = ""
    """names what `flags` make of a script that holds several algorithms (`td3`, `bc`); part of the run's id"""
    env_flag: str = "--env-id"
    """the flag that passes `env_id`: offline runs pass a dataset (`--dataset`)"""

    @property
    def name(self) -> str:
        """The script, and `:variant` where it has one (the report's rows and the anchors' keys)."""
        return self.script + (f":{self.variant}" if self.variant else "")

    @property
    def id(self) -> str:
        """The run's file name under benchmark/results/<suite>/: `<script>[-<variant>]__<env>__s<seed>`."""
        return f"{self.name.replace('.py', '').replace(':', '-')}__{self.env_id.replace('/', '-')}__s{self.seed}"

    @property
    def total_steps(self) -> int:
        """`--total-timesteps` in `flags`, in any spelling that the scripts' parser (tyro) reads (`--total-timesteps N`,
        `--total_timesteps N`, `--total-timesteps=N`): the last one given, as that parser reads a repeated flag."""
        total = None
        for k, flag in enumerate(self.flags):
            if flag_name(flag) == "--total-timesteps":
                total = flag.split("=", 1)[1] if "=" in flag else self.flags[k + 1]
        if total is None:
            raise ValueError(f"{self.id}: no --total-timesteps in its flags")
        return int(total)


def flag_name(flag: str) -> str:
    """The flag that a command-line word sets, as the scripts' parser reads it: `--total_timesteps=5` sets
    `--total-timesteps`."""
    return flag.split("=", 1)[0].replace("_", "-")


def runs(scripts, env_ids, seeds, flags=(), per_script=None) -> list[Run]:
    """Every (script, env, seed), scripts outermost so that a suite's first runs are one script's complete table."""
    per_script = per_script or {}
    return [
        Run(s, e, seed, tuple(map(str, (*flags, *per_script.get(s, ())))))
        for s in scripts
        for seed in seeds
        for e in env_ids
    ]


# CleanRL's classic-control protocol (cleanrl/dqn.py and c51.py defaults at fe8d8a03; benchmark/dqn.sh and c51.sh): 500k
# steps, Adam 2.5e-4, buffer 10k, batch 128, hard target copy every 500 steps, ε 1 -> 0.05 over half the run, learning
# from 10k, a gradient step every 10, MSE loss for DQN. C51: 101 atoms on [-100, 100], Adam eps 0.01/128. CleanRL's
# MLP is 120-84 units, ours 128-128. QR-DQN, IQN and FQF run the same protocol (with C51's Adam eps), with no anchor.
CLASSIC = [
    "--total-timesteps",
    500_000,
    "--learning-rate",
    2.5e-4,
    "--buffer-size",
    10_000,
    "--batch-size",
    128,
    "--target-network-frequency",
    500,
    "--start-e",
    1.0,
    "--end-e",
    0.05,
    "--exploration-fraction",
    0.5,
    "--learning-starts",
    10_000,
    "--train-frequency",
    10,
    "--gamma",
    0.99,
]
CLASSIC_ENVS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"]
CLASSIC_PER_SCRIPT = {
    "dqn_atari.py": ["--loss", "mse"],
    "c51_atari.py": ["--n-atoms", 101, "--v-min", -100, "--v-max", 100, "--adam-eps", 0.01 / 128],
    "qrdqn_atari.py": ["--adam-eps", 0.01 / 128],
    "iqn_atari.py": ["--adam-eps", 0.01 / 128],
    "fqf_atari.py": ["--adam-eps", 0.01 / 128],
}

# The MinAtar paper's DQN (Young & Tian 2019; examples/dqn.py in kenjyoung/MinAtar): replay 100k, batch 32, one update
# per frame, target copy every 1000 frames, 5000 random frames, then ε 1 -> 0.1 over 100k frames, Huber loss, γ 0.99,
# step size 2.5e-4. The paper's optimiser is centred RMSprop (α 0.95, eps 0.01); the script uses Adam (eps 1e-8).
# Our ε anneals from frame 0 over the first 100k frames; theirs from frame 5000, after the random frames.
MINATAR_DQN = [
    "--total-timesteps",
    1_000_000,
    "--buffer-size",
    100_000,
    "--batch-size",
    32,
    "--train-frequency",
    1,
    "--target-network-frequency",
    1000,
    "--learning-starts",
    5000,
    "--start-e",
    1.0,
    "--end-e",
    0.1,
    "--exploration-fraction",
    0.1,
    "--learning-rate",
    2.5e-4,
    "--gamma",
    0.99,
    "--loss",
    "huber",
]
# The paper's agents choose among all six actions (examples/dqn.py: `env.num_actions()`), which are the v0 ids; v1 ids
# have each game's minimal action set.
MINATAR_GAMES = [
    "MinAtar/Breakout-v0",
    "MinAtar/SpaceInvaders-v0",
    "MinAtar/Asterix-v0",
    "MinAtar/Freeway-v0",
    "MinAtar/Seaquest-v0",
]
# Revisiting Rainbow's MinAtar settings (Obando-Ceron & Castro 2021; revisiting_rainbow/Configs/{rainbow,quantile,
# implicit}_breakout.gin in JohanSamir/revisiting_rainbow, with Dopamine's defaults for ε): Adam 1e-4, eps 3.125e-4,
# replay 100k, batch 32, learning from 1000 steps, a gradient step every 4, target copy every 1000, ε 1 -> 0.01 over
# 250k steps. C51 is their Rainbow gin without its extras (51 atoms on [-100, 100]); QR-DQN 51 quantiles; IQN 32 τ
# samples for the online, target and acting estimates, a 64-cosine embedding. Their runs are 10M frames; ours 1M.
# Their MinAtar network (networks_new.py) differs from ours, MinAtar's: its flax nn.Conv pads SAME, so 10×10×16 = 1,600
# features reach the head (ours pads VALID, as MinAtar's examples: 8×8×16 = 1,024), and its layers start from
# Glorot-uniform weights (ours from PyTorch's defaults).
MINATAR_RR = [
    "--total-timesteps",
    1_000_000,
    "--buffer-size",
    100_000,
    "--batch-size",
    32,
    "--train-frequency",
    4,
    "--target-network-frequency",
    1000,
    "--learning-starts",
    1000,
    "--start-e",
    1.0,
    "--end-e",
    0.01,
    "--exploration-fraction",
    0.25,
    "--learning-rate",
    1e-4,
    "--adam-eps",
    3.125e-4,
    "--gamma",
    0.99,
]
MINATAR_RR_PER_SCRIPT = {
    "c51_atari.py": ["--n-atoms", 51, "--v-min", -100, "--v-max", 100],
    "qrdqn_atari.py": ["--n-quantiles", 51],
    "iqn_atari.py": ["--n-tau-samples", 32, "--n-target-samples", 32, "--n-act-samples", 32, "--n-cos", 64],
}
# Rainbow: their rainbow_*.gin in full, on c51_atari.py: C51's settings above plus Double, Dueling, 3-step returns,
# prioritized replay and noisy nets. Dopamine's replay weights by 1/√P(i) (β fixed at 0.5) and sets priorities √(loss):
# α = 0.5. Their noisy layers start at σ₀ = 0.1 (networks_new.py), and with noise their ε stays at Dopamine's 0.01
# (`identity_epsilon`). Besides the network's padding and initialisation (above), three differences: their Rainbow
# network has no hidden layer (`hidden_layer = 0`), ours MinAtar's 128 units, as in our C51 runs; their NoisyNetwork
# keeps the first noise it draws (its `prn_inf` cache), ours draws new noise for every action and gradient step, as
# Fortunato et al. and Rainbow do; and Dopamine's priority is the cross-entropy, ours the KL, as Rainbow's.
MINATAR_RAINBOW_EXTRAS = ["--double", "--dueling", "--n-step", 3]
MINATAR_PER = ["--prioritized", "--prioritized-replay-beta", 0.5, "--prioritized-replay-beta-end", 0.5]
MINATAR_NOISY = ["--noisy", "--noisy-sigma0", 0.1, "--start-e", 0.01, "--end-e", 0.01]
# Rainbow, and Rainbow without one of the two components this suite asks about (Hessel et al.'s ablation, Figure 3):
# without prioritized replay its draws are uniform; without noisy nets ε decays as in the C51 runs
MINATAR_RAINBOWS = {
    "rainbow": [*MINATAR_RAINBOW_EXTRAS, *MINATAR_PER, *MINATAR_NOISY],
    "rainbow_no_per": [*MINATAR_RAINBOW_EXTRAS, *MINATAR_NOISY],
    "rainbow_no_noisy": [*MINATAR_RAINBOW_EXTRAS, *MINATAR_PER],
}

# MuJoCo: the scripts' defaults (CleanRL's), with a deterministic evaluation of 10 episodes every 10k transitions, up
# to 300k. TD3's defaults are also the protocol of Tianshou's TD3 curves (25k random steps, Adam 3e-4, batch 256,
# 256-256 networks), so the `td3` runs are compared with Tianshou's TD3 curves.
# `td3_paper`: the settings of the TD3 paper's curves (Fujimoto et al. 2018; main.py and TD3.py at commit
# bc98e62 of sfujim/TD3): 10k random steps, batch 100, Adam 1e-3; their 400-300 networks are 256-256 here. One
# difference remains: their main.py trains at each episode's end, for that episode's length, from the first episode
# on, random steps included, where --learning-starts takes no gradient step before 10k: about 90k gradient steps at
# 100k transitions against their 100k.
MUJOCO_ENVS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"]
MUJOCO = ["--total-timesteps", 300_000, "--eval-frequency", 10_000, "--eval-episodes", 10]
MUJOCO_PER_ALGO = {"td3": [], "sac": [], "ddpg": []}
TD3_PAPER = ["--algo", "td3", *MUJOCO, "--learning-starts", 10_000, "--batch-size", 100, "--learning-rate", 1e-3]


def mujoco_runs(seeds) -> list[Run]:
    """Seeds outermost, so that a suite stopped early has every algorithm, and the TD3 paper's settings, on every
    env."""
    variants = {algo: ["--algo", algo, *MUJOCO, *flags] for algo, flags in MUJOCO_PER_ALGO.items()}
    variants["td3_paper"] = TD3_PAPER
    return [
        Run("ddpg_td3_sac.py", env_id, seed, tuple(map(str, flags)), variant=name)
        for seed in seeds
        for name, flags in variants.items()
        for env_id in MUJOCO_ENVS
    ]


# offline: IQL on the datasets of benchmark/offline_datasets.py, the paper's locomotion settings (its defaults here),
# 50k gradient steps (the paper: 1M; a CPU budget), a 10-episode evaluation every 5000 (the paper's code). BC is IQL's
# actor loss with β = 0 (every weight 1: plain log-likelihood); the extensions are the script's flags.
OFFLINE_DATASETS = ["hopper/sac-medium-replay-v0", "hopper/sac-medium-v0"]
OFFLINE = ["--preset", "locomotion", "--total-timesteps", 50_000, "--eval-frequency", 5000, "--eval-episodes", 10]
OFFLINE_VARIANTS = {
    "iql": [],
    "bc": ["--beta", 0.0],
    "d2rl": ["--d2rl"],
    "rnd": ["--bonus", "rnd"],
    "cvae": ["--bonus", "cvae"],
    "distributional": ["--distributional"],
}


def offline_runs(seeds) -> list[Run]:
    """Seeds outermost, then IQL and BC on every dataset before the extensions, so that a suite stopped early has the
    IQL paper's comparison first."""
    groups = [["iql", "bc"], ["d2rl", "rnd", "cvae", "distributional"]]
    return [
        Run(
            "iql_offline.py",
            dataset,
            seed,
            tuple(map(str, [*OFFLINE, *OFFLINE_VARIANTS[name]])),
            variant=name,
            env_flag="--dataset",
        )
        for seed in seeds
        for group in groups
        for dataset in OFFLINE_DATASETS
        for name in group
    ]


SUITES = {
    "classic": runs(["dqn_atari.py", "c51_atari.py"], CLASSIC_ENVS, [1, 2, 3], CLASSIC, CLASSIC_PER_SCRIPT)
    + runs(["qrdqn_atari.py", "iqn_atari.py", "fqf_atari.py"], CLASSIC_ENVS, [1, 2, 3], CLASSIC, CLASSIC_PER_SCRIPT),
    "minatar": runs(["dqn_atari.py"], MINATAR_GAMES, [1, 2, 3], MINATAR_DQN)
    + runs(
        ["c51_atari.py", "qrdqn_atari.py", "iqn_atari.py"],
        MINATAR_GAMES[:2],
        [1, 2, 3],
        MINATAR_RR,
        MINATAR_RR_PER_SCRIPT,
    )
    + [
        Run(
            "c51_atari.py",
            game,
            seed,
            tuple(map(str, [*MINATAR_RR, *MINATAR_RR_PER_SCRIPT["c51_atari.py"], *flags])),
            variant=name,
        )
        for name, flags in MINATAR_RAINBOWS.items()
        for seed in [1, 2, 3]
        for game in MINATAR_GAMES[:2]
    ],
    "mujoco": mujoco_runs([1, 2, 3]),
    "offline": offline_runs([1, 2, 3]),
    # three short runs through the same runner and report, for CI: classic, MinAtar, and MuJoCo's learning curve
    "smoke": [
        Run(
            "dqn_atari.py",
            "CartPole-v1",
            1,
            tuple(map(str, ["--total-timesteps", 3000, "--learning-starts", 1000, "--eval-episodes", 2])),
        ),
        Run(
            "c51_atari.py",
            "MinAtar/Breakout-v1",
            1,
            tuple(
                map(
                    str,
                    ["--total-timesteps", 2000, "--learning-starts", 500, "--buffer-size", 2000, "--eval-episodes", 2],
                )
            ),
        ),
        Run(
            "ddpg_td3_sac.py",
            "Pendulum-v1",
            1,
            tuple(
                map(
                    str,
                    [
                        "--algo",
                        "td3",
                        "--total-timesteps",
                        600,
                        "--learning-starts",
                        200,
                        "--eval-frequency",
                        200,
                        "--eval-episodes",
                        2,
                    ],
                )
            ),
            variant="td3",
        ),
    ],
}
