"""The toy "model": its only (shared) parameter is the point x in the plane."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from datasets.base import MTLModel
from datasets.toy.problem import toy_losses


class ToyPoint(MTLModel):
    """Shared parameter x ∈ R² (float64); ``forward`` returns the shifted task losses.

    ``offsets`` are added to the losses so that they are positive, which SI (log L), FAMO
    and DWA need; gradients do not change. There are no task-specific parameters.
    """

    def __init__(self, start: Sequence[float], scale: float, offsets: Sequence[float],
                 task_names: Sequence[str] = ("l1", "l2")):
        super().__init__()
        self.task_names = list(task_names)
        self.scale = float(scale)
        self.x = nn.Parameter(torch.tensor([float(v) for v in start], dtype=torch.float64))
        self.register_buffer("offsets", torch.tensor([float(v) for v in offsets], dtype=torch.float64))

    def forward(self, batch=None) -> dict[str, torch.Tensor]:
        losses = toy_losses(self.x, self.scale) + self.offsets
        return {name: losses[k] for k, name in enumerate(self.task_names)}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.x]

    def task_specific_parameters(self) -> list[nn.Parameter]:
        return []
