"""The shared trainer on a tiny two-task regression benchmark."""
from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from benchmarks.trainer import CHECKPOINT, EPOCHS, SUMMARY, NonFiniteLossError, TrainConfig, Trainer
from datasets.base import Benchmark, Metric, MetricAccumulator, MTLModel, Splits
from datasets.loading import EpochSeededLoader
from methods.base import Aggregation, Method
from methods.jacobian import JacobianComputer
from methods.ls import LinearScalarization


class TwoHeadNet(MTLModel):
    task_names = ("a", "b")

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)})

    def forward(self, x):
        z = self.trunk(x)
        return {t: head(z).squeeze(-1) for t, head in self.heads.items()}

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def task_specific_parameters(self):
        return list(self.heads.parameters())


class MSEAccumulator(MetricAccumulator):
    def __init__(self):
        self.sums = {"a": 0.0, "b": 0.0}
        self.count = 0

    def update(self, outputs, batch):
        for k, task in enumerate(("a", "b")):
            self.sums[task] += float(((outputs[task] - batch[1][:, k]) ** 2).sum())
        self.count += batch[1].shape[0]

    def compute(self):
        return {f"mse_{t}": s / self.count for t, s in self.sums.items()}


class CrashError(RuntimeError):
    pass


class CrashingLoader(EpochSeededLoader):
    """Raises after ``crash_at`` batches in total, like a process dying mid-epoch."""

    crash_at: int | None = None
    served = 0

    def __iter__(self):
        for batch in super().__iter__():
            if self.crash_at is not None and CrashingLoader.served >= self.crash_at:
                raise CrashError("simulated crash")
            CrashingLoader.served += 1
            yield batch


class ToyRegression(Benchmark):
    name = "toy_regression"
    tasks = ("a", "b")
    metrics = (Metric("mse_a", "a", "", False, 1.0), Metric("mse_b", "b", "", False, 1.0))
    selection = "best_val_delta_m"

    def __init__(self, nan_task_at_epoch: int | None = None, crash_at: int | None = None):
        super().__init__({})
        self.nan_task_at_epoch = nan_task_at_epoch
        self.crash_at = crash_at
        self.epoch_seen = 0

    def build_splits(self, seed):
        generator = torch.Generator().manual_seed(123)
        x = torch.randn(96, 4, generator=generator)
        y = torch.stack([x @ torch.tensor([1.0, -1.0, 0.5, 0.0]), x @ torch.tensor([0.0, 2.0, -0.5, 1.0])], dim=1)
        data = torch.utils.data.TensorDataset(x, y)
        train = torch.utils.data.Subset(data, range(64))
        CrashingLoader.crash_at = self.crash_at
        CrashingLoader.served = 0
        loader = CrashingLoader(train, batch_size=16, seed=seed)
        val = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(64, 80)), batch_size=16)
        test = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(80, 96)), batch_size=16)
        return Splits(train=loader, val=val, test=test)

    def build_model(self):
        return TwoHeadNet()

    def to_device(self, batch, device):
        return [t.to(device) for t in batch]

    def task_losses(self, outputs, batch):
        losses = torch.stack([((outputs[t] - batch[1][:, k]) ** 2).mean() for k, t in enumerate(self.tasks)])
        if self.nan_task_at_epoch is not None and self._epoch >= self.nan_task_at_epoch:
            losses = losses * torch.tensor([1.0, math.nan])
        return losses

    _epoch = 0

    def new_accumulator(self):
        return MSEAccumulator()


class MeanGradient(Method):
    """A gradient method for plumbing tests: the mean of the task gradients."""

    needs_jacobian = True

    def aggregate(self, jacobian, losses):
        weights = torch.full((jacobian.shape[0],), 1.0 / jacobian.shape[0], dtype=jacobian.dtype)
        return Aggregation(shared_grad=weights @ jacobian, weights=weights, task_loss_weights=weights)


def make_trainer(tmp_path, benchmark, epochs=3, method=None):
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=epochs, lr=0.01, seed=0, progress=False)
    return Trainer(benchmark, method or LinearScalarization(2), cfg, tmp_path, torch.device("cpu"),
                   run_info={"method": "ls"})


