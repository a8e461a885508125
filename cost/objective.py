"""The teleport objective: keep every task loss, make the gradients larger and more even.

"Continual Optimization with Symmetry Teleportation for Multi-Task Learning" (Zhou et al.,
NeurIPS 2025) minimises, over the adapter ΔΘ only,

    invariance_weight · L_t − γ · L_g,
    L_t = (1/K) Σ_k |L_k(θ + ΔΘ) − L_k*|                                  (loss invariance)
    L_g = (1/K) Σ_k max_{s=1..n} R_k · (L_k(θ' + ε_s) − L_k(θ')) / δ       (sharpness)

with θ' = θ + ΔΘ, random directions ε_s of norm δ per parameter tensor, and
R_k = K · (1 − ‖g_k‖ / Σ_j ‖g_j‖), so that tasks with small gradients weigh more. The
sharpness term replaces the gradient norm, so no Hessian-vector product is needed. The paper
uses invariance_weight 1 and γ = 0.1; the released code uses 10 and 0.5.

The pure functions below act on loss tensors; :class:`TeleportObjective` does the
autograd plumbing (``torch.func.functional_call`` on θ' + ε, so that the perturbed losses
stay differentiable with respect to the adapter).

Differentiating the whole objective at once keeps n + 2 forward graphs alive, which does
not fit in memory for SegNet-MTAN at full resolution. :meth:`TeleportObjective.gradients`
with ``backward="sequential"`` gives the same gradient with one graph alive at a time: the
max over directions selects one direction per task, so L_g is a sum of single forward
passes that can be differentiated one after the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from cost.config import OBJECTIVE_BACKWARDS


def loss_invariance(losses: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Return L_t = mean_k |L_k − L_k*|."""
    return (losses - reference).abs().mean()


def sharpness_weights(task_gradient_norms: torch.Tensor) -> torch.Tensor:
    """Return R_k = K · (1 − ‖g_k‖ / Σ_j ‖g_j‖); all ones when every gradient is zero."""
    norms = task_gradient_norms.double()
    total = norms.sum()
    num_tasks = norms.numel()
    if total <= 0:
        return torch.ones(num_tasks, dtype=torch.float64)
    return num_tasks * (1.0 - norms / total)


def sharpness(perturbed: torch.Tensor, unperturbed: torch.Tensor, weights: torch.Tensor, delta: float,
              absolute: bool = False) -> torch.Tensor:
    """Return L_g = mean_k max_s R_k · (L_k(θ' + ε_s) − L_k(θ')) / δ.

    ``perturbed`` is n × K, ``unperturbed`` has K entries. ``absolute`` takes
    |L_k(θ' + ε_s) − L_k(θ')| instead, as the released code does.
    """
    rise = perturbed - unperturbed.unsqueeze(0)
    if absolute:
        rise = rise.abs()
    weighted = weights.to(rise.dtype).unsqueeze(0) * rise / delta
    return weighted.max(dim=0).values.mean()


def random_directions(params: Sequence[torch.Tensor], delta: float, generator: torch.Generator) -> list[torch.Tensor]:
    """Draw one Gaussian direction per tensor, each rescaled to norm ``delta``."""
    directions = []
    for param in params:
        noise = torch.randn(param.shape, generator=generator, device=param.device, dtype=param.dtype)
        directions.append(noise * (delta / noise.norm().clamp_min(1e-30)))
    return directions


class TaskLossModule(nn.Module):
    """Wrap a model so that ``torch.func.functional_call`` can evaluate the K task losses.

    The benchmark decides how a batch enters the model; this wrapper exposes that as one
    ``forward(batch)`` whose parameter names are the model's, prefixed by ``model.``.
    """

    def __init__(self, model: nn.Module, losses_of: Callable[[nn.Module, Any], torch.Tensor]):
        super().__init__()
        self.model = model
        self._losses_of = losses_of

    def forward(self, batch: Any) -> torch.Tensor:
        return self._losses_of(self.model, batch)


@dataclass
class ObjectiveValue:
    """One evaluation of the teleport objective (``total`` carries the autograd graph)."""

    total: torch.Tensor
    invariance: float
    sharpness: float
    losses: torch.Tensor


