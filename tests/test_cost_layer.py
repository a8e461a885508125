"""The COST layer inside the shared trainer, on a tiny three-task regression benchmark."""
from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from benchmarks.trainer import TrainConfig, Trainer
from cost import RECORD_TABLE, build_cost_layer
from cost.adapter import leftover_adapter_names
from cost.config import CostConfig
from cost.teleport import TrainingBatches, run_teleport
from datasets.base import Benchmark, Metric, MetricAccumulator, MTLModel, Splits
from datasets.loading import EpochSeededLoader
from methods.base import Aggregation, Method
from methods.ls import LinearScalarization

TASKS = ("a", "b", "c")


class ThreeHeadNet(MTLModel):
    """Two shared linear layers (the adapter targets), BatchNorm between them, three heads."""

    task_names = TASKS

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.heads = nn.ModuleDict({t: nn.Linear(16, 1) for t in TASKS})

    def forward(self, x):
        z = self.trunk(x)
        return {t: head(z).squeeze(-1) for t, head in self.heads.items()}

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def task_specific_parameters(self):
        return list(self.heads.parameters())

    def lora_targets(self, mode: str = "paper"):
        return ["trunk.0", "trunk.3"]


class MSE(MetricAccumulator):
    def __init__(self):
        self.sums = dict.fromkeys(TASKS, 0.0)
        self.count = 0

    def update(self, outputs, batch):
        for k, task in enumerate(TASKS):
            self.sums[task] += float(((outputs[task] - batch[1][:, k]) ** 2).sum())
        self.count += batch[1].shape[0]

    def compute(self):
        return {f"mse_{t}": s / self.count for t, s in self.sums.items()}


class ConflictingRegression(Benchmark):
    """Three targets, two of them opposite in sign, so that task gradients often conflict."""

    name = "conflicting_regression"
    tasks = TASKS
    metrics = tuple(Metric(f"mse_{t}", t, "", False, 1.0) for t in TASKS)
    selection = "best_val_delta_m"

    def __init__(self):
        super().__init__({})

    def build_splits(self, seed):
        generator = torch.Generator().manual_seed(7)
        x = torch.randn(160, 4, generator=generator)
        base = torch.tanh(x @ torch.tensor([1.0, -1.0, 0.5, 0.3]))
        y = torch.stack([base, -base + 0.3 * x[:, 2], torch.sin(x[:, 0] * 2)], dim=1)
        data = torch.utils.data.TensorDataset(x, y)
        train = EpochSeededLoader(torch.utils.data.Subset(data, range(128)), batch_size=16, seed=seed)
        test = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(128, 160)), batch_size=16)
        return Splits(train=train, val=None, test=test)

    def build_model(self):
        return ThreeHeadNet()

    def to_device(self, batch, device):
        return [t.to(device) for t in batch]

    def task_losses(self, outputs, batch):
        return torch.stack([((outputs[t] - batch[1][:, k]) ** 2).mean() for k, t in enumerate(TASKS)])

    def new_accumulator(self):
        return MSE()


class MeanGradient(Method):
    """A gradient method for plumbing tests: the mean of the task gradients."""

    needs_jacobian = True

    def aggregate(self, jacobian, losses):
        weights = torch.full((jacobian.shape[0],), 1.0 / jacobian.shape[0], dtype=jacobian.dtype)
        return Aggregation(shared_grad=weights @ jacobian, weights=weights, task_loss_weights=weights)


QUICK = {"enabled": True, "start_epoch": 0, "max_per_epoch": 1, "reference_batches": 4, "inner_epochs": None,
         "inner_steps": 8, "inner_lr": 1e-3, "directions": 2}


class AlwaysFires:
    """Stand-in trigger for gate tests: every check fires."""

    def statistic(self, geometry):
        return -1.0

    def fires(self, cosine):
        return True


def make_trainer(tmp_path, cost_settings=None, method=None, epochs=2, always_fire=True):
    torch.manual_seed(0)
    layer = build_cost_layer({**QUICK, **(cost_settings or {})})
    if always_fire:
        layer.trigger = AlwaysFires()
    trainer = Trainer(ConflictingRegression(), method or LinearScalarization(len(TASKS)),
                      TrainConfig(epochs=epochs, lr=1e-2, progress=False), tmp_path, torch.device("cpu"),
                      cost=layer)
    return trainer, layer


