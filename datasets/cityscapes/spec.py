"""Cityscapes task spec: 7-class segmentation and inverse depth at 128×256.

Data: the MTAN ``.npy`` release (2,975 train, 500 test images; ``val`` is the test split),
or the official release converted by ``python -m datasets.cityscapes.prepare``. The 7
classes are the Cityscapes categories flat, construction, object, nature, sky, human and
vehicle. Depth is inverse depth, so its relative error is about 27 and not a percentage.
STL baselines are the single-task SegNet results of "Continual Optimization with Symmetry
Teleportation for Multi-Task Learning" (Zhou et al., 2025, Table 1).
"""
from __future__ import annotations

from datasets.base import Metric
from datasets.dense.benchmark import DenseBenchmark

NUM_CLASSES = 7

CITYSCAPES_METRICS = (
    Metric("miou", task="segmentation", unit="fraction", higher_is_better=True, stl=0.7401),
    Metric("pixacc", task="segmentation", unit="fraction", higher_is_better=True, stl=0.9316),
    Metric("abs_err", task="depth", unit="inverse depth", higher_is_better=False, stl=0.0125),
    Metric("rel_err", task="depth", unit="ratio", higher_is_better=False, stl=27.77),
)


class CityscapesBenchmark(DenseBenchmark):
    name = "cityscapes"
    task_channels = {"segmentation": NUM_CLASSES, "depth": 1}
    task_folders = {"segmentation": "label_7", "depth": "depth"}
    metric_declarations = CITYSCAPES_METRICS
    download_command = "python -m datasets.cityscapes.download --root <data_root>"
