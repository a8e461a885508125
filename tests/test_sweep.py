"""Hydra multirun sweeps: a sweep killed midway completes on the second start.

The toy dataset keeps each run to a few steps. ``interrupt_after_steps`` makes the training
process kill itself (SIGKILL) mid-run, as a crash or a cluster pre-emption would.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir

from benchmarks import tables
from tests.conftest import REPO_ROOT

# Two epochs of four steps per run.
TOY_RUN = ["dataset=toy", "dataset.steps_per_epoch=4", "dataset.epochs=2", "logger=csv", "progress=false",
           "method=ls"]


def sweep(results: Path, *overrides: str) -> subprocess.CompletedProcess:
    """Run ``python -m benchmarks.train --multirun`` on the toy dataset into ``results``."""
    command = [sys.executable, "-m", "benchmarks.train", "--multirun", *TOY_RUN, f"results_dir={results}",
               f"hydra.sweep.dir={results / 'multirun'}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def run_dir(results: Path, seed: int) -> Path:
    return results / "runs" / "toy" / "quick" / "ls" / f"seed{seed}"


def test_killed_sweep_completes_on_rerun(tmp_path):
    # 1. seed 0 finishes.
    first = sweep(tmp_path, "seed=0")
    assert first.returncode == 0, first.stderr[-2000:]
    finished = run_dir(tmp_path, 0) / "summary.csv"
    finished_bytes = finished.read_bytes()
    finished_mtime = finished.stat().st_mtime_ns

    # 2. The sweep over seeds 0-2 skips seed 0, and the process dies at step 6 of seed 1
    #    (in its second epoch), before seed 2 starts.
    killed = sweep(tmp_path, "seed=0,1,2", "interrupt_after_steps=6")
    assert killed.returncode != 0
    assert (run_dir(tmp_path, 1) / "checkpoint.pt").exists()
    assert not (run_dir(tmp_path, 1) / "summary.csv").exists()
    assert not run_dir(tmp_path, 2).exists()

    # 3. The same sweep again, two runs at a time: seed 1 resumes, seed 2 starts, seed 0 is kept.
    rerun = sweep(tmp_path, "seed=0,1,2", "hydra/launcher=local_joblib", "hydra.launcher.n_jobs=2")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert finished.read_bytes() == finished_bytes
    assert finished.stat().st_mtime_ns == finished_mtime
    assert "resumed" in (run_dir(tmp_path, 1) / "train.log").read_text()
    assert "resumed" not in (run_dir(tmp_path, 2) / "train.log").read_text()

    # Every run has one summary row and one epochs.csv row per epoch, none twice.
    for seed in (0, 1, 2):
        summary = pd.read_csv(run_dir(tmp_path, seed) / "summary.csv")
        assert len(summary) == 1
        assert summary.loc[0, "seed"] == seed
        epochs = pd.read_csv(run_dir(tmp_path, seed) / "epochs.csv")
        assert epochs["epoch"].tolist() == [0, 1]
    table = tables.build_tables(tmp_path)["toy"]
    assert [(row.name, row.seeds) for row in table.rows] == [("ls", [0, 1, 2])]


def test_launcher_configs_compose():
    # Each launcher choice resolves to its plugin class with the values of configs/launcher/.
    expected = {
        "local_joblib": ("JoblibLauncher", "n_jobs", 2),
        "local_submitit": ("LocalLauncher", "timeout_min", 60),
        "slurm": ("SlurmLauncher", "max_num_timeout", 3),
    }
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        for choice, (launcher_class, key, value) in expected.items():
            cfg = compose("config", overrides=[f"hydra/launcher={choice}"], return_hydra_config=True)
            launcher = cfg.hydra.launcher
            assert launcher._target_.endswith(f".{launcher_class}")
            assert launcher[key] == value
        override = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                           return_hydra_config=True)
        assert override.hydra.launcher.partition == "gpu"
