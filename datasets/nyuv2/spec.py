"""NYUv2 task spec: 13-class segmentation, depth and surface normals at 288×384.

Data: the MTAN ``.npy`` release (795 train, 654 test images; ``val`` is the test split).
STL baselines are single-task SegNet results. "Continual Optimization with Symmetry
Teleportation for Multi-Task Learning" (Zhou et al., 2025, Table 2) prints them rounded
(abs_err 0.68, rel_err 0.28); its Δm% values follow from the unrounded constants below.
"""
from __future__ import annotations

from datasets.base import Metric
from datasets.dense.benchmark import DenseBenchmark

NUM_CLASSES = 13

NYUV2_METRICS = (
    Metric("miou", task="segmentation", unit="fraction", higher_is_better=True, stl=0.3830),
    Metric("pixacc", task="segmentation", unit="fraction", higher_is_better=True, stl=0.6376),
    Metric("abs_err", task="depth", unit="m", higher_is_better=False, stl=0.6754),
    Metric("rel_err", task="depth", unit="ratio", higher_is_better=False, stl=0.2780),
    Metric("angle_mean", task="normal", unit="degree", higher_is_better=False, stl=25.01),
    Metric("angle_median", task="normal", unit="degree", higher_is_better=False, stl=19.21),
    Metric("within_11_25", task="normal", unit="fraction", higher_is_better=True, stl=0.3014),
    Metric("within_22_5", task="normal", unit="fraction", higher_is_better=True, stl=0.5720),
    Metric("within_30", task="normal", unit="fraction", higher_is_better=True, stl=0.6915),
)


class NYUv2Benchmark(DenseBenchmark):
    name = "nyuv2"
    task_channels = {"segmentation": NUM_CLASSES, "depth": 1, "normal": 3}
    task_folders = {"segmentation": "label", "depth": "depth", "normal": "normal"}
    metric_declarations = NYUV2_METRICS
    download_command = "python -m datasets.nyuv2.download --root <data_root>"
