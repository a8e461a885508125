"""MTAN ``.npy`` loader and train augmentation on generated arrays in the release layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.dense.data import (DatasetNotFoundError, DenseAugmentation, EpochAugmentedLoader, MTANFolder,
                                 TaskFolders, horizontal_flip)
from datasets.dense.synthetic import write_synthetic_cityscapes, write_synthetic_nyuv2

NYUV2_FOLDERS = TaskFolders({"segmentation": "label", "depth": "depth", "normal": "normal"})


@pytest.fixture(scope="module")
def nyuv2_root(tmp_path_factory):
    return write_synthetic_nyuv2(tmp_path_factory.mktemp("nyuv2"), train=5, test=2, height=64, width=96)


def test_loader_shapes_dtypes_channels_first(nyuv2_root):
    image, targets = MTANFolder(nyuv2_root, "train", NYUV2_FOLDERS)[0]
    expected = {"segmentation": ((64, 96), torch.int64), "depth": ((1, 64, 96), torch.float32),
                "normal": ((3, 64, 96), torch.float32)}
    assert image.shape == (3, 64, 96)
    assert image.dtype == torch.float32
    for task, (shape, dtype) in expected.items():
        assert targets[task].shape == shape, task
        assert targets[task].dtype == dtype, task


def test_loader_keeps_values_and_markers(nyuv2_root):
    image, targets = MTANFolder(nyuv2_root, "train", NYUV2_FOLDERS)[3]
    stored_label = np.load(nyuv2_root / "train" / "label" / "3.npy")
    stored_normal = np.load(nyuv2_root / "train" / "normal" / "3.npy")
    stored_image = np.load(nyuv2_root / "train" / "image" / "3.npy")
    assert np.array_equal(targets["segmentation"].numpy(), stored_label.astype(np.int64))
    assert (targets["segmentation"] == -1).any()
    assert np.array_equal(targets["normal"].numpy(), stored_normal.transpose(2, 0, 1))
    assert np.array_equal(image.numpy(), stored_image.transpose(2, 0, 1))
    assert (targets["depth"] == 0).any()


def test_loader_accepts_float64_and_2d_depth(tmp_path):
    root = write_synthetic_cityscapes(tmp_path, train=1, test=1, height=32, width=64)
    np.save(root / "train" / "image" / "0.npy", np.load(root / "train" / "image" / "0.npy").astype(np.float64))
    np.save(root / "train" / "depth" / "0.npy", np.load(root / "train" / "depth" / "0.npy")[:, :, 0])
    image, targets = MTANFolder(root, "train", TaskFolders({"segmentation": "label_7", "depth": "depth"}))[0]
    assert image.dtype == torch.float32
    assert targets["depth"].shape == (1, 32, 64)


def test_missing_folder_names_path_and_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        MTANFolder(tmp_path / "nyuv2", "train", NYUV2_FOLDERS,
                   download_hint="python -m datasets.nyuv2.download --root data")
    message = str(error.value)
    assert str(tmp_path / "nyuv2" / "train" / "image") in message
    assert "python -m datasets.nyuv2.download" in message


def test_index_gap_rejected(tmp_path):
    root = write_synthetic_nyuv2(tmp_path, train=3, test=1, height=32, width=32)
    for folder in ("image", "label", "depth", "normal"):
        (root / "train" / folder / "1.npy").unlink()
    with pytest.raises(DatasetNotFoundError, match="1.npy"):
        MTANFolder(root, "train", NYUV2_FOLDERS)


def test_unequal_folder_counts_rejected(tmp_path):
    root = write_synthetic_nyuv2(tmp_path, train=3, test=1, height=32, width=32)
    (root / "train" / "normal" / "2.npy").unlink()
    with pytest.raises(DatasetNotFoundError, match="different numbers"):
        MTANFolder(root, "train", NYUV2_FOLDERS)


def test_resolution_resizes_every_target(nyuv2_root):
    image, targets = MTANFolder(nyuv2_root, "train", NYUV2_FOLDERS, resolution=(32, 64))[1]
    assert image.shape == (3, 32, 64)
    assert targets["segmentation"].shape == (32, 64)
    assert set(targets["segmentation"].unique().tolist()) <= set(range(-1, 13))
    norms = targets["normal"].norm(dim=0)
    valid = norms > 0
    assert torch.allclose(norms[valid], torch.ones_like(norms[valid]), atol=1e-5)


def test_flip_negates_normal_x_component():
    generator = torch.Generator().manual_seed(0)
    normal = torch.randn(3, 4, 6, generator=generator)
    targets = {"segmentation": torch.arange(24).reshape(4, 6), "depth": torch.rand(1, 4, 6, generator=generator),
               "normal": normal.clone()}
    image = torch.rand(3, 4, 6, generator=generator)
    flipped_image, flipped = horizontal_flip(image, targets)
    assert torch.equal(flipped["normal"][0], -normal[0].flip(-1))
    assert torch.equal(flipped["normal"][1:], normal[1:].flip(-1))
    assert torch.equal(flipped["segmentation"][:, 0], targets["segmentation"][:, -1])
    assert torch.equal(flipped_image, image.flip(-1))
    assert torch.equal(targets["normal"], normal), "the input normals must not change"


def test_flip_applied_by_augmentation_negates_x():
    normal = torch.nn.functional.normalize(torch.randn(3, 8, 8), dim=0)
    targets = {"depth": torch.ones(1, 8, 8), "normal": normal}
    augmentation = DenseAugmentation(seed=0, scale_crop=False, flip_probability=1.0)
    _, augmented = augmentation(torch.rand(3, 8, 8), targets, epoch=0, index=0)
    assert torch.equal(augmented["normal"][0], -normal[0].flip(-1))


def test_scale_crop_divides_depth_by_scale():
    targets = {"segmentation": torch.zeros(12, 12, dtype=torch.int64), "depth": torch.full((1, 12, 12), 3.0)}
    augmentation = DenseAugmentation(seed=0, flip=False)
    _, cropped = augmentation.crop_and_resize(torch.rand(3, 12, 12), targets, 1.5, (2, 2, 8, 8))
    assert torch.allclose(cropped["depth"], torch.full((1, 12, 12), 2.0))
    multiply = DenseAugmentation(seed=0, flip=False, depth_scaling="multiply")
    _, cropped = multiply.crop_and_resize(torch.rand(3, 12, 12), targets, 1.5, (2, 2, 8, 8))
    assert torch.allclose(cropped["depth"], torch.full((1, 12, 12), 4.5))


def test_scale_crop_nearest_keeps_label_and_invalid_values():
    generator = torch.Generator().manual_seed(1)
    label = torch.randint(-1, 5, (24, 32), generator=generator)
    depth = torch.rand(1, 24, 32, generator=generator)
    depth[depth < 0.3] = 0.0
    augmentation = DenseAugmentation(seed=0, flip=False)
    _, cropped = augmentation.crop_and_resize(torch.rand(3, 24, 32), {"segmentation": label, "depth": depth},
                                              1.2, (1, 3, 20, 26))
    assert cropped["segmentation"].dtype == torch.int64
    assert set(cropped["segmentation"].unique().tolist()) <= set(label.unique().tolist())
    # Nearest interpolation: every output depth is an input depth divided by s, zeros stay zeros.
    assert set((cropped["depth"] * 1.2).round(decimals=5).unique().tolist()) <= set(
        depth.round(decimals=5).unique().tolist())


def test_scale_one_crop_is_identity():
    image = torch.rand(3, 16, 16)
    targets = {"segmentation": torch.randint(0, 3, (16, 16)), "depth": torch.rand(1, 16, 16),
               "normal": torch.randn(3, 16, 16)}
    augmentation = DenseAugmentation(seed=0, scales=[1.0], flip=False)
    out_image, out = augmentation(image, targets, epoch=3, index=7)
    assert torch.allclose(out_image, image, atol=1e-6)
    for task in targets:
        assert torch.allclose(out[task].float(), targets[task].float(), atol=1e-6), task


def test_augmentation_reproducible_from_seed_epoch_index(nyuv2_root):
    def sample(seed: int, epoch: int, index: int):
        folder = MTANFolder(nyuv2_root, "train", NYUV2_FOLDERS, augmentation=DenseAugmentation(seed=seed))
        folder.set_epoch(epoch)
        return folder[index]

    first = sample(0, 2, 1)
    again = sample(0, 2, 1)
    assert torch.equal(first[0], again[0])
    assert all(torch.equal(first[1][t], again[1][t]) for t in first[1])
    draws = [sample(0, epoch, 1)[0] for epoch in range(6)]
    assert any(not torch.equal(draws[0], other) for other in draws[1:])


def collect_epoch(root, seed: int, epoch: int) -> list[torch.Tensor]:
    dataset = MTANFolder(root, "train", NYUV2_FOLDERS, augmentation=DenseAugmentation(seed=seed))
    loader = EpochAugmentedLoader(dataset, batch_size=2, seed=seed)
    loader.set_epoch(epoch)
    return [batch[0] for batch in loader]


def test_resumed_loader_replays_same_batches(nyuv2_root):
    # A fresh loader at epoch 3 (as after a resume) yields the batches that an uninterrupted
    # loader yields at epoch 3.
    uninterrupted = EpochAugmentedLoader(
        MTANFolder(nyuv2_root, "train", NYUV2_FOLDERS, augmentation=DenseAugmentation(seed=4)), batch_size=2, seed=4)
    for epoch in range(4):
        uninterrupted.set_epoch(epoch)
        batches = [batch[0] for batch in uninterrupted]
    resumed = collect_epoch(nyuv2_root, seed=4, epoch=3)
    assert len(batches) == len(resumed) == 3
    assert all(torch.equal(a, b) for a, b in zip(batches, resumed))
    other_epoch = collect_epoch(nyuv2_root, seed=4, epoch=2)
    assert not all(torch.equal(a, b) for a, b in zip(batches, other_epoch))


def test_bad_depth_scaling_rejected():
    with pytest.raises(ValueError, match="depth_scaling"):
        DenseAugmentation(seed=0, depth_scaling="square")


def test_synthetic_command_writes_mtan_layout(tmp_path):
    from datasets.dense.synthetic import main

    main(["--dataset", "cityscapes", "--root", str(tmp_path), "--train", "2", "--test", "1"])
    assert sorted(p.name for p in (tmp_path / "cityscapes" / "train").iterdir()) == ["depth", "image", "label_7"]
    assert len(list((tmp_path / "cityscapes" / "train" / "image").glob("*.npy"))) == 2
    assert len(list((tmp_path / "cityscapes" / "val" / "image").glob("*.npy"))) == 1
    assert np.load(tmp_path / "cityscapes" / "train" / "image" / "1.npy").shape == (128, 256, 3)


def test_synthetic_command_rejects_nonempty_root(tmp_path, capsys):
    from datasets.dense.synthetic import main

    (tmp_path / "nyuv2").mkdir()
    (tmp_path / "nyuv2" / "notes.txt").write_text("keep")
    with pytest.raises(SystemExit):
        main(["--dataset", "nyuv2", "--root", str(tmp_path)])
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "nyuv2").iterdir()] == ["notes.txt"]
