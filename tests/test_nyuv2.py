"""NYUv2: real 13-class test labels, and the whole pipeline on generated arrays in the MTAN layout."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from benchmarks.train import run
from benchmarks.trainer import TrainConfig, Trainer
from datasets import build_benchmark
from datasets.dense.data import DatasetNotFoundError
from datasets.dense.metrics import DenseAccumulator
from datasets.dense.synthetic import write_synthetic_nyuv2
from datasets.nyuv2.labels import class13_png_to_label, read_class13_archive
from datasets.nyuv2.spec import NYUV2_METRICS
from methods.ls import LinearScalarization
from tests.conftest import REPO_ROOT, require_shared

SMALL_MODEL = {"kind": "mtan", "filters": [8, 16, 16, 32, 32]}
METRIC_NAMES = ["miou", "pixacc", "abs_err", "rel_err", "angle_mean", "angle_median", "within_11_25",
                "within_22_5", "within_30"]


@pytest.fixture(scope="module")
def real_labels():
    archive = require_shared("nyuv2_raw/nyuv2_test_class13.tgz")
    return list(read_class13_archive(archive))


@pytest.fixture(scope="module")
def generated_root(tmp_path_factory):
    return write_synthetic_nyuv2(tmp_path_factory.mktemp("data") / "nyuv2", train=6, test=3, height=64, width=64)


def test_real_labels_cover_test_split(real_labels):
    assert len(real_labels) == 654
    values = set()
    for _, png in real_labels:
        assert png.shape == (480, 640)
        values.update(np.unique(png).tolist())
    assert values == set(range(14))


def test_real_label_png_minus_one(real_labels):
    name, png = real_labels[0]
    label = class13_png_to_label(png, size=None)
    assert label.dtype == np.float32
    assert np.array_equal(label[png == 0], np.full((png == 0).sum(), -1.0))
    assert np.array_equal(label[png > 0], png[png > 0].astype(np.float32) - 1)
    resized = class13_png_to_label(png)
    assert resized.shape == (288, 384)
    assert set(np.unique(resized).tolist()) <= set(np.unique(label).tolist())


def test_label_out_of_range_rejected():
    with pytest.raises(ValueError, match="values 0..13"):
        class13_png_to_label(np.full((4, 4), 14, dtype=np.uint8))


def test_real_labels_through_loader_and_metrics(real_labels, tmp_path):
    root = write_synthetic_nyuv2(tmp_path, train=1, test=3, height=288, width=384)
    stored = []
    for index, (_, png) in enumerate(real_labels[:3]):
        label = class13_png_to_label(png)
        np.save(root / "val" / "label" / f"{index}.npy", label)
        stored.append(label)
    benchmark = build_benchmark("nyuv2", {"root": str(root), "batch_size": 1, "eval_batch_size": 3})
    image, targets = next(iter(benchmark.build_splits(seed=0).test))
    labels = targets["segmentation"]
    assert labels.dtype == torch.int64
    assert torch.equal(labels, torch.from_numpy(np.stack(stored)).long())

    # A perfect prediction scores 1 although unlabeled pixels exist; they are not counted.
    one_hot = torch.nn.functional.one_hot(labels.clamp_min(0), 13).permute(0, 3, 1, 2).float()
    accumulator = DenseAccumulator(["segmentation"], 13)
    accumulator.update({"segmentation": torch.log(one_hot + 1e-6)}, (image, targets))
    values = accumulator.compute()
    assert (labels == -1).any()
    assert accumulator.confusion.sum() == (labels != -1).sum()
    assert values["miou"] == pytest.approx(1.0)
    assert values["pixacc"] == pytest.approx(1.0)


def test_metric_declarations():
    by_name = {m.name: m for m in NYUV2_METRICS}
    assert list(by_name) == METRIC_NAMES
    assert {n for n, m in by_name.items() if m.higher_is_better} == {"miou", "pixacc", "within_11_25",
                                                                      "within_22_5", "within_30"}
    assert by_name["abs_err"].stl == 0.6754
    assert by_name["angle_median"].stl == 19.21


def test_benchmark_declares_protocol(generated_root):
    benchmark = build_benchmark("nyuv2", {"root": str(generated_root), "batch_size": 2})
    assert benchmark.tasks == ["segmentation", "depth", "normal"]
    assert benchmark.selection == "last_k_mean"
    assert benchmark.selection_last_k == 10
    scheduler = benchmark.scheduler(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4))
    assert (scheduler.step_size, scheduler.gamma) == (100, 0.5)
    splits = benchmark.build_splits(seed=0)
    assert splits.val is None
    assert splits.info == {"train": 6, "test": 3}


def test_missing_dataset_names_download_command(tmp_path):
    benchmark = build_benchmark("nyuv2", {"root": str(tmp_path / "nyuv2"), "batch_size": 2})
    with pytest.raises(DatasetNotFoundError) as error:
        benchmark.build_splits(seed=0)
    assert str(tmp_path / "nyuv2" / "train" / "image") in str(error.value)
    assert "python -m datasets.nyuv2.download" in str(error.value)


def test_unknown_metric_convention_rejected(generated_root):
    with pytest.raises(ValueError, match="metric_convention"):
        build_benchmark("nyuv2", {"root": str(generated_root), "batch_size": 2, "metric_convention": "median"})


def tiny_config(data_root, results, *extra: str):
    overrides = [
        "dataset=nyuv2", "method=ls", "logger=csv", "profile=quick", "progress=false", "seed=1",
        f"data_root={data_root}", f"results_dir={results}", "dataset.resolution=null",
        "dataset.model.filters=[8,16,16,32,32]", "dataset.train_subset=4", *extra,
    ]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_quick_profile_values():
    cfg = tiny_config("/data", "/results")
    assert cfg.dataset.root == "/data/nyuv2"
    assert cfg.dataset.train_subset == 4
    assert cfg.dataset.test_subset == 8
    assert cfg.dataset.batch_size == 2


def test_run_reports_mean_of_last_k_epochs(generated_root, tmp_path):
    cfg = tiny_config(generated_root.parent, tmp_path, "dataset.epochs=3", "dataset.selection_last_k=2",
                      "dataset.scheduler.step_size=1")
    summary = run(cfg)
    run_dir = tmp_path / "runs" / "nyuv2" / "quick" / "ls" / "seed1"
    with open(run_dir / "epochs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-4, 5e-5, 2.5e-5])
    assert summary["selected_epoch"] == "1-2"
    for name in METRIC_NAMES:
        expected = (float(rows[1][f"test/{name}"]) + float(rows[2][f"test/{name}"])) / 2
        assert float(summary[name]) == pytest.approx(expected), name
    assert math.isfinite(float(summary["delta_m"]))


def make_trainer(root, run_dir, epochs: int) -> Trainer:
    cfg = {"root": str(root), "batch_size": 2, "train_subset": 4, "model": SMALL_MODEL}
    return Trainer(build_benchmark("nyuv2", cfg), LinearScalarization(num_tasks=3),
                   TrainConfig(epochs=epochs, lr=1e-3, seed=5, progress=False), run_dir, torch.device("cpu"))


def test_resumed_run_matches_uninterrupted(generated_root, tmp_path):
    torch.manual_seed(0)
    straight = make_trainer(generated_root, tmp_path / "straight", epochs=2)
    straight.fit()

    torch.manual_seed(0)
    make_trainer(generated_root, tmp_path / "resumed", epochs=1).fit()
    torch.manual_seed(123)
    resumed = make_trainer(generated_root, tmp_path / "resumed", epochs=2)
    resumed.fit()

    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert straight.state.history[-1]["test/miou"] == resumed.state.history[-1]["test/miou"]
