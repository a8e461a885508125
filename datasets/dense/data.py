"""Loader for the preprocessed ``.npy`` releases of NYUv2 and Cityscapes used by MTAN.

Layout: ``<root>/<split>/<folder>/<i>.npy`` with i = 0..N−1 and ``split`` in {train, val}.
Per sample: image H×W×3 float in [0, 1]; label H×W float class ids with −1 = ignore;
depth H×W×1 (0 = invalid); normal H×W×3 unit vectors (all-zero = invalid). The loader
returns channels first: image 3×H×W float32, label H×W int64, depth 1×H×W float32,
normal 3×H×W float32.

Train augmentation (``DenseAugmentation``) draws its randomness from (seed, epoch, index).
A resumed run therefore gets the same augmented batches as an uninterrupted one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from datasets.loading import EpochSeededLoader

log = logging.getLogger(__name__)

Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder is missing or incomplete; the message names the path and the fix."""


@dataclass(frozen=True)
class TaskFolders:
    """Folder name of each task's targets inside ``<root>/<split>/`` (image is ``image``)."""

    folders: Mapping[str, str]

    def __iter__(self):
        return iter(self.folders.items())


def count_samples(folder: Path) -> int:
    """Return N for a folder containing ``0.npy`` .. ``(N−1).npy``; raise if the indices have a gap."""
    indices = sorted(int(path.stem) for path in folder.glob("*.npy") if path.stem.isdigit())
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))
        raise DatasetNotFoundError(f"{folder} must contain 0.npy .. N-1.npy without gaps; missing "
                                   f"{', '.join(f'{i}.npy' for i in missing[:5])}")
    return len(indices)


