"""GradDrop: keep, per coordinate, only the task gradients of one randomly chosen sign.

"Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout" (Chen et
al., NeurIPS 2020), Eq. 1–3: the positive sign purity P = ½(1 + Σ_k g_k / Σ_k |g_k|) per
coordinate; with U ~ Uniform(0, 1), the positive entries survive where P > U and the
negative ones where P < U. As in the FAMO reference code it acts on the per-task
gradients of the shared parameters (not on an activation layer) and returns the sum over
tasks of the kept entries. The result is not a weighted sum of task gradients, so the
method works on the Jacobian itself.
"""
from __future__ import annotations

from typing import Any

import torch

from methods.base import Aggregation, Method, new_generator

# Guards the sign purity against coordinates where every task gradient is zero.
PURITY_EPSILON = 1e-8


def graddrop_direction(jacobian: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Return Σ_k of the task-gradient entries that survive the sign dropout for draws ``uniform``."""
    purity = 0.5 * (1.0 + jacobian.sum(dim=0) / (jacobian.abs().sum(dim=0) + PURITY_EPSILON))
    keep_positive = (purity > uniform)[None, :] & (jacobian > 0)
    keep_negative = (purity < uniform)[None, :] & (jacobian < 0)
    return (jacobian * (keep_positive | keep_negative)).sum(dim=0)


class GradDrop(Method):
    """GradDrop on the shared parameters (reference clipping 1.0 in its config).

    ``seed`` seeds the uniform draws (default: the run seed). The task-specific parameters
    get the gradient of Σ_k L_k, and the reported weights are those ones.
    """

    name = "graddrop"
    needs_jacobian = True

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", seed: int | None = None,
                 **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        self.generator = new_generator(seed, self.device)

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor) -> Aggregation:
        uniform = torch.rand(jacobian.shape[1], generator=self.generator, dtype=jacobian.dtype,
                             device=self.generator.device).to(jacobian.device)
        direction = graddrop_direction(jacobian, uniform)
        ones = torch.ones(jacobian.shape[0], dtype=jacobian.dtype, device=jacobian.device)
        return Aggregation(shared_grad=direction, weights=ones, task_loss_weights=ones)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
