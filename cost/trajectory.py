"""Historical trajectory reuse (HTR): what Adam keeps of its moments after a teleport.

From "Continual Optimization with Symmetry Teleportation for Multi-Task Learning" (Zhou
et al., NeurIPS 2025). With σ = cos(g', ΔΘ), where g' is the last shared gradient the base
method applied and ΔΘ the teleport displacement of the shared parameters:

* σ > 0: the next optimiser step uses betas (σ·β1, σ·β2), i.e.
  m ← σβ1·m + (1 − σβ1)·g and v ← σβ2·v + (1 − σβ2)·g², and the betas are restored after
  that step;
* σ ≤ 0: the Adam state (moments and step count) of the moved parameters is discarded.

The released Cityscapes trainer restores the betas before the step, so there σ > 0 has no
effect, and σ ≤ 0 rebuilds the optimiser (every parameter's state is lost). Mode
``released`` reproduces that.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

SCALE_BETAS = "scale_betas"
RESET_STATE = "reset_state"
NO_ACTION = "none"
NO_REFERENCE = "skipped_no_reference"


def displacement_cosine(reference: torch.Tensor | None, displacement: torch.Tensor) -> float:
    """Return σ = cos(reference, ΔΘ); NaN when either vector is missing or zero."""
    if reference is None:
        return float("nan")
    reference = reference.detach().double().flatten()
    displacement = displacement.detach().double().flatten()
    norms = reference.norm() * displacement.norm()
    if norms <= 0:
        return float("nan")
    return float(reference @ displacement / norms)


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Return every parameter of ``optimizer`` in group order (the index space of its state_dict)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


@dataclass
class _Split:
    """A param group from which some parameters were moved into a temporary group for one step."""

    group: dict[str, Any]
    params: list[torch.Tensor]
    temporary: dict[str, Any] | None
    betas: tuple[float, float]


@dataclass
class TrajectoryReuse:
    """Plan the HTR action after a teleport and apply it around the next optimiser step.

    ``mode``: ``on`` (the paper), ``off`` (plain Adam continues), ``released``.
    ``scope``: ``moved`` acts on the parameters the teleport moved. ``all`` acts on every
    parameter of the optimiser, as the released code does, because it rebuilds the
    optimiser and sets the betas of its first param group, which contains the whole model.
    """

    mode: str = "on"
    scope: str = "moved"
    pending_action: str | None = None
    pending_sigma: float | None = None
    pending_indices: list[int] = field(default_factory=list)
    _splits: list[_Split] = field(default_factory=list)

    def plan(self, sigma: float, moved: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer) -> str:
        """Choose the action for σ and remember it for the next step; return its name."""
        if self.mode == "off":
            return NO_ACTION
        if math.isnan(sigma):
            return NO_REFERENCE
        scope_all = self.scope == "all" or self.mode == "released"
        params = optimizer_params(optimizer)
        if scope_all:
            indices = list(range(len(params)))
        else:
            position = {id(p): i for i, p in enumerate(params)}
            indices = [position[id(p)] for p in moved if id(p) in position]
        if sigma > 0:
            if self.mode == "released":
                return NO_ACTION
            action = SCALE_BETAS
        else:
            action = RESET_STATE
        self.pending_action = action
        self.pending_sigma = sigma
        self.pending_indices = indices
        return action

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Apply the pending action: drop Adam state, or scale the betas for this step."""
        if self.pending_action is None:
            return
        params = optimizer_params(optimizer)
        targets = [params[i] for i in self.pending_indices]
        if self.pending_action == RESET_STATE:
            for param in targets:
                optimizer.state.pop(param, None)
            self._clear_pending()
            return
        self._scale_betas(optimizer, targets, float(self.pending_sigma))

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Restore the betas and param groups changed by :meth:`before_step`."""
        if not self._splits:
            return
        for split in self._splits:
            if split.temporary is not None:
                optimizer.param_groups[:] = [g for g in optimizer.param_groups if g is not split.temporary]
            split.group["params"] = split.params
            split.group["betas"] = split.betas
        self._splits = []
        self._clear_pending()

    def _scale_betas(self, optimizer: torch.optim.Optimizer, targets: Sequence[torch.Tensor], sigma: float) -> None:
        # torch Adam has one pair of betas per param group. Moved parameters that share a
        # group with unmoved ones go to a temporary group for this one step. The original
        # group and its parameter order come back in after_step.
        target_ids = {id(p) for p in targets}
        for group in list(optimizer.param_groups):
            inside = [p for p in group["params"] if id(p) in target_ids]
            if not inside:
                continue
            beta1, beta2 = group["betas"]
            scaled = (sigma * beta1, sigma * beta2)
            split = _Split(group=group, params=list(group["params"]), temporary=None, betas=(beta1, beta2))
            if len(inside) == len(group["params"]):
                group["betas"] = scaled
            else:
                temporary = {key: value for key, value in group.items() if key != "params"}
                temporary["params"] = inside
                temporary["betas"] = scaled
                group["params"] = [p for p in group["params"] if id(p) not in target_ids]
                optimizer.param_groups.append(temporary)
                split.temporary = temporary
            self._splits.append(split)

    def _clear_pending(self) -> None:
        self.pending_action = None
        self.pending_sigma = None
        self.pending_indices = []

    def state_dict(self) -> dict[str, Any]:
        return {"action": self.pending_action, "sigma": self.pending_sigma, "indices": list(self.pending_indices)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pending_action = state.get("action")
        self.pending_sigma = state.get("sigma")
        self.pending_indices = list(state.get("indices", []))
