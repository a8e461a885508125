"""Batches read straight from the memory-mapped image cache.

Each batch is one fancy-indexed read of the uint8 array, so no per-image Python work or
collation runs during an epoch. Images stay uint8 until ``CelebABenchmark.to_device``
scales them to [0, 1] on the training device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass
class SplitArrays:
    """The cached images (N, 3, S, S) uint8 and labels (N, K) uint8 of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} cached images but {len(self.labels)} label rows")

    def __len__(self) -> int:
        return len(self.images)


class ArrayBatches:
    """Iterate over ``(images uint8, labels float32)`` batches of a :class:`SplitArrays`.

    The signature follows ``torch.utils.data.DataLoader`` for the arguments used here,
    so :class:`datasets.loading.EpochSeededLoader` can create one per epoch. With
    ``shuffle`` the batches are drawn from a permutation made by ``generator``. The rows of
    each batch are then read in ascending order, because sorted reads of the memory map are
    faster and the batch-mean loss does not depend on row order.
    """

    def __init__(self, dataset: SplitArrays, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.dataset) // self.batch_size
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(count, generator=self.generator).numpy()
        else:
            order = np.arange(count)

        for batch in range(len(self)):
            rows = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            if self.shuffle:
                rows = np.sort(rows)
            images = torch.from_numpy(np.ascontiguousarray(self.dataset.images[rows]))
            labels = torch.from_numpy(self.dataset.labels[rows].astype(np.float32))
            yield images, labels
