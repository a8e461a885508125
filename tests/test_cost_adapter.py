"""COST adapter: PEFT injection into a live model and merging in place."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cost.adapter import TeleportAdapter, leftover_adapter_names


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))


@pytest.mark.parametrize("kind", ["lora", "loha", "lokr", "oft"])
def test_adapter_starts_at_zero_displacement(kind):
    model = tiny_model()
    inputs = torch.randn(5, 4)
    expected = model(inputs).detach()
    TeleportAdapter(model, ["0", "2"], kind=kind, rank=2)
    assert torch.allclose(model(inputs), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["lora", "loha", "lokr", "oft"])
def test_merge_keeps_parameter_objects_and_leaves_nothing(kind):
    model = tiny_model()
    before = {name: p for name, p in model.named_parameters()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    model[4].weight.requires_grad_(False)
    flags["4.weight"] = False
    inputs = torch.randn(5, 4)

    adapter = TeleportAdapter(model, ["0", "2"], kind=kind, rank=2)
    assert adapter.parameters, "the adapter has no trainable tensors"
    assert not any(p.requires_grad for p in before.values()), "base weights must be frozen while attached"
    with torch.no_grad():
        for param in adapter.parameters:
            param.add_(0.1 * torch.randn_like(param))
    adapted = model(inputs).detach()
    adapter.merge()

    after = dict(model.named_parameters())
    assert list(after) == list(before)
    assert all(after[name] is before[name] for name in before)
    assert leftover_adapter_names(model) == []
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert torch.allclose(model(inputs), adapted, atol=1e-5)


def test_lora_merge_changes_only_target_weights():
    model = tiny_model()
    old = {name: p.detach().clone() for name, p in model.named_parameters()}
    adapter = TeleportAdapter(model, ["2"], kind="lora", rank=5, alpha=8.0)
    with torch.no_grad():
        for param in adapter.parameters:
            param.add_(0.1)
    adapter.merge()
    changed = sorted(name for name, p in model.named_parameters() if not torch.equal(p, old[name]))
    assert changed == ["2.weight"]


def test_remove_restores_model_unchanged():
    model = tiny_model()
    old = {name: p.detach().clone() for name, p in model.named_parameters()}
    adapter = TeleportAdapter(model, ["0"], kind="lora")
    with torch.no_grad():
        for param in adapter.parameters:
            param.add_(1.0)
    adapter.remove()
    assert leftover_adapter_names(model) == []
    assert all(torch.equal(p, old[name]) for name, p in model.named_parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_no_targets_raises():
    with pytest.raises(ValueError, match="no adapter target"):
        TeleportAdapter(tiny_model(), [])


@pytest.mark.parametrize("mode, expected", [
    ("paper", {"lin0", "lin1"}),
    ("extended", {"lin0", "lin1", "conv.nn.0", "conv.nn.2"}),
])
def test_qm9_mpnn_target_modes_inject_and_merge(mode, expected):
    from datasets.qm9.model import QM9MPNN

    model = QM9MPNN(["mu", "alpha"])
    ids = {name: id(p) for name, p in model.named_parameters()}
    adapter = TeleportAdapter(model, model.lora_targets(mode))
    assert {name for name, _ in adapter.layers} == expected
    adapter.merge()
    assert leftover_adapter_names(model) == []
    assert {name: id(p) for name, p in model.named_parameters()} == ids


def test_full_adapter_merges_into_same_parameter():
    model = tiny_model()
    weight = model[2].weight
    old = weight.detach().clone()
    inputs = torch.randn(5, 4)
    expected = model(inputs).detach()
    adapter = TeleportAdapter(model, ["2.weight"], kind="full")
    assert torch.allclose(model(inputs), expected)
    assert len(adapter.parameters) == 1
    assert adapter.parameters[0].shape == weight.shape
    with torch.no_grad():
        adapter.parameters[0].fill_(0.01)
    adapted = model(inputs).detach()
    adapter.merge()
    assert model[2].weight is weight
    assert torch.allclose(weight, old + 0.01)
    assert torch.allclose(model(inputs), adapted, atol=1e-6)
    assert leftover_adapter_names(model) == []
    assert type(model) is nn.Sequential


def test_full_adapter_rejects_module_names():
    with pytest.raises(ValueError, match="is not a parameter"):
        TeleportAdapter(tiny_model(), ["2"], kind="full")
