"""CelebA task spec: 40 binary attributes, per-task BCE, per-attribute F1.

Reporting rule: test F1 at the epoch with the best mean validation F1. Training: Adam, lr
3e-4, no scheduler, 15 epochs, batch size 256 (``configs/dataset/celeba.yaml``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from datasets.base import Benchmark, Metric, Splits
from datasets.celeba.annotations import ATTRIBUTE_NAMES
from datasets.celeba.cache import load_or_build_cache
from datasets.celeba.files import locate_release
from datasets.celeba.loader import ArrayBatches, SplitArrays
from datasets.celeba.metrics import F1Accumulator
from datasets.celeba.model import CelebACNN
from datasets.celeba.splits import load_split_images
from datasets.loading import EpochSeededLoader

# Single-task (STL) F1 of each attribute, in ATTRIBUTE_NAMES order; the Δm% baseline.
STL_F1: tuple[float, ...] = (
    0.6736886, 0.68121034, 0.81524944, 0.5760289, 0.7205613, 0.8555076, 0.38203922, 0.58225113,
    0.787647, 0.8321292, 0.5029583, 0.68694085, 0.6781237, 0.5240381, 0.5161666, 0.95694304,
    0.6968786, 0.67976356, 0.8808315, 0.8582131, 0.97034, 0.93267566, 0.5057539, 0.40307626,
    0.9703734, 0.48644206, 0.60786104, 0.5261031, 0.56907415, 0.59815097, 0.6858371, 0.924108,
    0.5424991, 0.7406311, 0.71019936, 0.87365365, 0.9305602, 0.33704284, 0.7647628, 0.91907,
)


def f1_metric_name(attribute: str) -> str:
    return f"f1_{attribute}"


class CelebABenchmark(Benchmark):
    """CelebA with the 40 attributes of the release as tasks, one F1 metric each."""

    name = "celeba"
    tasks = ATTRIBUTE_NAMES
    metrics = tuple(Metric(f1_metric_name(attribute), task=attribute, unit="fraction", higher_is_better=True,
                           stl=stl) for attribute, stl in zip(ATTRIBUTE_NAMES, STL_F1))
    selection = "best_val_mean"

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        self.image_size = int(cfg.get("image_size", 64))
        self.arrays: dict[str, SplitArrays] | None = None

    def cache_dir(self, root: Path) -> Path:
        configured = self.cfg.get("cache_dir")
        return Path(configured) if configured else root / "celeba_cache"

    def load_arrays(self) -> dict[str, SplitArrays]:
        """Read the annotations, build any missing image cache, and memory-map every split."""
        if self.arrays is not None:
            return self.arrays
        root = Path(self.cfg["root"])
        files = locate_release(root)
        splits = load_split_images(files, carve_from_train=self.cfg.get("carve_from_train"),
                                   limits=self.cfg.get("limit"), verify_md5=bool(self.cfg.get("verify_md5", True)))
        cache_dir = self.cache_dir(root)
        workers = int(self.cfg.get("cache_workers", 0))
        self.arrays = {
            name: SplitArrays(load_or_build_cache(cache_dir, name, files.images, split.filenames, self.image_size,
                                                  workers), split.labels)
            for name, split in splits.items()
        }
        return self.arrays

    def build_splits(self, seed: int) -> Splits:
        arrays = self.load_arrays()
        batch_size = int(self.cfg["batch_size"])
        eval_batch_size = int(self.cfg.get("eval_batch_size") or batch_size)
        train = EpochSeededLoader(arrays["train"], batch_size, seed, loader_cls=ArrayBatches,
                                  drop_last=bool(self.cfg.get("drop_last", False)))
        return Splits(
            train=train,
            val=ArrayBatches(arrays["val"], eval_batch_size),
            test=ArrayBatches(arrays["test"], eval_batch_size),
            info={name: len(split) for name, split in arrays.items()},
        )

    def build_model(self) -> CelebACNN:
        return CelebACNN(self.tasks)

    def to_device(self, batch: Any, device: torch.device) -> Any:
        """Move a batch to ``device`` and scale the uint8 images to float32 in [0, 1] there."""
        images, labels = batch
        images = images.to(device, non_blocking=True).float().div_(255.0)
        return images, labels.to(device, non_blocking=True)

    def task_losses(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> torch.Tensor:
        """Return the binary cross-entropy of each attribute, averaged over the batch."""
        logits = torch.stack([outputs[task] for task in self.tasks], dim=1)
        return F.binary_cross_entropy_with_logits(logits, batch[1], reduction="none").mean(dim=0)

    def new_accumulator(self) -> F1Accumulator:
        return F1Accumulator(self.tasks, self.metric_names())
