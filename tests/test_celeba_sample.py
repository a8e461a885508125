"""CelebA loading, caching and one training epoch on the 32 real sample images.

The sample lists all 32 images as train. ``repartitioned_copy`` writes a copy into tmp_path
whose partition file moves images 21-26 to val and 27-32 to test. The copy links to the
images and uses either the official or torchvision's layout.
"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from torchvision import transforms

from benchmarks.train import run
from tests.conftest import REPO_ROOT, require_shared
from datasets.celeba.annotations import ATTRIBUTE_NAMES, parse_attribute_file
from datasets.celeba.cache import CacheError, cache_path, decode_image, load_or_build_cache, open_cache
from datasets.celeba.files import locate_release
from datasets.celeba.spec import CelebABenchmark
from datasets.celeba.splits import load_split_images

SAMPLE_SIZE = 32
VAL_IMAGES = [f"{i:06d}.jpg" for i in range(21, 27)]
TEST_IMAGES = [f"{i:06d}.jpg" for i in range(27, 33)]


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.symlink(source, target)
    except OSError:
        shutil.copyfile(source, target)


def repartitioned_copy(destination: Path, layout: str) -> Path:
    """Write the sample into ``destination`` with 20 train, 6 val and 6 test images; return the root."""
    sample = require_shared("celeba")
    if layout == "official":
        attribute_dir, partition_dir = destination / "Anno", destination / "Eval"
        image_dir = destination / "Img" / "img_align_celeba"
    else:
        attribute_dir = partition_dir = destination / "celeba"
        image_dir = destination / "celeba" / "img_align_celeba"
    for folder in (attribute_dir, partition_dir, image_dir):
        folder.mkdir(parents=True, exist_ok=True)

    shutil.copyfile(sample / "list_attr_celeba.txt", attribute_dir / "list_attr_celeba.txt")
    lines = []
    for line in (sample / "list_eval_partition.txt").read_text().splitlines():
        name = line.split()[0]
        code = 0
        if name in VAL_IMAGES:
            code = 1
        elif name in TEST_IMAGES:
            code = 2
        lines.append(f"{name} {code}")
    (partition_dir / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    for image in sorted((sample / "img_align_celeba").glob("*.jpg")):
        link_or_copy(image, image_dir / image.name)
    return destination


@pytest.fixture(params=["official", "flat"])
def celeba_root(tmp_path, request) -> Path:
    return repartitioned_copy(tmp_path / "data", request.param)


def benchmark_for(root: Path, cache_dir: Path, **overrides) -> CelebABenchmark:
    cfg = {"root": str(root), "cache_dir": str(cache_dir), "batch_size": 8, "image_size": 64,
           "limit": {"train": None, "val": None, "test": None}, "carve_from_train": {"val": 0, "test": 0}}
    cfg.update(overrides)
    return CelebABenchmark(cfg)


def test_sample_annotations_real_format():
    sample = require_shared("celeba")
    raw = (sample / "list_attr_celeba.txt").read_bytes()
    table = parse_attribute_file(sample / "list_attr_celeba.txt")

    assert b"\r\n" in raw
    assert table.names == ATTRIBUTE_NAMES
    assert len(table.filenames) == SAMPLE_SIZE
    assert table.filenames[0] == "000001.jpg"
    assert set(np.unique(table.labels).tolist()) == {0, 1}


def test_repartitioned_splits(celeba_root):
    splits = load_split_images(locate_release(celeba_root))

    assert [len(splits[name].filenames) for name in ("train", "val", "test")] == [20, 6, 6]
    assert list(splits["val"].filenames) == VAL_IMAGES
    assert list(splits["test"].filenames) == TEST_IMAGES


def test_split_labels_match_annotations(celeba_root):
    files = locate_release(celeba_root)
    table = parse_attribute_file(files.attributes)
    splits = load_split_images(files)

    for split in splits.values():
        for row, name in enumerate(split.filenames):
            assert np.array_equal(split.labels[row], table.labels[table.filenames.index(name)])


def test_decode_matches_torchvision_transform():
    image_path = require_shared("celeba") / "img_align_celeba" / "000001.jpg"
    from PIL import Image

    reference = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()])
    with Image.open(image_path) as image:
        expected = reference(image.convert("RGB"))
    decoded = torch.from_numpy(decode_image(image_path, 64)).float() / 255.0

    assert decoded.shape == (3, 64, 64)
    assert torch.allclose(decoded, expected, atol=1e-6)


def test_cache_built_once_and_reused(celeba_root, tmp_path):
    files = locate_release(celeba_root)
    split = load_split_images(files)["val"]
    cache_dir = tmp_path / "cache"

    array = load_or_build_cache(cache_dir, "val", files.images, split.filenames, 64)
    path = cache_path(cache_dir, "val", split.filenames, 64)
    built_at = path.stat().st_mtime_ns
    again = load_or_build_cache(cache_dir, "val", files.images, split.filenames, 64)

    assert isinstance(array, np.memmap)
    assert array.shape == (6, 3, 64, 64)
    assert path.stat().st_mtime_ns == built_at
    assert np.array_equal(np.asarray(again), np.asarray(array))
    assert np.array_equal(array[0], decode_image(files.images / VAL_IMAGES[0], 64))
    assert [p.name for p in cache_dir.iterdir()] == [path.name]


def test_cache_workers_match_main_process(celeba_root, tmp_path):
    files = locate_release(celeba_root)
    split = load_split_images(files)["train"]
    in_process = load_or_build_cache(tmp_path / "a", "train", files.images, split.filenames, 64, workers=0)
    in_workers = load_or_build_cache(tmp_path / "b", "train", files.images, split.filenames, 64, workers=2)

    assert np.array_equal(np.asarray(in_process), np.asarray(in_workers))


def test_cache_key_depends_on_images():
    names = ["000001.jpg", "000002.jpg"]
    assert cache_path(Path("c"), "train", names, 64) != cache_path(Path("c"), "train", names[::-1], 64)
    assert cache_path(Path("c"), "train", names, 64) != cache_path(Path("c"), "train", names, 32)


def test_truncated_cache_rejected(celeba_root, tmp_path):
    files = locate_release(celeba_root)
    split = load_split_images(files)["test"]
    cache_dir = tmp_path / "cache"
    load_or_build_cache(cache_dir, "test", files.images, split.filenames, 64)
    path = cache_path(cache_dir, "test", split.filenames, 64)
    path.write_bytes(path.read_bytes()[:-100])

    with pytest.raises(CacheError) as error:
        load_or_build_cache(cache_dir, "test", files.images, split.filenames, 64)
    assert str(path) in str(error.value)
    assert "Delete it; the next run rebuilds it" in str(error.value)

    path.unlink()
    assert load_or_build_cache(cache_dir, "test", files.images, split.filenames, 64).shape == (6, 3, 64, 64)


def test_foreign_cache_file_rejected(tmp_path):
    path = tmp_path / "celeba_val_6x64px_0.npy"
    np.save(path, np.zeros((6, 3, 32, 32), dtype=np.uint8))
    with pytest.raises(CacheError, match=r"expected uint8 \(6, 3, 64, 64\)"):
        open_cache(path, 6, 64)
    path.write_bytes(b"not a numpy file")
    with pytest.raises(CacheError, match=r"invalid or truncated"):
        open_cache(path, 6, 64)


def test_missing_image_named(celeba_root, tmp_path):
    files = locate_release(celeba_root)
    (files.images / "000021.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"000021.jpg is missing"):
        benchmark_for(celeba_root, tmp_path / "cache").build_splits(seed=0)
    assert not any((tmp_path / "cache").glob("*val*"))


def test_loader_batches_and_seeded_order(celeba_root, tmp_path):
    benchmark = benchmark_for(celeba_root, tmp_path / "cache")
    splits = benchmark.build_splits(seed=3)
    train_labels = benchmark.load_arrays()["train"].labels

    batches = list(splits.train)
    images, labels = benchmark.to_device(batches[0], torch.device("cpu"))
    assert len(splits.train) == 3
    assert [len(b[0]) for b in batches] == [8, 8, 4]
    assert images.dtype == torch.float32
    assert images.shape == (8, 3, 64, 64)
    assert float(images.min()) >= 0.0
    assert float(images.max()) <= 1.0
    assert labels.shape == (8, 40)
    assert sorted(map(tuple, torch.cat([b[1] for b in batches]).int().tolist())) == \
        sorted(map(tuple, train_labels.astype(int).tolist()))

    first = [b[1] for b in splits.train]
    splits.train.set_epoch(1)
    second = [b[1] for b in splits.train]
    splits.train.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(first, [b[1] for b in splits.train]))
    assert not all(torch.equal(a, b) for a, b in zip(first, second))
    assert [len(b[0]) for b in splits.val] == [6]


def test_losses_and_metrics_on_sample(celeba_root, tmp_path):
    benchmark = benchmark_for(celeba_root, tmp_path / "cache")
    splits = benchmark.build_splits(seed=0)
    model = benchmark.build_model().eval()
    accumulator = benchmark.new_accumulator()

    with torch.no_grad():
        for batch in splits.test:
            batch = benchmark.to_device(batch, torch.device("cpu"))
            outputs = benchmark.forward(model, batch)
            losses = benchmark.task_losses(outputs, batch)
            accumulator.update(outputs, batch)
    values = accumulator.compute()

    assert losses.shape == (40,)
    assert torch.isfinite(losses).all()
    assert list(values) == benchmark.metric_names()
    assert all(0.0 <= v <= 1.0 for v in values.values())


def test_one_epoch_through_trainer(tmp_path):
    root = repartitioned_copy(tmp_path / "data", "flat")
    overrides = ["dataset=celeba", "method=ls", "logger=csv", "profile=quick", "progress=false",
                 f"data_root={root}", f"dataset.cache_dir={tmp_path / 'cache'}", f"results_dir={tmp_path / 'results'}",
                 "dataset.epochs=1", "dataset.batch_size=10"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "configs")):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run(cfg)

    run_dir = tmp_path / "results" / "runs" / "celeba" / "quick" / "ls" / "seed0"
    with open(run_dir / "epochs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert summary["selected_epoch"] == "0"
    for attribute in ATTRIBUTE_NAMES:
        assert 0.0 <= summary[f"f1_{attribute}"] <= 1.0
        assert np.isfinite(float(rows[0][f"val/f1_{attribute}"]))
    assert np.isfinite(summary["delta_m"])
    assert all(np.isfinite(float(rows[0][f"train/loss_{attribute}"])) for attribute in ATTRIBUTE_NAMES)
    assert (run_dir / "summary.csv").exists()


def test_unwritable_cache_dir_named(celeba_root, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(CacheError, match=r"cannot create a cache file in .*not_a_folder.*dataset.cache_dir"):
        benchmark_for(celeba_root, blocker / "cache").build_splits(seed=0)