def test_teleport_keeps_losses_and_parameter_objects(tmp_path):
    trainer, layer = make_trainer(tmp_path, epochs=1)
    optimizer_params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    shared = list(trainer.shared_params)
    trainer.fit()

    records = trainer.state.records[RECORD_TABLE]
    assert len(records) == 1
    record = records[0]
    # Stated tolerance: every task loss within 5% (relative) of its reference after merging.
    for task in TASKS:
        before, after = record[f"loss_before/{task}"], record[f"loss_after/{task}"]
        assert abs(after - before) <= 0.05 * before, task
    assert record["invariance_rel_max"] <= 0.05
    assert record["displacement_norm"] > 0
    assert leftover_adapter_names(trainer.model) == []
    assert [p for group in trainer.optimizer.param_groups for p in group["params"]] == optimizer_params
    assert all(a is b for a, b in zip(trainer.optimizer.param_groups[0]["params"], optimizer_params))
    assert all(a is b for a, b in zip(trainer.model.shared_parameters(), shared))
    assert all(p.requires_grad for p in trainer.model.parameters())


def test_record_has_documented_fields(tmp_path):
    # Teleporting in epoch 1 gives HTR a previous update to compare with.
    trainer, _ = make_trainer(tmp_path, {"start_epoch": 1}, epochs=2)
    trainer.fit()
    record = trainer.state.records[RECORD_TABLE][0]
    for key in ("step", "epoch", "trigger_cosine", "invariance_error", "grad_norm_before", "grad_norm_after",
                "cos_dominated_before", "cos_dominated_after", "cos_min_before", "cos_min_after",
                "cos_pair_min_before", "cos_pair_min_after", "sigma", "htr_action", "inner_steps", "seconds"):
        assert key in record, key
    assert record["inner_steps"] == 8
    assert math.isfinite(record["grad_norm_after"])
    assert -1.0 <= record["sigma"] <= 1.0
    assert record["htr_action"] == ("scale_betas" if record["sigma"] > 0 else "reset_state")
    with open(tmp_path / f"{RECORD_TABLE}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert rows[0]["sigma"] == str(record["sigma"])


def test_teleport_leaves_batchnorm_statistics(tmp_path):
    trainer, layer = make_trainer(tmp_path, epochs=1)
    model = trainer.model
    bn = model.trunk[1]
    model.train()
    batch = next(iter(trainer.splits.train))
    model(batch[0])
    saved = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    data = TrainingBatches(trainer.splits.train, lambda b: b, None)
    outcome = run_teleport(model, lambda m, b: trainer.benchmark.task_losses(m(b[0]), b), data, batch,
                           layer.config, layer.targets, trainer.shared_params, trainer.shared_params,
                           torch.ones(3), 1e-2, torch.Generator().manual_seed(0))
    assert outcome.merged
    assert torch.equal(bn.running_mean, saved[0])
    assert torch.equal(bn.running_var, saved[1])
    assert torch.equal(bn.num_batches_tracked, saved[2])
    assert model.training


def test_start_epoch_delays_teleports_and_jacobians(tmp_path):
    trainer, layer = make_trainer(tmp_path, {"start_epoch": 1}, epochs=2)
    calls = []
    original = trainer.jacobian

    def counting_jacobian(losses, params):
        calls.append(trainer.state.epoch)
        return original(losses, params)

    trainer.jacobian = counting_jacobian
    assert not layer.wants_jacobian(0)
    trainer.fit()
    records = trainer.state.records[RECORD_TABLE]
    assert [r["epoch"] for r in records] == [1]
    assert 0 not in calls, "LS must not compute a Jacobian before cost.start_epoch"
    assert trainer.state.history[0]["cost/checks"] == 0
    assert trainer.state.history[1]["cost/teleports"] == 1


@pytest.mark.parametrize("cap", [1, 2])
def test_max_per_epoch_caps_teleports(tmp_path, cap):
    trainer, _ = make_trainer(tmp_path, {"max_per_epoch": cap}, epochs=2)
    trainer.fit()
    epochs = [r["epoch"] for r in trainer.state.records[RECORD_TABLE]]
    assert epochs == [e for e in (0, 1) for _ in range(cap)]


def test_real_trigger_and_gradient_method(tmp_path):
    trainer, layer = make_trainer(tmp_path, {"trigger": "weak", "max_per_epoch": None}, method=MeanGradient(3),
                                  epochs=1, always_fire=False)
    trainer.fit()
    row = trainer.state.history[0]
    assert row["cost/checks"] == len(trainer.splits.train)
    records = trainer.state.records.get(RECORD_TABLE, [])
    assert row["cost/conflicts"] == len(records) == row["cost/teleports"] >= 1
    assert all(r["trigger_cosine"] < 0 for r in records)
    assert len(trainer.optimizer.param_groups) == 1
    assert tuple(trainer.optimizer.param_groups[0]["betas"]) == (0.9, 0.999)


def test_resume_restores_cost_state(tmp_path):
    first, layer = make_trainer(tmp_path, epochs=1)
    first.fit()
    assert layer.total_teleports == 1

    second, resumed = make_trainer(tmp_path, epochs=2)
    assert resumed.total_teleports == 0
    assert second.maybe_resume()
    assert resumed.state_dict() == layer.state_dict()
    second.fit()
    assert resumed.total_teleports == 2
    assert [r["epoch"] for r in second.state.records[RECORD_TABLE]] == [0, 1]


def test_unknown_setting_and_bad_targets_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown COST setting"):
        build_cost_layer({"enabled": True, "gama": 0.1})
    with pytest.raises(ValueError, match="exactly one of cost.inner_epochs"):
        CostConfig.from_dict({"inner_epochs": 2, "inner_steps": 3})
    with pytest.raises(ValueError, match="task-specific"):
        make_trainer(tmp_path, {"targets": ["heads.a"]})
    with pytest.raises(ValueError, match="matches no module"):
        make_trainer(tmp_path, {"targets": ["encoder"]})


def test_teleport_on_qm9_mpnn_graphs(tmp_path):
    # NNConv and GRU run under torch.func.functional_call; the adapter covers the edge network too.
    from torch_geometric.data import Batch, Data

    from datasets.qm9.model import QM9MPNN

    def graph(num_atoms: int, generator: torch.Generator) -> Data:
        row = torch.arange(num_atoms).repeat_interleave(num_atoms)
        col = torch.arange(num_atoms).repeat(num_atoms)
        keep = row != col
        return Data(x=torch.randn(num_atoms, 11, generator=generator),
                    edge_index=torch.stack([row[keep], col[keep]]),
                    edge_attr=torch.randn(int(keep.sum()), 5, generator=generator),
                    y=torch.randn(1, 2, generator=generator))

    generator = torch.Generator().manual_seed(0)
    batches = [Batch.from_data_list([graph(n, generator) for n in (3, 4, 5)]) for _ in range(3)]
    torch.manual_seed(0)
    model = QM9MPNN(["mu", "alpha"], hidden=8)
    shared = model.shared_parameters()

    def losses_of(net, batch):
        outputs = net(batch)
        return torch.stack([((outputs[t] - batch.y[:, k]) ** 2).mean() for k, t in enumerate(("mu", "alpha"))])

    config = CostConfig.from_dict({**QUICK, "inner_steps": 3, "reference_batches": 3})
    outcome = run_teleport(model, losses_of, TrainingBatches(batches, lambda b: b, None), batches[0], config,
                           model.lora_targets("extended"), shared, shared, torch.ones(2), 1e-3,
                           torch.Generator().manual_seed(1))
    assert outcome.merged
    assert outcome.inner_steps == 3
    assert outcome.displacement.norm() > 0
    assert leftover_adapter_names(model) == []
    assert all(a is b for a, b in zip(model.shared_parameters(), shared))


def test_released_options_run_end_to_end(tmp_path):
    released = {"trigger": "any", "invariance_weight": 10.0, "gamma": 0.5, "sharpness_grad": "copy",
                "sharpness_abs": True, "sharpness_params": "all", "htr": "released", "htr_scope": "all",
                "start_epoch": 1}
    trainer, layer = make_trainer(tmp_path, released, epochs=2)
    trainer.fit()
    records = trainer.state.records[RECORD_TABLE]
    assert len(records) == 1
    assert records[0]["merged"]
    assert records[0]["htr_action"] == ("none" if records[0]["sigma"] > 0 else "reset_state")
    assert math.isfinite(records[0]["sharpness_last"])


def test_teleport_releases_step_graph(tmp_path, monkeypatch):
    import gc
    import weakref

    import cost.layer

    trainer, layer = make_trainer(tmp_path, epochs=1)
    step_losses = []
    task_losses = trainer.benchmark.task_losses

    def recording_task_losses(outputs, batch):
        losses = task_losses(outputs, batch)
        step_losses.append(weakref.ref(losses))
        return losses

    alive_at_teleport = []

    def checking_run_teleport(*args, **kwargs):
        gc.collect()
        alive_at_teleport.append(step_losses[0]() is not None)
        return run_teleport(*args, **kwargs)

    monkeypatch.setattr(trainer.benchmark, "task_losses", recording_task_losses)
    monkeypatch.setattr(cost.layer, "run_teleport", checking_run_teleport)
    trainer.fit()
    assert alive_at_teleport == [False], "the training step's loss graph was alive during the teleport"
    assert len(trainer.state.records[RECORD_TABLE]) == 1


def test_aborted_teleport_keeps_training(tmp_path, monkeypatch):
    import cost.objective

    def non_finite_invariance(losses, reference):
        return (losses - reference).abs().mean() * float("nan")

    monkeypatch.setattr(cost.objective, "loss_invariance", non_finite_invariance)
    trainer, layer = make_trainer(tmp_path, epochs=1)
    before = [p.detach().clone() for p in trainer.shared_params]
    trainer.fit()
    row = trainer.state.history[-1]
    assert row["cost/aborted"] == 1
    assert row["cost/teleports"] == 0
    assert leftover_adapter_names(trainer.model) == []
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert any(not torch.equal(p, old) for p, old in zip(trainer.shared_params, before)), "no training step ran"