def test_fit_writes_run_files(tmp_path):
    summary = make_trainer(tmp_path, ToyRegression()).fit()
    assert (tmp_path / CHECKPOINT).exists()
    with open(tmp_path / EPOCHS) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"val/mse_a", "test/mse_b", "test/delta_m", "val/delta_m"} <= set(rows[0])
    with open(tmp_path / SUMMARY) as handle:
        saved = next(csv.DictReader(handle))
    assert float(saved["delta_m"]) == pytest.approx(summary["delta_m"])
    best = min(rows, key=lambda r: float(r["val/delta_m"]))
    assert saved["selected_epoch"] == best["epoch"]
    assert float(saved["mse_a"]) == pytest.approx(float(best["test/mse_a"]))


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    reference = make_trainer(tmp_path / "full", ToyRegression()).fit()
    crashed = make_trainer(tmp_path / "crash", ToyRegression(crash_at=6))  # epoch 1, third batch
    with pytest.raises(CrashError):
        crashed.fit()
    assert crashed.state.epoch == 1
    resumed = make_trainer(tmp_path / "crash", ToyRegression())
    assert resumed.maybe_resume()
    assert resumed.state.epoch == 1
    summary = resumed.fit()
    for key in ("mse_a", "mse_b", "delta_m", "selected_epoch"):
        assert summary[key] == reference[key], key
    full_params = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=False)["model"]
    resumed_params = torch.load(tmp_path / "crash" / CHECKPOINT, weights_only=False)["model"]
    for name in full_params:
        assert torch.equal(full_params[name], resumed_params[name]), name


class NanAtEpoch(ToyRegression):
    def __init__(self):
        super().__init__(nan_task_at_epoch=1)


def test_non_finite_loss_names_task_and_keeps_checkpoint(tmp_path):
    benchmark = NanAtEpoch()
    trainer = make_trainer(tmp_path, benchmark)
    original = trainer.train_epoch

    def train_epoch(epoch):
        benchmark._epoch = epoch
        return original(epoch)

    trainer.train_epoch = train_epoch
    with pytest.raises(NonFiniteLossError, match=r"task\(s\) b at epoch 1"):
        trainer.fit()
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert saved["state"]["epoch"] == 1
    assert not (tmp_path / SUMMARY).exists()


def test_parameter_outside_partition_rejected(tmp_path):
    class Leaky(ToyRegression):
        def build_model(self):
            model = TwoHeadNet()
            model.extra = nn.Linear(2, 2)
            return model

    with pytest.raises(ValueError, match="neither shared nor task-specific"):
        make_trainer(tmp_path, Leaky())


def test_gradient_method_sets_shared_and_task_grads(tmp_path):
    trainer = make_trainer(tmp_path, ToyRegression(), method=MeanGradient(2))
    batch = next(iter(trainer.splits.train))
    losses = trainer.benchmark.task_losses(trainer.model(batch[0]), batch)
    trainer.optimizer.zero_grad()
    trainer.apply_method(losses, None)
    got = [p.grad.clone() for p in trainer.model.parameters()]

    trainer.optimizer.zero_grad()
    losses = trainer.benchmark.task_losses(trainer.model(batch[0]), batch)
    (0.5 * losses.sum()).backward()
    for grad, param in zip(got, trainer.model.parameters()):
        assert torch.allclose(grad, param.grad, atol=1e-6)


def test_jacobian_batched_equals_loop():
    model = TwoHeadNet()
    x = torch.randn(8, 4)
    outputs = model(x)
    losses = torch.stack([outputs["a"].pow(2).mean(), outputs["b"].sin().mean()])
    params = model.shared_parameters()
    batched = JacobianComputer(batched=True)(losses, params)
    looped = JacobianComputer(batched=False)(losses, params)
    assert batched.shape == (2, sum(p.numel() for p in params))
    assert torch.allclose(batched, looped, atol=1e-6)
    row = torch.autograd.grad(losses[1], params, retain_graph=True)
    assert torch.allclose(looped[1], torch.cat([g.flatten() for g in row]))


@pytest.mark.parametrize("chunk_size", [1, 2, None])
def test_jacobian_chunks_equal_full(chunk_size):
    torch.manual_seed(0)
    trunk = nn.Linear(3, 5)
    x = torch.randn(6, 3)
    z = trunk(x)
    losses = torch.stack([z[:, k].pow(2).mean() for k in range(5)])
    params = list(trunk.parameters())
    expected = JacobianComputer(batched=False)(losses, params)
    got = JacobianComputer(batched=True, chunk_size=chunk_size)(losses, params)
    assert got.shape == (5, 3 * 5 + 5)
    assert torch.allclose(got, expected, atol=1e-6)
