"""When to teleport: conflict tests on the task Jacobian of the shared parameters.

From "Continual Optimization with Symmetry Teleportation for Multi-Task Learning"
(Zhou et al., NeurIPS 2025): a teleport is worth its cost when the update is dominated by
some tasks, i.e. the smallest task gradient points against the mean gradient g_0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Cosines of a zero vector are undefined, so zero gradients never fire a trigger.
_EPS = 1e-12


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Return numerator / denominator, NaN where the denominator is zero."""
    ratio = numerator / denominator.clamp_min(_EPS)
    return torch.where(denominator > _EPS, ratio, torch.full_like(ratio, float("nan")))


def cosines_to_mean(gramian: torch.Tensor) -> torch.Tensor:
    """Return cos(g_k, g_0) for every task from the Gramian G = J Jᵀ, with g_0 = mean_k g_k.

    g_k · g_0 = mean_j G_kj and ‖g_0‖² = mean G, so no n-dimensional vector is needed.
    """
    norms = gramian.diagonal().clamp_min(0).sqrt()
    mean_norm = gramian.mean().clamp_min(0).sqrt()
    return _safe_ratio(gramian.mean(dim=1), norms * mean_norm)


def pairwise_cosines(gramian: torch.Tensor) -> torch.Tensor:
    """Return the K × K matrix cos(g_i, g_j) from the Gramian; NaN for zero gradients."""
    norms = gramian.diagonal().clamp_min(0).sqrt()
    return _safe_ratio(gramian, norms[:, None] * norms[None, :])


@dataclass(frozen=True)
class GradientGeometry:
    """Summary of the task gradients g_1..g_K of the shared parameters at one point.

    ``mean_norm`` is ‖g_0‖ with g_0 = mean_k g_k. ``dominated_cosine`` is cos(g_min, g_0)
    for the task gradient of smallest norm. ``min_cosine`` is min_k cos(g_k, g_0).
    ``min_pair_cosine`` is min_{i<j} cos(g_i, g_j). ``task_norms`` are ‖g_k‖.
    """

    mean_norm: float
    dominated_cosine: float
    min_cosine: float
    min_pair_cosine: float
    task_norms: torch.Tensor

    @classmethod
    def of(cls, jacobian: torch.Tensor) -> "GradientGeometry":
        """Measure a K × n Jacobian (row k = gradient of task loss k) through its Gramian."""
        jacobian = jacobian.detach()
        return cls.from_gramian((jacobian @ jacobian.T).double())

    @classmethod
    def from_gramian(cls, gramian: torch.Tensor) -> "GradientGeometry":
        """Measure the task gradients from their K × K Gramian G = J Jᵀ."""
        gramian = gramian.detach().double().cpu()
        task_norms = gramian.diagonal().clamp_min(0).sqrt()
        to_mean = cosines_to_mean(gramian)
        pairs = pairwise_cosines(gramian)
        upper = torch.triu_indices(len(gramian), len(gramian), offset=1)
        pair_values = pairs[upper[0], upper[1]]
        return cls(
            mean_norm=float(gramian.mean().clamp_min(0).sqrt()),
            dominated_cosine=float(to_mean[int(task_norms.argmin())]),
            min_cosine=_nanmin(to_mean),
            min_pair_cosine=_nanmin(pair_values),
            task_norms=task_norms.float().cpu(),
        )


def _nanmin(values: torch.Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.min()) if finite.numel() else float("nan")


@dataclass(frozen=True)
class Trigger:
    """Decide from the Jacobian whether the task gradients conflict enough to teleport.

    ``dominated`` (the paper's default): cos(g_min, g_0) < −τ.
    ``any`` (the released code): min_k cos(g_k, g_0) ≤ −τ.
    ``weak`` (the paper's ablation): min_{i<j} cos(g_i, g_j) < −τ.
    ``always``: fires at every check within ``start_epoch`` and ``max_per_epoch``. It is
    not a method variant but a way to time a teleport or run one on tiny samples, and it
    records cos(g_min, g_0) as its statistic.
    The paper uses a stricter, unpublished condition with many tasks (CelebA); the
    threshold τ ≥ 0 is this suite's stand-in for it. Except with ``always``, a NaN cosine
    never fires.
    """

    variant: str = "dominated"
    tau: float = 0.0

    def statistic(self, geometry: GradientGeometry) -> float:
        """Return the cosine that this variant compares with −τ."""
        if self.variant in ("dominated", "always"):
            return geometry.dominated_cosine
        if self.variant == "any":
            return geometry.min_cosine
        if self.variant == "weak":
            return geometry.min_pair_cosine
        raise ValueError(f"unknown trigger variant {self.variant!r}; use dominated, any, weak or always")

    def fires(self, cosine: float) -> bool:
        """Apply the variant's comparison to its statistic."""
        if self.variant == "always":
            return True
        if cosine != cosine:  # NaN
            return False
        if self.variant == "any":
            return cosine <= -self.tau
        return cosine < -self.tau
