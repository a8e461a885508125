"""The toy objective of "Conflict-Averse Gradient Descent for Multi-task Learning" (Liu et al., 2021).

For x = (x₁, x₂):

    f₁ = log(max(|0.5(−x₁ − 7) − tanh(−x₂)|, 5e-6)) + 6
    f₂ = log(max(|0.5(−x₁ + 3) + tanh(−x₂) + 2|, 5e-6)) + 6
    g₁ = ((−x₁ + 7)² + 0.1(−x₂ − 8)²)/10 − 20
    g₂ = ((−x₁ − 7)² + 0.1(−x₂ − 8)²)/10 − 20
    c₁ = max(tanh(0.5x₂), 0),  c₂ = max(tanh(−0.5x₂), 0)
    L₁ = c₁f₁ + c₂g₁,  L₂ = c₁f₂ + c₂g₂.

The Nash-MTL and FAMO toy experiments multiply L₁ by ``scale`` = 0.1 so that the tasks have
different loss scales; ``scale`` = 1 is the CAGrad original. Both losses exceed −21·(scale, 1).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar

# Floor inside the logarithms of f₁ and f₂.
LOG_FLOOR = 5e-6
# L₁/scale and L₂ stay above −LOWER_BOUND everywhere (c₂g_k ≥ −20 and c₁f_k ≥ −6.2).
LOWER_BOUND = 21.0


def positive_part(values: torch.Tensor) -> torch.Tensor:
    """Return max(values, 0) with gradient 1 at 0.

    torch.clamp has gradient 0 at the boundary, which would make x₂ = 0, and so the
    reference start point (0, 0), stationary for both tasks.
    """
    return torch.where(values >= 0, values, torch.zeros_like(values))


def toy_losses(x: torch.Tensor, scale: float = 0.1) -> torch.Tensor:
    """Return (L₁·scale, L₂) at the points ``x`` of shape (..., 2); differentiable in x."""
    x1, x2 = x[..., 0], x[..., 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), min=LOG_FLOOR).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), min=LOG_FLOOR).log() + 6
    g1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    g2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c1 = positive_part(torch.tanh(0.5 * x2))
    c2 = positive_part(torch.tanh(-0.5 * x2))
    return torch.stack([scale * (c1 * f1 + c2 * g1), c1 * f2 + c2 * g2], dim=-1)


def pareto_set(num_points: int = 41) -> np.ndarray:
    """Return points (x₁, x₂) on the Pareto set, shape (num_points, 2).

    On the Pareto set c₁ = 0, so a weighted sum w·L₁ + (1 − w)·L₂ is c₂(x₂) times a
    quadratic in x₁ (minimised at x₁ = 7(2w − 1)) plus a term in x₂ alone; x₂ then
    minimises c₂(x₂)·(a(w) + 0.01(x₂ + 8)² − 20), solved numerically for each w. The loss
    scale of task 1 only reparametrises w, so the set does not depend on it.
    """
    points = []
    for w in np.linspace(0.0, 1.0, num_points):
        x1 = 7.0 * (2.0 * w - 1.0)
        quadratic = (w * (7.0 - x1) ** 2 + (1.0 - w) * (7.0 + x1) ** 2) / 10.0

        def loss(x2: float, quadratic: float = quadratic) -> float:
            return math.tanh(-0.5 * x2) * (quadratic + 0.01 * (x2 + 8.0) ** 2 - 20.0)

        x2 = minimize_scalar(loss, bounds=(-11.0, -1.0), method="bounded", options={"xatol": 1e-9}).x
        points.append((x1, float(x2)))
    return np.array(points)
