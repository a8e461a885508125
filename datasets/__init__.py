"""Benchmark datasets: one subpackage each, holding loader, model, metrics and task spec.

NOTE: this top-level package shadows Hugging Face's ``datasets`` inside the same
environment; the suite runs in its own virtual environment for that reason.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from datasets.base import Benchmark, Metric

# Dataset name -> "module:class". Imported lazily so that a dataset's heavy dependencies
# (RDKit, PyG) load only when that dataset runs.
REGISTRY: dict[str, str] = {
    "qm9": "datasets.qm9.spec:QM9Benchmark",
    "nyuv2": "datasets.nyuv2.spec:NYUv2Benchmark",
    "cityscapes": "datasets.cityscapes.spec:CityscapesBenchmark",
    "celeba": "datasets.celeba.spec:CelebABenchmark",
    "toy": "datasets.toy.spec:ToyBenchmark",
}


def build_benchmark(name: str, cfg: Mapping[str, Any]) -> Benchmark:
    """Instantiate the benchmark registered under ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(cfg)


__all__ = ["Benchmark", "Metric", "REGISTRY", "build_benchmark"]
