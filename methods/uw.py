"""UW: task weights from learned homoscedastic uncertainty.

"Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics"
(Kendall et al., CVPR 2018): with s_k = log σ_k² learned, minimise
Σ_k ½(exp(−s_k)·L_k + s_k), the form of the Nash-MTL reference code. The method owns s and
its Adam optimiser and steps them in ``after_step``.
"""
from __future__ import annotations

from typing import Any

import torch

from methods.base import Method


class UncertaintyWeighting(Method):
    """UW with log-variances s (init 0) trained by their own Adam (lr 0.025 in the reference runs).

    Reported weights are exp(−s) (the reference's); the effective loss weights are
    ½·exp(−s), so at s = 0 the update is half the LS update. ``total_loss`` carries the
    graph into s, so the trainer's single backward pass also fills s.grad. ``after_step``
    then steps the optimiser of s and clears that gradient.
    """

    name = "uw"

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", init_log_variance: float = 0.0,
                 lr: float = 0.025, **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        self.log_variances = torch.full((num_tasks,), float(init_log_variance), dtype=torch.float64,
                                        device=self.device, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.log_variances], lr=lr)

    def reported_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.log_variances.detach()).to(device=losses.device, dtype=losses.dtype)

    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.reported_weights(losses)

    def total_loss(self, losses: torch.Tensor) -> torch.Tensor:
        log_variances = self.log_variances.to(losses.dtype)
        return 0.5 * (torch.exp(-log_variances) * losses + log_variances).sum()

    def after_step(self, losses: torch.Tensor, losses_after: torch.Tensor | None = None) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"log_variances": self.log_variances.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_variances.copy_(state["log_variances"])
        self.optimizer.load_state_dict(state["optimizer"])