class TeleportObjective:
    """Evaluate invariance_weight · L_t − γ · L_g for the adapter currently in ``model``.

    ``perturbed_params`` are the tensors that receive the random directions ε_s (the
    shared parameters, or all parameters for the released behaviour). ``sharpness_grad``
    ``functional`` keeps the perturbed losses differentiable with respect to the adapter.
    ``copy`` evaluates them without gradient, as the released code's deep copies do, so
    only L_k(θ') carries gradient.
    """

    def __init__(self, model: nn.Module, losses_of: Callable[[nn.Module, Any], torch.Tensor],
                 reference: torch.Tensor, weights: torch.Tensor, perturbed_params: Sequence[torch.Tensor],
                 generator: torch.Generator, invariance_weight: float = 1.0, gamma: float = 0.1,
                 delta: float = 1e-4, directions: int = 5, sharpness_grad: str = "functional",
                 absolute: bool = False, backward: str = "sequential"):
        if backward not in OBJECTIVE_BACKWARDS:
            raise ValueError(f"backward={backward!r} is invalid; use one of {', '.join(OBJECTIVE_BACKWARDS)}")
        self.module = TaskLossModule(model, losses_of)
        self.reference = reference.detach()
        self.weights = weights.detach()
        target_ids = {id(p) for p in perturbed_params}
        # Names are read after the adapter is injected, so adapted weights appear under
        # their PEFT names (``<layer>.base_layer.weight``); adapter tensors are never perturbed.
        self.perturbed = [(name, p) for name, p in self.module.named_parameters() if id(p) in target_ids]
        if len(self.perturbed) != len(target_ids):
            raise ValueError(f"only {len(self.perturbed)} of {len(target_ids)} parameters to perturb were found in "
                             f"{type(model).__name__}; pass parameters of that model")
        self.generator = generator
        self.invariance_weight = invariance_weight
        self.gamma = gamma
        self.delta = delta
        self.directions = directions
        self.sharpness_grad = sharpness_grad
        self.absolute = absolute
        self.backward = backward

    def _draw_perturbed_point(self) -> dict[str, torch.Tensor]:
        """Return the perturbed tensors θ' + ε by name, for the next random direction ε."""
        steps = random_directions([p for _, p in self.perturbed], self.delta, self.generator)
        return {name: p.detach() + step for (name, p), step in zip(self.perturbed, steps)}

    def perturbed_losses(self, batch: Any) -> torch.Tensor:
        """Return the n × K losses L_k(θ' + ε_s) for fresh random directions."""
        rows = []
        for _ in range(self.directions):
            moved = self._draw_perturbed_point()
            if self.sharpness_grad == "copy":
                with torch.no_grad():
                    rows.append(torch.func.functional_call(self.module, moved, (batch,)))
            else:
                rows.append(torch.func.functional_call(self.module, moved, (batch,)))
        return torch.stack(rows)

    def sharpness_term(self, conflict_batch: Any) -> torch.Tensor:
        """Return L_g on the batch whose gradients conflicted."""
        unperturbed = self.module(conflict_batch)
        return sharpness(self.perturbed_losses(conflict_batch), unperturbed, self.weights, self.delta, self.absolute)

    def __call__(self, batch: Any, conflict_batch: Any) -> ObjectiveValue:
        losses = self.module(batch)
        invariance = loss_invariance(losses, self.reference.to(losses.dtype))
        sharp = self.sharpness_term(conflict_batch) if self.gamma else losses.new_zeros(())
        total = self.invariance_weight * invariance - self.gamma * sharp
        return ObjectiveValue(total=total, invariance=float(invariance.detach()), sharpness=float(sharp.detach()),
                              losses=losses.detach())

    def gradients(self, batch: Any, conflict_batch: Any,
                  params: Sequence[torch.Tensor]) -> tuple[ObjectiveValue, list[torch.Tensor | None]]:
        """Return the objective (``total`` detached) and its gradient with respect to ``params``.

        ``joint`` differentiates :meth:`__call__`. ``sequential`` picks, per task k, the
        direction s_k that attains the max in L_g from losses evaluated without a graph.
        With s_k fixed, L_g = (1/K) Σ_k c_k (L_k(θ' + ε_{s_k}) − L_k(θ')), where
        c_k = R_k / δ, times the sign of the difference when ``absolute``. Its gradient
        then needs one backward pass on ``conflict_batch`` at θ' and, with
        ``sharpness_grad="functional"``, one per distinct s_k. Together with the pass on
        ``batch`` for L_t, they accumulate the same gradient as ``joint``. The directions
        are drawn again from the generator state saved before the first draw, so the
        generator ends where ``joint`` leaves it.
        """
        params = list(params)
        if self.backward == "joint":
            value = self(batch, conflict_batch)
            grads = torch.autograd.grad(value.total, params, allow_unused=True)
            return ObjectiveValue(value.total.detach(), value.invariance, value.sharpness, value.losses), list(grads)

        grads: list[torch.Tensor | None] = [None] * len(params)

        def accumulate(scalar: torch.Tensor) -> None:
            for index, grad in enumerate(torch.autograd.grad(scalar, params, allow_unused=True)):
                if grad is not None:
                    grads[index] = grad if grads[index] is None else grads[index] + grad

        losses = self.module(batch)
        invariance = loss_invariance(losses, self.reference.to(losses.dtype))
        accumulate(self.invariance_weight * invariance)
        invariance, losses = invariance.detach(), losses.detach()
        sharp = losses.new_zeros(())
        if self.gamma:
            # Only this graph stays alive while the perturbed losses are evaluated without one.
            unperturbed = self.module(conflict_batch)
            state = self.generator.get_state()
            with torch.no_grad():
                perturbed = self.perturbed_losses(conflict_batch)
            sharp = sharpness(perturbed, unperturbed.detach(), self.weights, self.delta, self.absolute)
            rise = perturbed - unperturbed.detach().unsqueeze(0)
            weights = self.weights.to(rise.dtype)
            chosen = ((rise.abs() if self.absolute else rise) * weights.unsqueeze(0)).argmax(dim=0)
            picked = rise.gather(0, chosen.unsqueeze(0)).squeeze(0)
            sign = picked.sign() if self.absolute else torch.ones_like(picked)
            # −γ L_g = Σ_k coefficient_k (L_k(θ' + ε_{s_k}) − L_k(θ')) with the s_k fixed.
            coefficient = -self.gamma * weights * sign / (self.delta * len(picked))
            accumulate(-(coefficient * unperturbed).sum())
            self.generator.set_state(state)
            for direction in range(self.directions):
                moved = self._draw_perturbed_point()
                tasks = chosen == direction
                if self.sharpness_grad == "functional" and bool(tasks.any()):
                    moved_losses = torch.func.functional_call(self.module, moved, (conflict_batch,))
                    accumulate((coefficient * tasks.to(coefficient.dtype) * moved_losses).sum())
        total = self.invariance_weight * invariance - self.gamma * sharp
        return ObjectiveValue(total=total, invariance=float(invariance), sharpness=float(sharp), losses=losses), grads
