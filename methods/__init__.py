"""MTL methods behind one interface (:class:`methods.base.Method`) and one registry."""
from __future__ import annotations

import importlib
from typing import Any

from methods.base import Aggregation, Method

# Method name -> "module:class", imported on first use.
REGISTRY: dict[str, str] = {
    # Loss weighting: one backward pass of a weighted loss, no per-task gradients.
    "ls": "methods.ls:LinearScalarization",
    "si": "methods.weighting:ScaleInvariantLS",
    "rlw": "methods.weighting:RandomLossWeighting",
    "dwa": "methods.dwa:DynamicWeightAverage",
    "uw": "methods.uw:UncertaintyWeighting",
    "famo": "methods.famo:FAMO",
    "stl": "methods.weighting:SingleTask",
    # Gradient methods: combine the per-task gradients of the shared parameters.
    "mgda": "methods.mgda:MGDA",
    "graddrop": "methods.graddrop:GradDrop",
    "pcgrad": "methods.pcgrad:PCGrad",
    "cagrad": "methods.cagrad:CAGrad",
    "imtl_g": "methods.imtl:IMTLG",
    "nashmtl": "methods.nash_mtl:NashMTL",
    "fairgrad": "methods.fairgrad:FairGrad",
}


def build_method(name: str, num_tasks: int, device: Any = "cpu", **hparams: Any) -> Method:
    """Instantiate the method registered under ``name`` with its hyperparameters."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid names: {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(num_tasks=num_tasks, device=device, **hparams)


__all__ = ["Aggregation", "Method", "REGISTRY", "build_method"]
