"""Loader helpers shared by the datasets."""
from __future__ import annotations

from typing import Any, Callable

import torch


class EpochSeededLoader:
    """A shuffling loader whose order depends only on (seed, epoch).

    A resumed run therefore replays exactly the batches an uninterrupted run would see,
    without saving any sampler state. ``loader_cls`` is ``torch.utils.data.DataLoader`` or
    PyG's graph ``DataLoader``; ``kwargs`` go to it unchanged.
    """

    def __init__(self, dataset, batch_size: int, seed: int, loader_cls: Callable[..., Any] | None = None,
                 **kwargs: Any):
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.loader_cls = loader_cls or torch.utils.data.DataLoader
        self.kwargs = kwargs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.kwargs.get("drop_last"):
            return len(self.dataset) // self.batch_size
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        loader = self.loader_cls(self.dataset, batch_size=self.batch_size, shuffle=True, generator=generator,
                                 **self.kwargs)
        return iter(loader)