def resize_sample(image: torch.Tensor, targets: dict[str, torch.Tensor], size: Sequence[int]) -> Sample:
    """Resize one channels-first sample: bilinear for image and normals, nearest for label and depth.

    Bilinear resizing is antialiased, so that a strong downscale does not alias. Normals
    are renormalised after interpolation, and all-zero (invalid) normals stay zero.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(image.shape[-2:]) == size:
        return image, targets
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    resized = {}
    for task, target in targets.items():
        if task == "segmentation":
            resized[task] = F.interpolate(target[None, None].double(), size=size, mode="nearest")[0, 0].long()
        elif task == "normal":
            valid = F.interpolate((target != 0).any(0, keepdim=True)[None].float(), size=size, mode="nearest")[0]
            normal = F.interpolate(target[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
            resized[task] = normal / normal.norm(dim=0, keepdim=True).clamp_min(1e-12) * valid
        else:
            resized[task] = F.interpolate(target[None], size=size, mode="nearest")[0]
    return image, resized


class MTANFolder(Dataset):
    """One split of an MTAN ``.npy`` release.

    ``indices`` selects a subset (default: all). ``resolution`` (H, W) resizes every sample
    on load; None keeps the stored size. ``augmentation`` is applied to every sample
    with the epoch set by :meth:`set_epoch`.
    """

    def __init__(self, root: Path, split: str, task_folders: TaskFolders, indices: Sequence[int] | None = None,
                 resolution: Sequence[int] | None = None, augmentation: "DenseAugmentation | None" = None,
                 download_hint: str = ""):
        self.root = Path(root)
        self.split = split
        self.task_folders = task_folders
        self.resolution = tuple(resolution) if resolution else None
        self.augmentation = augmentation
        self.epoch = 0

        split_dir = self.root / split
        folders = ["image"] + [folder for _, folder in task_folders]
        absent = [split_dir / folder for folder in folders if not (split_dir / folder).is_dir()]
        if absent:
            raise DatasetNotFoundError(f"dataset folder {absent[0]} not found (expected {split_dir}/{{"
                                       f"{','.join(folders)}}}/<i>.npy). {download_hint}".strip())
        counts = {folder: count_samples(split_dir / folder) for folder in folders}
        if len(set(counts.values())) != 1:
            raise DatasetNotFoundError(f"{split_dir}: the folders contain different numbers of samples {counts}; "
                                       "the download or preparation is incomplete, redo it")
        total = counts["image"]
        if total == 0:
            raise DatasetNotFoundError(f"{split_dir}/image contains no .npy samples. {download_hint}".strip())
        self.indices = list(range(total)) if indices is None else [int(i) for i in indices]
        if self.indices and max(self.indices) >= total:
            raise ValueError(f"{split_dir} contains {total} samples but sample {max(self.indices)} was requested; "
                             "lower the subset size")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, folder: str, index: int) -> np.ndarray:
        return np.load(self.root / self.split / folder / f"{index}.npy")

    def load_sample(self, index: int) -> Sample:
        """Load stored sample ``index`` channels first, without augmentation."""
        image = torch.from_numpy(np.ascontiguousarray(self._load("image", index).transpose(2, 0, 1))).float()
        targets = {}
        for task, folder in self.task_folders:
            array = self._load(folder, index)
            if task == "segmentation":
                targets[task] = torch.from_numpy(np.asarray(array)).long()
            else:
                if array.ndim == 2:
                    array = array[:, :, None]
                targets[task] = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float()
        if self.resolution is not None:
            image, targets = resize_sample(image, targets, self.resolution)
        return image, targets

    def __getitem__(self, item: int) -> Sample:
        index = self.indices[item]
        image, targets = self.load_sample(index)
        if self.augmentation is not None:
            image, targets = self.augmentation(image, targets, self.epoch, index)
        return image, targets


class DenseAugmentation:
    """Random scale crop then horizontal flip, the train augmentation of the Nash-MTL code.

    Scale crop: draw s from ``scales`` and crop an (H/s)×(W/s) window at a random position.
    The window is resized back to H×W, bilinear (``align_corners=True``) for image and
    normals and nearest for label and depth. Depth is then divided by s
    (``depth_scaling="divide"``, the reference for both datasets) or multiplied by s
    (``"multiply"``, the consistent choice for inverse depth). Flip: with probability
    ``flip_probability`` mirror left-right and negate the x component of the normals.

    NOTE: the reference code applies "divide" to Cityscapes too, although its depth is
    inverse depth (disparity), which should scale by s instead.

    The random draws come from a generator seeded with (seed, epoch, sample index).
    """

    def __init__(self, seed: int, scales: Sequence[float] = (1.0, 1.2, 1.5), flip_probability: float = 0.5,
                 scale_crop: bool = True, flip: bool = True, depth_scaling: str = "divide"):
        if depth_scaling not in ("divide", "multiply"):
            raise ValueError(f"depth_scaling must be 'divide' or 'multiply', got {depth_scaling!r}")
        self.seed = seed
        self.scales = [float(s) for s in scales]
        self.flip_probability = flip_probability
        self.scale_crop = scale_crop
        self.flip = flip
        self.depth_scaling = depth_scaling

    def generator(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

    def __call__(self, image: torch.Tensor, targets: dict[str, torch.Tensor], epoch: int, index: int) -> Sample:
        rng = self.generator(epoch, index)
        if self.scale_crop:
            scale = self.scales[int(rng.integers(len(self.scales)))]
            height, width = image.shape[-2:]
            crop_height, crop_width = int(height / scale), int(width / scale)
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            image, targets = self.crop_and_resize(image, targets, scale, (top, left, crop_height, crop_width))
        if self.flip and rng.random() < self.flip_probability:
            image, targets = horizontal_flip(image, targets)
        return image, targets

    def crop_and_resize(self, image: torch.Tensor, targets: dict[str, torch.Tensor], scale: float,
                        window: tuple[int, int, int, int]) -> Sample:
        """Crop ``window`` = (top, left, height, width) and resize it back to the input size."""
        top, left, crop_height, crop_width = window
        size = tuple(image.shape[-2:])
        rows, cols = slice(top, top + crop_height), slice(left, left + crop_width)

        def bilinear(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x[None, :, rows, cols], size=size, mode="bilinear", align_corners=True)[0]

        def nearest(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x[None, :, rows, cols], size=size, mode="nearest")[0]

        cropped = {}
        for task, target in targets.items():
            if task == "segmentation":
                cropped[task] = nearest(target[None].double())[0].long()
            elif task == "normal":
                cropped[task] = bilinear(target)
            elif task == "depth":
                depth = nearest(target)
                cropped[task] = depth / scale if self.depth_scaling == "divide" else depth * scale
            else:
                raise ValueError(f"no augmentation rule for task {task!r}")
        return bilinear(image), cropped


def horizontal_flip(image: torch.Tensor, targets: dict[str, torch.Tensor]) -> Sample:
    """Mirror left-right; the x component (channel 0) of the normals changes sign."""
    flipped = {task: target.flip(-1) for task, target in targets.items()}
    if "normal" in flipped:
        flipped["normal"] = flipped["normal"].clone()
        flipped["normal"][0] = -flipped["normal"][0]
    return image.flip(-1), flipped


class EpochAugmentedLoader(EpochSeededLoader):
    """:class:`EpochSeededLoader` that also passes the epoch to the dataset's augmentation."""

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)


def move_batch(batch: Sample, device: torch.device) -> Sample:
    image, targets = batch
    return image.to(device, non_blocking=True), {task: t.to(device, non_blocking=True) for task, t in targets.items()}
