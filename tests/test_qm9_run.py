"""End-to-end QM9 runs through the command line on real molecules from qm9pack."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.wandb_offline import find_run_files, read_offline_run
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

TINY = ["dataset=qm9", "method=ls", "seed=3", "dataset.subset=300", "dataset.split.test=50",
        "dataset.split.val=50", "dataset.epochs=2", "dataset.batch_size=40", "progress=false"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("qm9data")


def train(results: Path, data_root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "benchmarks.train", *TINY, f"results_dir={results}", f"data_root={data_root}", *extra]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def read_summary(results: Path) -> dict[str, str]:
    (path,) = results.glob("runs/qm9/quick/ls/seed3/summary.csv")
    with open(path, newline="") as handle:
        return next(csv.DictReader(handle))


def test_killed_run_resumes_to_same_metrics(tmp_path, data_root):
    full = train(tmp_path / "full", data_root, "logger=csv")
    assert full.returncode == 0, full.stderr[-3000:]

    # 250 training molecules in batches of 40 = 7 steps per epoch; step 10 is inside epoch 1.
    killed = train(tmp_path / "killed", data_root, "logger=csv", "interrupt_after_steps=10")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "killed" / "runs" / "qm9" / "quick" / "ls" / "seed3"
    assert (run_dir / "checkpoint.pt").exists()
    assert not (run_dir / "summary.csv").exists()

    resumed = train(tmp_path / "killed", data_root, "logger=csv")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout + resumed.stderr
    expected, got = read_summary(tmp_path / "full"), read_summary(tmp_path / "killed")
    metric_keys = ["mu", "alpha", "homo", "lumo", "r2", "zpve", "u0", "u", "h", "g", "cv", "delta_m", "selected_epoch"]
    for key in metric_keys:
        assert got[key] == expected[key], key


def test_finished_run_is_not_overwritten(tmp_path, data_root):
    first = train(tmp_path, data_root, "logger=csv")
    assert first.returncode == 0, first.stderr[-3000:]
    summary = tmp_path / "runs" / "qm9" / "quick" / "ls" / "seed3" / "summary.csv"
    before = summary.read_bytes(), summary.stat().st_mtime_ns
    again = train(tmp_path, data_root, "logger=csv")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is finished" in again.stdout + again.stderr
    assert (summary.read_bytes(), summary.stat().st_mtime_ns) == before

    changed = train(tmp_path, data_root, "logger=csv", "dataset.lr=0.5")
    assert changed.returncode != 0
    assert "dataset.lr" in changed.stderr
    assert (summary.read_bytes(), summary.stat().st_mtime_ns) == before


def test_changed_config_rejects_run_folder(tmp_path, data_root):
    killed = train(tmp_path, data_root, "logger=csv", "interrupt_after_steps=2")
    assert killed.returncode == -signal.SIGKILL
    changed = train(tmp_path, data_root, "logger=csv", "dataset.lr=0.5")
    assert changed.returncode != 0
    assert "different configuration" in changed.stderr
    assert "dataset" in changed.stderr


def test_wandb_offline_run_has_delta_m(tmp_path, data_root):
    result = train(tmp_path, data_root, "logger=wandb")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(tmp_path)
    (run_file,) = find_run_files(tmp_path / "runs")
    logged = read_offline_run(run_file)
    assert logged["summary"]["delta_m"] == pytest.approx(float(summary["delta_m"]))
    epochs_logged = [row for row in logged["history"] if "test/delta_m" in row]
    assert len(epochs_logged) == 2
    assert logged["config"]["method"]["name"] == "ls"


@pytest.mark.parametrize("override,expected", [("method=nosuchmethod", "method"), ("dataset=nosuchdata", "dataset")])
def test_unknown_group_value_lists_options(tmp_path, override, expected):
    command = [sys.executable, "-m", "benchmarks.train", override, f"results_dir={tmp_path}"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"Could not find '{expected}/" in result.stderr
    assert "Available options" in result.stderr
