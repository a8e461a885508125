"""IMTL-G: the update whose projections on every task's unit gradient are equal.

"Towards Impartial Multi-task Learning" (Liu et al., ICLR 2021), gradient balance in closed
form: with u_k = g_k/‖g_k‖, D = [g₁ − g₂, …, g₁ − g_K] and U = [u₁ − u₂, …, u₁ − u_K],
α₂..K = g₁Uᵀ(DUᵀ)⁻¹ and α₁ = 1 − Σ α₂..K. Every entry is an inner product, so the
weights come from the Gramian alone.
"""
from __future__ import annotations

import torch

from methods.gramian import GramianMethod, GramianWeights


def imtl_g_weights(gramian: torch.Tensor) -> torch.Tensor:
    """Return the IMTL-G weights (they sum to 1) from the Gramian of non-zero gradients.

    The linear system is solved with the pseudo-inverse, so identical task gradients
    (a singular system) give one valid split of their weight instead of raising.
    """
    num_tasks = gramian.shape[0]
    if num_tasks == 1:
        return torch.ones(1, dtype=gramian.dtype, device=gramian.device)

    # projection[i, j] = ⟨g_i, u_j⟩.
    projection = gramian / gramian.diagonal().sqrt()[None, :]
    rhs = projection[0, 0] - projection[0, 1:]
    system = (projection[0, 0] - projection[0, 1:])[None, :] - projection[1:, :1] + projection[1:, 1:]
    rest = rhs @ torch.linalg.pinv(system)
    return torch.cat([(1.0 - rest.sum()).reshape(1), rest])


class IMTLG(GramianMethod):
    """IMTL-G on the shared parameters; the update is Σ α_k g_k with Σ α_k = 1."""

    name = "imtl_g"

    def weights_from_gramian(self, gramian: torch.Tensor, losses: torch.Tensor) -> GramianWeights:
        return GramianWeights(shared=imtl_g_weights(gramian))
