"""COST: symmetry teleportation with trajectory reuse, as a layer around any MTL method.

"Continual Optimization with Symmetry Teleportation for Multi-Task Learning" (Zhou et al.,
NeurIPS 2025). Modules: :mod:`cost.trigger` (when to teleport), :mod:`cost.adapter` (the
PEFT adapter that carries the move), :mod:`cost.objective` (loss invariance and
sharpness), :mod:`cost.teleport` (one teleport), :mod:`cost.trajectory` (Adam history
after a teleport), :mod:`cost.layer` (the trainer hooks).
"""
from __future__ import annotations

from typing import Any, Mapping

from cost.config import CostConfig
from cost.layer import RECORD_TABLE, CostLayer


def build_cost_layer(cfg: Mapping[str, Any]) -> CostLayer:
    """Build the layer from the ``cost`` config group (a plain dict); unknown keys raise."""
    return CostLayer(CostConfig.from_dict(cfg))


__all__ = ["CostConfig", "CostLayer", "RECORD_TABLE", "build_cost_layer"]
