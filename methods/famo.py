"""FAMO: balance the tasks' log-loss decrease with one forward pass per step.

"FAMO: Fast Adaptive Multitask Optimization" (Liu et al., NeurIPS 2023). With logits ξ,
z = softmax(ξ) and D_k = L_k − L_k* + ε (L* the loss lower bounds, ε = 1e-8), the update
is the gradient of Σ_k c·z_k·log D_k with c = 1/Σ_j (z_j/D_j), so the effective loss weights
are z_k/(D_k·Σ_j z_j/D_j) (they sum to 1). After the optimiser step, a second forward pass
on the same batch gives D'; the logits follow the gradient (diag z − zzᵀ)(log D − log D')
with Adam (lr 0.025) whose weight decay γ regularises ξ.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from methods.base import Method

EPSILON = 1e-8


class FAMO(Method):
    """FAMO with its own Adam on the logits; ``gamma`` is that Adam's weight decay.

    Reported weights are softmax(ξ) (the reference's); ``loss_weights`` are the effective
    weights above. ``min_losses`` are the loss lower bounds L* (0 for non-negative losses).
    The trainer runs the second forward pass because ``needs_losses_after_step`` is set.
    """

    name = "famo"
    needs_losses_after_step = True

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", gamma: float = 0.01, w_lr: float = 0.025,
                 min_losses: float | Sequence[float] = 0.0, **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        self.gamma = float(gamma)
        self.logits = torch.zeros(num_tasks, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=w_lr, weight_decay=self.gamma)
        bounds = torch.as_tensor(min_losses, dtype=torch.float64)
        self.min_losses = bounds.expand(num_tasks).clone() if bounds.dim() == 0 else bounds.clone()
        if self.min_losses.shape != (num_tasks,):
            raise ValueError(f"FAMO min_losses has {self.min_losses.numel()} entries; expected 1 or {num_tasks}")

    def _shifted(self, losses: torch.Tensor) -> torch.Tensor:
        return losses - self.min_losses.to(device=losses.device, dtype=losses.dtype) + EPSILON

    def reported_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits.detach(), dim=0).to(device=losses.device, dtype=losses.dtype)

    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        z = self.reported_weights(losses)
        ratio = z / self._shifted(losses.detach())
        return ratio / ratio.sum()

    def total_loss(self, losses: torch.Tensor) -> torch.Tensor:
        z = self.reported_weights(losses)
        normaliser = 1.0 / (z / self._shifted(losses.detach())).sum()
        return (normaliser * z * self._shifted(losses).log()).sum()

    def logit_gradient(self, losses: torch.Tensor, losses_after: torch.Tensor) -> torch.Tensor:
        """Return (diag z − zzᵀ)(log D − log D'), the gradient the logits' Adam receives."""
        decrease = (self._shifted(losses.detach().double().cpu()).log()
                    - self._shifted(losses_after.detach().double().cpu()).log())
        z = torch.softmax(self.logits.detach(), dim=0)
        return z * decrease - z * (z @ decrease)

    def after_step(self, losses: torch.Tensor, losses_after: torch.Tensor | None = None) -> None:
        if losses_after is None:
            raise RuntimeError("FAMO needs the losses of a second forward pass after the optimiser step "
                               "(needs_losses_after_step); the caller passed none")
        self.logits.grad = self.logit_gradient(losses, losses_after)
        self.optimizer.step()
        self.logits.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"logits": self.logits.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.optimizer.load_state_dict(state["optimizer"])
