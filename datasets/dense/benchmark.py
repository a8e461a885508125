"""The benchmark declaration shared by NYUv2 and Cityscapes (SegNet-MTAN on MTAN ``.npy`` data).

A subclass sets the dataset name, the task → output-channel mapping, the target folder
of each task, the metric declarations and the download command. Everything else (loaders,
augmentation, model, losses, metrics, StepLR schedule, last-10-epoch reporting) is common.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
from torch.utils.data import DataLoader

from datasets.base import Benchmark, Metric, MTLModel, Splits
from datasets.dense.data import (DenseAugmentation, EpochAugmentedLoader, MTANFolder, Sample, TaskFolders,
                                 move_batch)
from datasets.dense.losses import depth_loss, normal_loss, segmentation_loss
from datasets.dense.metrics import DenseAccumulator
from datasets.dense.model import FILTERS, build_segnet

log = logging.getLogger(__name__)

LOSSES = {"segmentation": segmentation_loss, "depth": depth_loss, "normal": normal_loss}
TRAIN_SPLIT = "train"
# The MTAN releases call the test split "val"; there is no separate validation split.
TEST_SPLIT = "val"


class DenseBenchmark(Benchmark):
    """SegNet-MTAN benchmark on an MTAN ``.npy`` release; see the subclasses for the facts."""

    task_channels: ClassVar[dict[str, int]]
    task_folders: ClassVar[dict[str, str]]
    metric_declarations: ClassVar[tuple[Metric, ...]]
    download_command: ClassVar[str]
    selection = "last_k_mean"
    scheduler_monitor = "epoch"

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        self.tasks = list(self.task_channels)
        self.metrics = list(self.metric_declarations)
        self.selection_last_k = int(cfg.get("selection_last_k", 10))
        self.convention = str(cfg.get("metric_convention", "per_batch"))
        # Fail on a bad convention name before any data is read.
        DenseAccumulator(self.tasks, self.task_channels["segmentation"], self.convention)

    @property
    def root(self) -> Path:
        return Path(str(self.cfg["root"]))

    def download_hint(self) -> str:
        return (f"Download the dataset with `{self.download_command}` (it creates <root>/{self.name}) or "
                "point dataset.root at an existing copy.")

    def augmentation(self, seed: int) -> DenseAugmentation | None:
        augment = self.cfg.get("augment") or {}
        if not augment.get("enabled", True):
            return None
        return DenseAugmentation(
            seed=seed, scales=augment.get("scales", (1.0, 1.2, 1.5)),
            flip_probability=float(augment.get("flip_probability", 0.5)),
            scale_crop=bool(augment.get("scale_crop", True)), flip=bool(augment.get("flip", True)),
            depth_scaling=str(augment.get("depth_scaling", "divide")),
        )

    def _split(self, split: str, subset: int | None, augmentation: DenseAugmentation | None) -> MTANFolder:
        folder = MTANFolder(self.root, split, TaskFolders(self.task_folders), resolution=self.cfg.get("resolution"),
                            augmentation=augmentation, download_hint=self.download_hint())
        if subset is not None:
            if int(subset) > len(folder):
                log.warning("%s contains %d samples, fewer than the requested subset of %d; using all of them",
                            self.root / split, len(folder), int(subset))
            folder.indices = folder.indices[: int(subset)]
        return folder

    def build_splits(self, seed: int) -> Splits:
        train = self._split(TRAIN_SPLIT, self.cfg.get("train_subset"), self.augmentation(seed))
        test = self._split(TEST_SPLIT, self.cfg.get("test_subset"), None)
        workers = int(self.cfg.get("num_workers", 0))
        batch_size = int(self.cfg["batch_size"])
        eval_batch_size = int(self.cfg.get("eval_batch_size") or batch_size)
        log.info("%s: %d train and %d test samples from %s", self.name, len(train), len(test), self.root)
        return Splits(
            train=EpochAugmentedLoader(train, batch_size, seed, num_workers=workers,
                                       drop_last=bool(self.cfg.get("drop_last", False))),
            val=None,
            test=DataLoader(test, batch_size=eval_batch_size, shuffle=False, num_workers=workers),
            info={"train": len(train), "test": len(test)},
        )

    def build_model(self) -> MTLModel:
        model_cfg = self.cfg.get("model") or {}
        return build_segnet(str(model_cfg.get("kind", "mtan")), self.task_channels,
                            filters=[int(f) for f in model_cfg.get("filters", FILTERS)],
                            attention_shared=bool(model_cfg.get("attention_shared", True)))

    def to_device(self, batch: Sample, device: torch.device) -> Sample:
        return move_batch(batch, device)

    def task_losses(self, outputs: Mapping[str, torch.Tensor], batch: Sample) -> torch.Tensor:
        targets = batch[1]
        return torch.stack([LOSSES[task](outputs[task], targets[task]) for task in self.tasks])

    def new_accumulator(self) -> DenseAccumulator:
        return DenseAccumulator(self.tasks, self.task_channels["segmentation"], self.convention)

    def scheduler(self, optimizer: torch.optim.Optimizer):
        schedule = self.cfg.get("scheduler") or {}
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(schedule.get("step_size", 100)),
                                               gamma=float(schedule.get("gamma", 0.5)))
