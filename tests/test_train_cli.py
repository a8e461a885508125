"""The training entry point: failures before training leave no stale run folder behind."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from benchmarks.train import changed_keys, run
from tests.conftest import REPO_ROOT


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_missing_dataset_folder_leaves_no_config(tmp_path):
    base = ["dataset=cityscapes", f"data_root={tmp_path / 'data'}", f"results_dir={tmp_path / 'results'}",
            "logger=csv", "progress=false"]
    with pytest.raises(SystemExit, match="not found"):
        run(compose_config(*base))
    run_dir = tmp_path / "results" / "runs" / "cityscapes" / "quick" / "ls" / "seed0"
    assert not (run_dir / "config.yaml").exists()

    # A retry with other settings meets the same data error, not a configuration clash.
    with pytest.raises(SystemExit, match="not found"):
        run(compose_config(*base, "dataset.epochs=5"))


def test_changed_keys_are_dotted():
    saved = {"dataset": {"lr": 0.1, "epochs": 3}, "seed": 0}
    current = {"dataset": {"lr": 0.2, "epochs": 3}, "seed": 1}
    assert changed_keys(saved, current) == ["dataset.lr", "seed"]
    assert changed_keys(saved, saved) == []
