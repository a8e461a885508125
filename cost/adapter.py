"""The low-rank adapter ΔΘ that a teleport learns, injected into and merged back into the model in place.

"Continual Optimization with Symmetry Teleportation for Multi-Task Learning" (Zhou et al.,
NeurIPS 2025) learns the teleport as a LoRA update of the shared layers and merges it, so
the model keeps its size and inference cost. Here Hugging Face PEFT injects the adapter
into the live model (``inject_adapter_in_model``). Each adapted layer is merged with its
own ``merge()``, which adds ΔW to the base weight tensor in place, and is then replaced by
its base layer. The parameter objects that the main optimiser references therefore stay the
same, and no adapter module, parameter or PEFT attribute remains after :meth:`merge`.

Adapter ``full`` is this suite's addition for models without PEFT-compatible layers, such
as the 2-D toy problem, whose only parameter is a point. It is a dense ΔΘ on each target
parameter, attached with ``torch.nn.utils.parametrize``. Merging calls
``remove_parametrizations``, which also keeps the parameter object.
"""
from __future__ import annotations

import logging
from typing import Sequence

import peft
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from torch.nn.utils import parametrize

log = logging.getLogger(__name__)


def adapter_config(kind: str, targets: Sequence[str], rank: int, alpha: float, dropout: float) -> peft.PeftConfig:
    """Build the PEFT config of one adapter type; each starts at ΔΘ = 0.

    ``lora`` keeps PEFT's defaults besides rank, alpha and dropout (B initialised to zero).
    ``loha`` and ``lokr`` use PEFT's default initialisation, which also gives ΔW = 0.
    ``oft`` uses ``rank`` blocks (``oft_block_size=0``) and starts at the identity rotation.
    """
    targets = list(targets)
    if kind == "lora":
        return peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    if kind == "loha":
        return peft.LoHaConfig(r=rank, alpha=alpha, rank_dropout=dropout, target_modules=targets)
    if kind == "lokr":
        return peft.LoKrConfig(r=rank, alpha=alpha, rank_dropout=dropout, target_modules=targets)
    if kind == "oft":
        return peft.OFTConfig(r=rank, oft_block_size=0, module_dropout=dropout, target_modules=targets)
    raise ValueError(f"unknown PEFT adapter type {kind!r}; use lora, loha, lokr or oft (or full)")


class AdditiveDelta(nn.Module):
    """Parametrisation θ ↦ θ + ΔΘ with a dense ΔΘ that starts at zero (adapter ``full``)."""

    def __init__(self, param: torch.Tensor):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros_like(param))

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value + self.delta


def _owner(model: nn.Module, target: str) -> tuple[nn.Module, str]:
    module_name, _, param_name = target.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if not isinstance(getattr(module, param_name, None), nn.Parameter):
        raise ValueError(f"adapter 'full' target {target!r} is not a parameter of {type(model).__name__}; "
                         "name parameters such as 'lin0.weight' in cost.targets")
    return module, param_name


class TeleportAdapter:
    """A fresh adapter on the target modules of ``model``, alive until :meth:`merge` or :meth:`remove`.

    ``targets`` are module names for the PEFT types and parameter names for ``full``.
    While attached, the base parameters are frozen (``requires_grad=False``) and only
    :attr:`parameters` are trainable. Merging or removing restores every parameter's
    ``requires_grad`` flag as it was before attaching.
    """

    def __init__(self, model: nn.Module, targets: Sequence[str], kind: str = "lora", rank: int = 5,
                 alpha: float = 8.0, dropout: float = 0.0):
        if not targets:
            raise ValueError(f"{type(model).__name__} declares no adapter target modules; a teleport needs at least one")
        self.model = model
        self.kind = kind
        self._requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        if kind == "full":
            self.layers = [(target, _owner(model, target)) for target in targets]
            self.target_weights = [getattr(module, name) for _, (module, name) in self.layers]
            for _, (module, name) in self.layers:
                parametrize.register_parametrization(module, name, AdditiveDelta(getattr(module, name)))
            for param in model.parameters():
                param.requires_grad_(False)
            self.parameters = [module.parametrizations[name][0].delta for _, (module, name) in self.layers]
            for param in self.parameters:
                param.requires_grad_(True)
        else:
            config = adapter_config(kind, targets, rank, alpha, dropout)
            peft.inject_adapter_in_model(config, model)
            self.layers = [(name, module) for name, module in model.named_modules()
                           if isinstance(module, BaseTunerLayer)]
            self.parameters = [p for name, p in model.named_parameters() if p.requires_grad]
            self.target_weights = [module.get_base_layer().weight for _, module in self.layers]
        self.active = True
        log.debug("adapter %s on %s: %d trainable tensors", kind, [name for name, _ in self.layers],
                  len(self.parameters))

    def merge(self) -> None:
        """Add ΔW into each base weight in place, then put the base layers back."""
        self._unload(merge=True)

    def remove(self) -> None:
        """Drop the adapter without changing the base weights (used when a teleport fails)."""
        self._unload(merge=False)

    def _unload(self, merge: bool) -> None:
        if not self.active:
            return
        if self.kind == "full":
            for _, (module, name) in self.layers:
                parametrize.remove_parametrizations(module, name, leave_parametrized=merge)
        else:
            for name, layer in self.layers:
                if merge:
                    layer.merge()
                parent_name, _, child_name = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child_name, layer.get_base_layer())
            if hasattr(self.model, "peft_config"):
                del self.model.peft_config
        for name, param in self.model.named_parameters():
            param.requires_grad_(self._requires_grad[name])
        self.layers = []
        self.parameters = []
        self.active = False


def leftover_adapter_names(model: nn.Module) -> list[str]:
    """Name every PEFT module, parameter or attribute still in ``model`` (empty after a merge)."""
    found = [name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    found += [name for name, _ in model.named_parameters()
              if any(tag in name for tag in ("lora_", "hada_", "lokr_", "oft_", "base_layer", "parametrizations."))]
    if hasattr(model, "peft_config"):
        found.append("peft_config")
    return found


@torch.no_grad()
def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Copy parameter values (to measure the teleport displacement ΔΘ afterwards)."""
    return [p.detach().clone() for p in params]
