"""Task losses of the dense-prediction benchmarks, as in the MTAN, CAGrad and Nash-MTL code.

Invalid pixels carry no loss: label −1 (segmentation), depth 0, an all-zero normal vector.
Every loss divides by the number of valid pixels in the batch. A batch without valid pixels
gets loss 0 with a zero gradient, where the reference code divides by zero.

NOTE: the Nash-MTL reference code marks a pixel valid when the sum of its target channels
is not 0, so it also drops a valid normal whose components sum to exactly 0. Here a pixel
is valid when any channel is not 0.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE_INDEX = -1


def valid_pixel_mask(target: torch.Tensor) -> torch.Tensor:
    """Return an N×1×H×W boolean mask of pixels whose target vector is not all zeros."""
    return (target != 0).any(dim=1, keepdim=True)


def segmentation_loss(log_probabilities: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of N×C×H×W log-probabilities; label N×H×W, −1 ignored."""
    if not (label != IGNORE_INDEX).any():
        return log_probabilities.sum() * 0.0
    return F.nll_loss(log_probabilities, label, ignore_index=IGNORE_INDEX)


def depth_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 error averaged over valid pixels (target ≠ 0); N×1×H×W tensors."""
    mask = valid_pixel_mask(target)
    count = mask.sum().clamp_min(1)
    return ((prediction - target).abs() * mask).sum() / count


def normal_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − mean dot product of unit normals over valid pixels (target not all zeros); N×3×H×W."""
    mask = valid_pixel_mask(target)
    count = mask.sum().clamp_min(1)
    return 1.0 - ((prediction * target).sum(dim=1, keepdim=True) * mask).sum() / count
