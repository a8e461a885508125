"""QM9 task spec: 11 regression targets, per-task MSE on standardised targets, MAE metrics."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch_geometric.loader import DataLoader

from datasets.base import Benchmark, Metric, MetricAccumulator, Splits
from datasets.loading import EpochSeededLoader
from datasets.qm9.data import MEV_TARGETS, QM9Split, TargetScaler, all_targets, split_indices
from datasets.qm9.model import QM9MPNN

# PyG column -> (task name, unit of the reported MAE, STL MAE baseline).
TARGET_INFO: dict[int, tuple[str, str, float]] = {
    0: ("mu", "D", 0.0671),
    1: ("alpha", "a0^3", 0.1814),
    2: ("homo", "meV", 60.576),
    3: ("lumo", "meV", 53.915),
    5: ("r2", "a0^2", 0.5027),
    6: ("zpve", "meV", 4.539),
    12: ("u0", "meV", 58.838),
    13: ("u", "meV", 64.244),
    14: ("h", "meV", 63.852),
    15: ("g", "meV", 66.223),
    11: ("cv", "cal/(mol K)", 0.07212),
}


class MAEAccumulator(MetricAccumulator):
    """Mean absolute error per target in original units (meV for the seven energies)."""

    def __init__(self, benchmark: "QM9Benchmark"):
        self.benchmark = benchmark
        self.abs_sum = torch.zeros(len(benchmark.tasks), dtype=torch.float64)
        self.count = 0

    def update(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> None:
        prediction = torch.stack([outputs[t] for t in self.benchmark.tasks], dim=1)
        prediction = self.benchmark.scaler.inverse(prediction.detach())
        error = (prediction - batch.y_raw).abs().double().sum(dim=0).cpu()
        self.abs_sum += error * self.benchmark.unit_factor
        self.count += batch.y_raw.size(0)

    def compute(self) -> dict[str, float]:
        mae = self.abs_sum / max(self.count, 1)
        return {name: float(value) for name, value in zip(self.benchmark.tasks, mae)}


class QM9Benchmark(Benchmark):
    name = "qm9"
    selection = "best_val_delta_m"
    scheduler_monitor = "val_delta_m"

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        self.target_columns = [int(c) for c in cfg["targets"]]
        unknown = [c for c in self.target_columns if c not in TARGET_INFO]
        if unknown:
            raise ValueError(f"dataset.targets has columns without metric declarations: {unknown}; "
                             f"declared: {sorted(TARGET_INFO)}")
        self.tasks = [TARGET_INFO[c][0] for c in self.target_columns]
        self.metrics = [Metric(name, task=name, unit=unit, higher_is_better=False, stl=stl)
                        for name, unit, stl in (TARGET_INFO[c] for c in self.target_columns)]
        self.unit_factor = torch.tensor([1000.0 if c in MEV_TARGETS else 1.0 for c in self.target_columns],
                                        dtype=torch.float64)
        self.scaler: TargetScaler | None = None
        self.graphs = None

    def load_graphs(self):
        from pathlib import Path

        from datasets.qm9.graphs import load_qm9_graphs

        if self.graphs is None:
            source = self.cfg.get("source", "qm9pack")
            options = {"features": self.cfg.get("features", "pyg")} if source == "qm9pack" else {}
            self.graphs = load_qm9_graphs(Path(self.cfg["root"]), source=source, subset=self.cfg.get("subset"),
                                          subset_seed=self.cfg.get("subset_seed", 0), **options)
        return self.graphs

    def build_splits(self, seed: int) -> Splits:
        graphs = self.load_graphs()
        split = self.cfg["split"]
        indices = split_indices(len(graphs), int(split["test"]), int(split["val"]), seed)
        targets = all_targets(graphs)[:, self.target_columns].float()
        self.scaler = TargetScaler.fit(targets[indices["train"]])
        datasets = {name: QM9Split(graphs, idx, self.target_columns, self.scaler) for name, idx in indices.items()}
        batch_size = int(self.cfg["batch_size"])
        workers = int(self.cfg.get("num_workers", 0))
        train = EpochSeededLoader(datasets["train"], batch_size, seed, loader_cls=DataLoader, num_workers=workers)
        return Splits(
            train=train,
            val=DataLoader(datasets["val"], batch_size=batch_size, shuffle=False, num_workers=workers),
            test=DataLoader(datasets["test"], batch_size=batch_size, shuffle=False, num_workers=workers),
            info={name: len(ds) for name, ds in datasets.items()},
        )

    def build_model(self) -> QM9MPNN:
        model_cfg = self.cfg.get("model", {}) or {}
        return QM9MPNN(self.tasks, hidden=int(model_cfg.get("hidden", 64)),
                       message_passing_steps=int(model_cfg.get("message_passing_steps", 3)),
                       set2set_steps=int(model_cfg.get("set2set_steps", 3)))

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch.to(device)

    def forward(self, model, batch):
        return model(batch)

    def batch_size_of(self, batch: Any) -> int:
        return int(batch.num_graphs)

    def task_losses(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> torch.Tensor:
        return torch.stack([torch.nn.functional.mse_loss(outputs[t], batch.y[:, k]) for k, t in enumerate(self.tasks)])

    def new_accumulator(self) -> MAEAccumulator:
        return MAEAccumulator(self)

    def scheduler(self, optimizer):
        sched = self.cfg["scheduler"]
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=float(sched["factor"]),
                                                          patience=int(sched["patience"]),
                                                          min_lr=float(sched["min_lr"]))

