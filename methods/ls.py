"""Linear scalarisation (LS): the unweighted sum of the task losses."""
from __future__ import annotations

import torch

from methods.base import Method


class LinearScalarization(Method):
    """LS: every task weight is 1, so the update is the gradient of Σ_k L_k."""

    name = "ls"

    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(losses)
