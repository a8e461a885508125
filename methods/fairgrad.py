"""FairGrad: α-fair allocation of the update's improvement across tasks.

"Fair Resource Allocation in Multi-Task Learning" (Ban and Ji, ICML 2024): the update is
Jᵀw where w > 0 solves (JJᵀ)w = w^(−1/α) element-wise, i.e. each task's utility
⟨g_k, Jᵀw⟩ equals w_k^(−1/α). α = 1 is proportional fairness and gives Nash-MTL's
weights; α → ∞ approaches max-min fairness. The system is solved by nonlinear least
squares from uniform weights with w ≥ 0, as in the COST reference code.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scipy.optimize import least_squares

from methods.gramian import GramianMethod, GramianWeights

log = logging.getLogger(__name__)

# A least-squares solution whose max residual exceeds this fraction of max|Gw| is counted
# as not solved (the system has no positive solution, e.g. two opposite gradients).
RESIDUAL_TOLERANCE = 1e-6


def fairgrad_weights(gramian: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, float]:
    """Return (w, relative max residual) for (JJᵀ)w = w^(−1/α), by least squares from w = 1/K."""
    matrix = gramian.detach().cpu().double().numpy()
    num_tasks = matrix.shape[0]
    exponent = -1.0 / alpha

    def residual(w: np.ndarray) -> np.ndarray:
        return matrix @ w - np.power(w, exponent)

    def jacobian(w: np.ndarray) -> np.ndarray:
        return matrix - np.diag(exponent * np.power(w, exponent - 1.0))

    result = least_squares(residual, np.full(num_tasks, 1.0 / num_tasks), jac=jacobian, bounds=(0.0, np.inf))
    weights = result.x
    scale = max(float(np.abs(matrix @ weights).max()), 1e-300)
    error = float(np.abs(residual(weights)).max()) / scale
    return torch.as_tensor(weights, dtype=gramian.dtype, device=gramian.device), error


class FairGrad(GramianMethod):
    """FairGrad on the shared parameters: reported weights w, shared update K·Jᵀw.

    The factor K is the COST reference code's, which matches the scale of a sum of losses.
    With the reference clipping to norm 1.0 it only matters for unclipped runs. As in that
    code the task-specific parameters get the gradient of Σ_k L_k. ``alpha`` is 1 in the
    FairGrad paper's text; the released COST script uses 2.0 (preset in the config).
    A least-squares result that does not solve the system (relative residual above
    1e-6) is counted under ``solver_not_converged`` and used as it is.
    """

    name = "fairgrad"

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", alpha: float = 1.0, **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        if alpha <= 0:
            raise ValueError(f"FairGrad alpha={alpha} must be positive")
        self.alpha = float(alpha)

    def weights_from_gramian(self, gramian: torch.Tensor, losses: torch.Tensor) -> GramianWeights:
        weights, error = fairgrad_weights(gramian, self.alpha)
        if error > RESIDUAL_TOLERANCE:
            self.counters["solver_not_converged"] += 1
            log.debug("FairGrad step %d: least-squares residual %.3g (relative)", self.step, error)
        num_tasks = gramian.shape[0]
        return GramianWeights(shared=num_tasks * weights, reported=weights, task_loss=torch.ones_like(weights),
                              stats={"fairgrad_residual": error})
