"""PCGrad: project each task gradient away from the task gradients it conflicts with.

"Gradient Surgery for Multi-Task Learning" (Yu et al., NeurIPS 2020), Algorithm 1: each
task i walks over the tasks j in a random order. Whenever the running gᵢᴾᶜ has a negative
inner product with the original g_j, its component along g_j is removed. The update is
Σᵢ gᵢᴾᶜ. Every gᵢᴾᶜ stays a linear combination of the original gradients, so the whole
procedure runs on coefficients and the Gramian alone.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from methods.base import new_generator
from methods.gramian import GramianMethod, GramianWeights


def pcgrad_weights(gramian: torch.Tensor, orders: Sequence[Sequence[int]]) -> torch.Tensor:
    """Return w with Σᵢ gᵢᴾᶜ = Σ_j w_j g_j, for the given projection order of each task.

    ``orders[i]`` lists the tasks that task i is projected against, in order. It may
    include i itself, as in the reference code: that projection fires only if earlier
    projections turned gᵢᴾᶜ against gᵢ.
    """
    num_tasks = gramian.shape[0]
    coefficients = torch.eye(num_tasks, dtype=gramian.dtype, device=gramian.device)
    for i in range(num_tasks):
        for j in orders[i]:
            inner = coefficients[i] @ gramian[:, j]
            if inner < 0:
                coefficients[i, j] -= inner / gramian[j, j]
    return coefficients.sum(dim=0)


class PCGrad(GramianMethod):
    """PCGrad on the shared parameters, with the reference's sum reduction.

    Hyperparameters: ``reduction`` is ``"sum"`` (reference runs) or ``"mean"`` (divides the
    update by K). ``shuffle=False`` projects in the natural task order, for tests and
    reproductions of fixed-order results. ``seed`` seeds the order draws (default: the
    run seed). The task-specific parameters get the gradient of Σ_k L_k (``"mean"``:
    of the mean). Reported weights are the coefficients w of the update wᵀJ.
    """

    name = "pcgrad"

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", reduction: str = "sum",
                 shuffle: bool = True, seed: int | None = None, **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"unknown PCGrad reduction {reduction!r}; use 'sum' or 'mean'")
        self.reduction = reduction
        self.shuffle = bool(shuffle)
        self.generator = new_generator(seed)

    def draw_orders(self, num_tasks: int) -> list[list[int]]:
        """Return one projection order per task: a random permutation, or 0..K−1 without shuffling."""
        if not self.shuffle:
            return [list(range(num_tasks)) for _ in range(num_tasks)]
        return [torch.randperm(num_tasks, generator=self.generator).tolist() for _ in range(num_tasks)]

    def weights_from_gramian(self, gramian: torch.Tensor, losses: torch.Tensor) -> GramianWeights:
        num_tasks = gramian.shape[0]
        weights = pcgrad_weights(gramian, self.draw_orders(num_tasks))
        task_loss = torch.ones_like(weights)
        if self.reduction == "mean":
            weights = weights / num_tasks
            task_loss = task_loss / num_tasks
        return GramianWeights(shared=weights, task_loss=task_loss)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])
