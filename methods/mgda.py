"""MGDA: the min-norm point of the convex hull of the task gradients.

"Multi-Task Learning as Multi-Objective Optimization" (Sener and Koltun, NeurIPS 2018):
the update is Jᵀλ with λ = argmin_{λ ∈ simplex} ‖Jᵀλ‖² = argmin λᵀGλ, solved on the
Gramian G by the paper's iterative min-norm solver. Algorithm 1 of the paper (the exact
min-norm point of a segment) is :func:`min_norm_on_segment`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from methods.gramian import GramianMethod, GramianWeights

# Stopping rule and iteration cap of the reference solver: stop when the L1 change of λ
# between two iterations falls below STOP_TOLERANCE.
STOP_TOLERANCE = 1e-5
MAX_ITERATIONS = 250


def min_norm_on_segment(aa: float, ab: float, bb: float) -> tuple[float, float]:
    """Return (γ, ‖γa + (1 − γ)b‖²) minimising the norm on the segment [b, a].

    Inputs are the inner products ⟨a,a⟩, ⟨a,b⟩, ⟨b,b⟩ (Algorithm 1 of the MGDA paper).
    At the end points the reference solver returns γ = 0.999 and 0.001 instead of 1 and 0;
    this function keeps those values so that its iterates match the reference.
    """
    if ab >= aa:
        return 0.999, aa
    if ab >= bb:
        return 0.001, bb
    gamma = (bb - ab) / (aa + bb - 2.0 * ab)
    return gamma, bb + gamma * (ab - bb)


def best_pair_start(gramian: np.ndarray) -> np.ndarray:
    """Return the min-norm point over all pairs of tasks, as a K-vector on the simplex."""
    num_tasks = gramian.shape[0]
    best: tuple[float, int, int, float] | None = None
    for i in range(num_tasks):
        for j in range(i + 1, num_tasks):
            gamma, cost = min_norm_on_segment(gramian[i, i], gramian[i, j], gramian[j, j])
            if best is None or cost < best[0]:
                best = (cost, i, j, gamma)
    weights = np.zeros(num_tasks)
    if best is None:
        weights[0] = 1.0
        return weights
    _, i, j, gamma = best
    weights[i] = gamma
    weights[j] = 1.0 - gamma
    return weights


def project_to_simplex(point: np.ndarray) -> np.ndarray:
    """Return the Euclidean projection of ``point`` onto the probability simplex."""
    size = point.shape[0]
    ordered = np.sort(point)[::-1]
    threshold = (point.sum() - 1.0) / size
    running = 0.0
    for i in range(size - 1):
        running += ordered[i]
        candidate = (running - 1.0) / (i + 1.0)
        if candidate > ordered[i + 1]:
            threshold = candidate
            break
    return np.maximum(point - threshold, 0.0)


def projected_gradient_target(weights: np.ndarray, gramian: np.ndarray) -> np.ndarray:
    """Return the next target point: a step along the projected negative gradient, kept on the simplex.

    The step length is the largest one that keeps every coordinate in [0, 1] (ignoring
    coordinates already on their bound), capped at 1.
    """
    direction = -(gramian @ weights)
    direction = direction - direction.mean()
    step = 1.0
    decreasing = direction < 0
    to_zero = -weights[decreasing] / direction[decreasing]
    to_zero = to_zero[to_zero > 1e-7]
    if to_zero.size:
        step = float(to_zero.min())
    increasing = direction > 0
    to_one = (1.0 - weights[increasing]) / direction[increasing]
    to_one = to_one[to_one > 1e-7]
    if to_one.size:
        step = min(step, float(to_one.min()))
    return project_to_simplex(weights + step * direction)


def min_norm_weights(gramian: torch.Tensor | np.ndarray, solver: str = "projected_gradient",
                     max_iterations: int = MAX_ITERATIONS, tolerance: float = STOP_TOLERANCE) -> np.ndarray:
    """Return λ on the simplex minimising λᵀGλ, by the MGDA paper's iterative solver.

    Both solvers start from the best pair of tasks and line-search between the current λ
    and a target point with :func:`min_norm_on_segment`:

    - ``"projected_gradient"``: the target is a projected-gradient step
      (:func:`projected_gradient_target`); this is the solver the Nash-MTL reference code
      runs for MGDA, and the default;
    - ``"frank_wolfe"``: the target is the simplex vertex with the smallest (Gλ)_t
      (Algorithm 2 of the MGDA paper).

    Both stop when the L1 change of λ falls below ``tolerance``, returning the λ before
    that last step, as the reference does. They stop short of the exact minimiser: on the
    reference test cases the update differs from the exact min-norm update by up to about
    1e-3 (relative).
    """
    matrix = gramian.detach().cpu().double().numpy() if isinstance(gramian, torch.Tensor) else np.asarray(gramian)
    weights = best_pair_start(matrix)
    if matrix.shape[0] < 3:
        return weights
    if solver not in ("projected_gradient", "frank_wolfe"):
        raise ValueError(f"unknown MGDA solver {solver!r}; use 'projected_gradient' or 'frank_wolfe'")

    for _ in range(max_iterations):
        if solver == "frank_wolfe":
            target = np.zeros_like(weights)
            target[int(np.argmin(matrix @ weights))] = 1.0
        else:
            target = projected_gradient_target(weights, matrix)

        gamma, _ = min_norm_on_segment(weights @ matrix @ weights, weights @ matrix @ target,
                                       target @ matrix @ target)
        updated = gamma * weights + (1.0 - gamma) * target
        if np.abs(updated - weights).sum() < tolerance:
            return weights
        weights = updated
    return weights


class MGDA(GramianMethod):
    """MGDA-UB on the shared parameters: shared update K·Jᵀλ with λ the min-norm weights.

    Reported weights are K·λ (they sum to K), the scale of the Nash-MTL reference code,
    so the update equals the gradient of Σ_k K·λ_k·L_k. ``normalization="l2"`` divides each
    task gradient by its norm before the solver (the paper's option); the weights then
    apply to the normalised gradients. The reference runs use ``"none"``.
    """

    name = "mgda"

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", solver: str = "projected_gradient",
                 normalization: str = "none", **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        if normalization not in ("none", "l2"):
            raise ValueError(f"unknown MGDA normalization {normalization!r}; use 'none' or 'l2'")
        if solver not in ("projected_gradient", "frank_wolfe"):
            raise ValueError(f"unknown MGDA solver {solver!r}; use 'projected_gradient' or 'frank_wolfe'")
        self.solver = solver
        self.normalization = normalization

    def weights_from_gramian(self, gramian: torch.Tensor, losses: torch.Tensor) -> GramianWeights:
        scale = torch.ones(gramian.shape[0], dtype=gramian.dtype, device=gramian.device)
        if self.normalization == "l2":
            scale = 1.0 / gramian.diagonal().sqrt()
        solution = min_norm_weights(gramian * scale[:, None] * scale[None, :], solver=self.solver)
        weights = gramian.shape[0] * torch.as_tensor(solution, dtype=gramian.dtype, device=gramian.device) * scale
        return GramianWeights(shared=weights)
