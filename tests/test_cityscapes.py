"""Cityscapes: conversion of real official frames to the MTAN layout, and training on the result."""
from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from benchmarks.train import run
from datasets import build_benchmark
from datasets.cityscapes.labels import LABEL_ID_TABLE, TRAIN_ID_TABLE, detect_label_format, to_seven_classes
from datasets.cityscapes.prepare import DEFAULT_DEPTH_SCALE, find_frames, main as prepare_main, prepare
from datasets.dense.data import DatasetNotFoundError
from tests.conftest import REPO_ROOT, require_shared

FRAMES = ("aachen_000000_000019", "aachen_000001_000019", "aachen_000002_000019")


@pytest.fixture(scope="module")
def raw_dir():
    return require_shared("cityscapes_raw/aachen")


@pytest.fixture(scope="module")
def prepared_flat(raw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cityscapes_flat")
    prepare(raw_dir, out, default_split="train", progress=False)
    return out


@pytest.fixture(scope="module")
def official_tree(raw_dir, tmp_path_factory):
    """Link the real frames into the official folder tree: 2 train frames, 1 val frame."""
    root = tmp_path_factory.mktemp("cityscapes_raw")
    kinds = {"leftImg8bit": "_leftImg8bit.png", "gtFine": "_gtFine_labelIds.png", "disparity": "_disparity.png"}
    for frame, split in zip(FRAMES, ("train", "train", "val")):
        for kind, suffix in kinds.items():
            folder = root / kind / split / "aachen"
            folder.mkdir(parents=True, exist_ok=True)
            os.symlink(raw_dir / f"{frame}{suffix}", folder / f"{frame}{suffix}")
    return root


@pytest.fixture(scope="module")
def prepared_tree(official_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("cityscapes")
    prepare(official_tree, out, progress=False)
    return out


def test_label_format_detection():
    assert detect_label_format({0, 1, 7, 18, 255}) == "trainIds"
    assert detect_label_format({0, 1, 7, 26, 33}) == "labelIds"
    with pytest.raises(ValueError, match="--label-format"):
        detect_label_format({0, 1, 7, 13})
    with pytest.raises(ValueError, match="--label-format"):
        detect_label_format({0, 26, 255})
    with pytest.raises(ValueError, match="neither"):
        detect_label_format({0, 40})


def test_category_tables():
    # road, building, pole, vegetation, sky, person, car, bicycle → 0..6; unlabeled → −1.
    assert LABEL_ID_TABLE[[7, 11, 17, 21, 23, 24, 26, 33, 0, 4]].tolist() == [0, 1, 2, 3, 4, 5, 6, 6, -1, -1]
    assert TRAIN_ID_TABLE[[0, 2, 5, 8, 10, 11, 13, 18, 255]].tolist() == [0, 1, 2, 3, 4, 5, 6, 6, -1]
    # Parking (label id 9) has no train id but belongs to the flat category.
    assert LABEL_ID_TABLE[9] == 0


def test_sample_labels_detected_as_train_ids(raw_dir):
    values = set()
    for frame in FRAMES:
        values.update(np.unique(np.asarray(Image.open(raw_dir / f"{frame}_gtFine_labelIds.png"))).tolist())
    assert detect_label_format(values) == "trainIds"


def test_train_ids_agree_with_instance_label_ids(raw_dir):
    # The instanceIds images hold the true labelIds (id, or id * 1000 + instance). In this
    # 256×128 sample the two images differ at object boundaries on under 1 % of pixels.
    for frame in FRAMES:
        train_ids = np.asarray(Image.open(raw_dir / f"{frame}_gtFine_labelIds.png"))
        instance = np.asarray(Image.open(raw_dir / f"{frame}_gtFine_instanceIds.png")).astype(np.int64)
        label_ids = np.where(instance >= 1000, instance // 1000, instance).astype(np.uint8)
        from_train_ids = to_seven_classes(train_ids, "trainIds")
        from_label_ids = to_seven_classes(label_ids, "labelIds")
        evaluated = train_ids != 255
        assert evaluated.mean() > 0.5
        agreement = (from_train_ids[evaluated] == from_label_ids[evaluated]).mean()
        assert agreement > 0.99, frame


def test_flat_sample_converted(prepared_flat, raw_dir):
    for folder, shape in (("image", (128, 256, 3)), ("label_7", (128, 256)), ("depth", (128, 256, 1))):
        arrays = [np.load(prepared_flat / "train" / folder / f"{i}.npy") for i in range(3)]
        assert all(a.shape == shape and a.dtype == np.float32 for a in arrays), folder
    image = np.load(prepared_flat / "train" / "image" / "0.npy")
    assert image.min() >= 0.0
    assert image.max() <= 1.0
    label = np.load(prepared_flat / "train" / "label_7" / "0.npy")
    assert set(np.unique(label).tolist()) <= set(range(-1, 7))
    assert (label == -1).any()
    assert (label == 6).any()


def test_depth_from_disparity_formula(prepared_flat, raw_dir):
    raw = np.asarray(Image.open(raw_dir / f"{FRAMES[1]}_disparity.png")).astype(np.float64)
    depth = np.load(prepared_flat / "train" / "depth" / "1.npy")[:, :, 0]
    valid = raw > 0
    assert valid.any()
    assert (~valid).any()
    assert np.all(depth[~valid] == 0)
    expected = (raw[valid] - 1.0) / 256.0 * DEFAULT_DEPTH_SCALE
    assert np.allclose(depth[valid], expected, rtol=1e-6)
    assert 0.0 < depth.max() < 0.5


def test_official_tree_splits(prepared_tree):
    info = (prepared_tree / "prepare_info.json").read_text()
    assert '"label_format": "trainIds"' in info
    assert len(list((prepared_tree / "train" / "image").glob("*.npy"))) == 2
    assert len(list((prepared_tree / "val" / "label_7").glob("*.npy"))) == 1


def test_unsplit_frames_need_split_flag(raw_dir):
    with pytest.raises(ValueError, match="--split"):
        find_frames(raw_dir)


def test_missing_disparity_named(raw_dir, tmp_path):
    os.symlink(raw_dir / f"{FRAMES[0]}_leftImg8bit.png", tmp_path / f"{FRAMES[0]}_leftImg8bit.png")
    os.symlink(raw_dir / f"{FRAMES[0]}_gtFine_labelIds.png", tmp_path / f"{FRAMES[0]}_gtFine_labelIds.png")
    with pytest.raises(FileNotFoundError, match="no disparity"):
        find_frames(tmp_path, default_split="train")


def test_command_line_label_format_and_scale(raw_dir, tmp_path):
    prepare_main(["--raw", str(raw_dir), "--out", str(tmp_path), "--split", "val", "--label-format", "trainIds",
                  "--depth-scale", "1.0", "--size", "64", "128"])
    depth = np.load(tmp_path / "val" / "depth" / "2.npy")
    assert depth.shape == (64, 128, 1)
    # With scale 1 the stored value is the full-resolution disparity in pixels.
    assert 10.0 < depth.max() < 256.0


def test_command_line_missing_raw_folder(tmp_path):
    with pytest.raises(SystemExit, match="not found"):
        prepare_main(["--raw", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])


def test_benchmark_loads_prepared_frames(prepared_tree):
    benchmark = build_benchmark("cityscapes", {"root": str(prepared_tree), "batch_size": 2})
    splits = benchmark.build_splits(seed=0)
    assert splits.val is None
    assert splits.info == {"train": 2, "test": 1}
    image, targets = next(iter(splits.test))
    assert image.shape == (1, 3, 128, 256)
    assert set(targets) == {"segmentation", "depth"}


def test_missing_dataset_names_download_command(tmp_path):
    benchmark = build_benchmark("cityscapes", {"root": str(tmp_path / "cityscapes"), "batch_size": 2})
    with pytest.raises(DatasetNotFoundError) as error:
        benchmark.build_splits(seed=0)
    assert str(tmp_path / "cityscapes" / "train" / "image") in str(error.value)
    assert "python -m datasets.cityscapes.download" in str(error.value)


def tiny_config(root, results, *extra: str):
    overrides = [
        "dataset=cityscapes", "method=ls", "logger=csv", "profile=quick", "progress=false", "seed=0",
        f"dataset.root={root}", f"results_dir={results}", "dataset.epochs=1", "dataset.batch_size=2",
        "dataset.eval_batch_size=2", "dataset.resolution=[64,128]", "dataset.model.filters=[8,16,16,32,32]",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_one_epoch_on_prepared_frames(prepared_tree, tmp_path):
    summary = run(tiny_config(prepared_tree, tmp_path))
    for name in ("miou", "pixacc", "abs_err", "rel_err", "delta_m"):
        assert math.isfinite(float(summary[name])), name
    assert 0.0 <= float(summary["miou"]) <= 1.0
    run_dir = tmp_path / "runs" / "cityscapes" / "quick" / "ls" / "seed0"
    with open(run_dir / "epochs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert float(rows[0]["train/loss_segmentation"]) > 0
    assert summary["selected_epoch"] == "0-0"
