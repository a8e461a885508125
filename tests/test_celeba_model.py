"""CelebA CNN, LoRA targets, F1 metric and the benchmark's declarations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from datasets.celeba.annotations import ATTRIBUTE_NAMES
from datasets.celeba.metrics import F1_WITHOUT_POSITIVES, F1Accumulator, f1_from_counts
from datasets.celeba.model import CelebACNN
from datasets.celeba.spec import STL_F1, CelebABenchmark
from methods.jacobian import JacobianComputer


@pytest.fixture(scope="module")
def model() -> CelebACNN:
    torch.manual_seed(0)
    return CelebACNN(ATTRIBUTE_NAMES)


def test_forward_one_logit_per_attribute(model):
    outputs = model.eval()(torch.rand(2, 3, 64, 64))

    assert list(outputs) == list(ATTRIBUTE_NAMES)
    assert all(value.shape == (2,) for value in outputs.values())
    assert model.representation(torch.rand(2, 3, 64, 64)).shape == (2, 512)


def test_architecture_matches_protocol(model):
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    channels = [(c.in_channels, c.out_channels) for c in convs]

    assert channels == [(3, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.encoder.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.encoder.modules()) == 7
    linears = [m for m in model.projection.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias) for m in linears] == [(512, 512, None)] * 2
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.projection.modules()) == 2
    assert all(h.in_features == 512 and h.out_features == 1 for h in model.heads.values())


def test_parameter_partition(model):
    shared = {id(p) for p in model.shared_parameters()}
    specific = {id(p) for p in model.task_specific_parameters()}
    conv_weights = sum(9 * a * b for a, b in [(3, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512),
                                              (512, 512)])
    batch_norm = 2 * (64 + 128 + 128 + 256 + 256 + 512 + 512) + 2 * 2 * 512

    assert not shared & specific
    assert shared | specific == {id(p) for p in model.parameters()}
    assert sum(p.numel() for p in model.shared_parameters()) == conv_weights + 2 * 512 * 512 + batch_norm
    assert sum(p.numel() for p in model.task_specific_parameters()) == 40 * (512 + 1)


def test_lora_targets_are_shared_layers(model):
    targets = model.lora_targets("paper")
    modules = dict(model.named_modules())

    assert len(targets) == 9
    assert all(isinstance(modules[name], (nn.Conv2d, nn.Linear)) for name in targets)
    assert not any(name.startswith("heads") for name in targets)
    with pytest.raises(ValueError, match="unknown LoRA target mode"):
        model.lora_targets("extended")


def test_peft_wraps_lora_targets():
    torch.manual_seed(0)
    model = CelebACNN(ATTRIBUTE_NAMES).eval()
    images = torch.rand(2, 3, 64, 64)
    before = model(images)

    wrapped = inject_adapter_in_model(LoraConfig(r=5, target_modules=model.lora_targets()), model)
    lora_layers = [name for name, _ in wrapped.named_modules() if name.endswith("lora_A")]
    after = wrapped(images)

    assert len(lora_layers) == 9
    assert all(torch.allclose(before[k], after[k]) for k in before)


def test_batched_jacobian_matches_loop():
    torch.manual_seed(0)
    model = CelebACNN(ATTRIBUTE_NAMES).train()
    # 16×16 inputs keep the 40 backward passes of the loop cheap; the layers are the same.
    images, labels = torch.rand(4, 3, 16, 16), torch.randint(0, 2, (4, 40)).float()
    losses = CelebABenchmark({"root": "unused"}).task_losses(model(images), (images, labels))
    params = [model.encoder[0].conv.weight, model.projection[1].linear.weight]

    batched = JacobianComputer(batched=True)(losses, params)
    looped = JacobianComputer(batched=False)(losses, params)

    assert batched.shape == (40, 3 * 64 * 9 + 512 * 512)
    assert torch.allclose(batched, looped, atol=1e-6)


def test_f1_from_counts_values():
    f1 = f1_from_counts(torch.tensor([2, 0, 0, 5]), torch.tensor([1, 3, 0, 0]), torch.tensor([1, 0, 0, 0]))

    assert f1.tolist() == pytest.approx([4 / 6, 0.0, F1_WITHOUT_POSITIVES, 1.0])
    assert not torch.isnan(f1).any()


def test_f1_accumulator_matches_precision_recall():
    generator = torch.Generator().manual_seed(1)
    tasks, names = ["a", "b", "c"], ["f1_a", "f1_b", "f1_c"]
    accumulator = F1Accumulator(tasks, names)
    all_logits, all_targets = [], []
    for _ in range(3):
        logits = torch.randn(7, 3, generator=generator)
        targets = (torch.rand(7, 3, generator=generator) > 0.6).float()
        accumulator.update({t: logits[:, k] for k, t in enumerate(tasks)}, (None, targets))
        all_logits.append(logits)
        all_targets.append(targets)
    values = accumulator.compute()

    predicted = torch.cat(all_logits).numpy() > 0
    target = torch.cat(all_targets).numpy() > 0.5
    for k, name in enumerate(names):
        precision = (predicted[:, k] & target[:, k]).sum() / predicted[:, k].sum()
        recall = (predicted[:, k] & target[:, k]).sum() / target[:, k].sum()
        assert values[name] == pytest.approx(2 * precision * recall / (precision + recall))


def test_f1_threshold_at_half():
    accumulator = F1Accumulator(["a"], ["f1_a"])
    logits = torch.tensor([0.0, 0.01, -0.01])
    accumulator.update({"a": logits}, (None, torch.tensor([[1.0], [1.0], [0.0]])))

    assert accumulator.true_positives.tolist() == [1]
    assert accumulator.false_negatives.tolist() == [1]
    assert accumulator.false_positives.tolist() == [0]


def test_f1_no_positives_anywhere():
    accumulator = F1Accumulator(["a"], ["f1_a"])
    accumulator.update({"a": torch.tensor([-1.0, -2.0])}, (None, torch.zeros(2, 1)))
    assert accumulator.compute() == {"f1_a": F1_WITHOUT_POSITIVES}


def test_benchmark_declarations():
    benchmark = CelebABenchmark({"root": "unused"})
    by_task = {metric.task: metric for metric in benchmark.metrics}

    assert list(benchmark.tasks) == list(ATTRIBUTE_NAMES)
    assert len(benchmark.metrics) == 40
    assert len(set(benchmark.metric_names())) == 40
    assert all(metric.higher_is_better and metric.unit == "fraction" for metric in benchmark.metrics)
    assert by_task["5_o_Clock_Shadow"].stl == 0.6736886
    assert by_task["Male"].stl == 0.97034
    assert by_task["Young"].stl == 0.91907
    assert [m.stl for m in benchmark.metrics] == list(STL_F1)
    assert benchmark.selection == "best_val_mean"
    assert benchmark.scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)) is None


def test_task_losses_are_bce():
    benchmark = CelebABenchmark({"root": "unused"})
    logits = torch.randn(5, 40)
    labels = torch.randint(0, 2, (5, 40)).float()
    losses = benchmark.task_losses({t: logits[:, k] for k, t in enumerate(benchmark.tasks)}, (None, labels))
    expected = nn.BCELoss(reduction="none")(torch.sigmoid(logits), labels).mean(dim=0)

    assert losses.shape == (40,)
    assert torch.allclose(losses, expected, atol=1e-6)
    assert np.isfinite(losses.numpy()).all()
