"""Per-task gradients of the shared parameters from one forward pass."""
from __future__ import annotations

import logging
from typing import Sequence

import torch

log = logging.getLogger(__name__)


def flatten_grads(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-parameter gradients (None → zeros) into one vector per leading row."""
    parts = []
    for grad, param in zip(grads, params):
        if grad is None:
            grad = torch.zeros_like(param)
        parts.append(grad.reshape(*grad.shape[: grad.dim() - param.dim()], -1))
    return torch.cat(parts, dim=-1)


def write_flat_grad(flat: torch.Tensor, params: Sequence[torch.Tensor], accumulate: bool = False) -> None:
    """Copy a flattened gradient back into the ``.grad`` of each parameter."""
    offset = 0
    for param in params:
        count = param.numel()
        piece = flat[offset : offset + count].view_as(param).to(param.dtype)
        if accumulate and param.grad is not None:
            param.grad.add_(piece)
        else:
            param.grad = piece.clone()
        offset += count
    if offset != flat.numel():
        raise ValueError(f"gradient has {flat.numel()} entries but the parameters hold {offset}")


class JacobianComputer:
    """Compute the K × n Jacobian of the task losses with respect to the shared parameters.

    The batched path back-propagates ``chunk_size`` unit vectors at a time
    (``torch.autograd.grad(..., is_grads_batched=True)``, i.e. vmap over the backward
    pass) through the single graph of one forward pass. Memory grows with the chunk size,
    because every intermediate gradient gets a leading dimension of that size, so a chunk
    smaller than K bounds the peak on models with large activations (QM9's edge network,
    CelebA's 40 tasks). Models whose backward cannot be vmapped fall back, once and with a
    log line, to a loop of K backward passes through the same graph. The graph is kept
    (``retain_graph=True``) so that the caller can still back-propagate into the
    task-specific parameters.
    """

    def __init__(self, batched: bool = True, chunk_size: int | None = 4):
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"jacobian chunk_size must be a positive number of tasks or None, got {chunk_size}")
        self.batched = batched
        self.chunk_size = chunk_size

    def __call__(self, losses: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        num_tasks = losses.numel()
        if self.batched:
            try:
                eye = torch.eye(num_tasks, dtype=losses.dtype, device=losses.device)
                step = self.chunk_size or num_tasks
                rows = []
                for start in range(0, num_tasks, step):
                    grads = torch.autograd.grad(
                        losses, params, grad_outputs=eye[start : start + step], is_grads_batched=True,
                        retain_graph=True, allow_unused=True,
                    )
                    rows.append(flatten_grads(grads, params))
                return torch.cat(rows)
            except RuntimeError as error:
                log.info("batched Jacobian unavailable for this model (%s); using a loop of %d backward passes",
                         str(error).splitlines()[0], num_tasks)
                self.batched = False
        rows = []
        for k in range(num_tasks):
            grads = torch.autograd.grad(losses[k], params, retain_graph=True, allow_unused=True)
            rows.append(flatten_grads(grads, params))
        return torch.stack(rows)
