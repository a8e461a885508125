"""COST teleport objective: pure formulas and gradient flow to the adapter."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cost.adapter import TeleportAdapter
from cost.objective import (TeleportObjective, loss_invariance, random_directions, sharpness,
                            sharpness_weights)


def test_loss_invariance_is_mean_absolute_gap():
    value = loss_invariance(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.5, 2.0, 2.0]))
    assert value.item() == pytest.approx((0.5 + 0.0 + 1.0) / 3)


def test_sharpness_weights_favour_small_gradients():
    weights = sharpness_weights(torch.tensor([1.0, 3.0]))
    assert weights.tolist() == pytest.approx([2 * (1 - 0.25), 2 * (1 - 0.75)])
    assert weights.sum().item() == pytest.approx(2 * (2 - 1))
    assert sharpness_weights(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_sharpness_takes_max_over_directions_then_task_mean():
    perturbed = torch.tensor([[1.1, 2.0], [0.9, 2.3]])
    unperturbed = torch.tensor([1.0, 2.1])
    weights = torch.tensor([2.0, 0.5])
    delta = 0.1
    # Task 1: max(0.1, -0.1) = 0.1; task 2: max(-0.1, 0.2) = 0.2.
    expected = (2.0 * 0.1 / delta + 0.5 * 0.2 / delta) / 2
    assert sharpness(perturbed, unperturbed, weights, delta).item() == pytest.approx(expected, rel=1e-5)
    # Mirrored values: |difference| keeps both maxima, the signed difference lowers task 2's.
    flipped = 2 * unperturbed - perturbed
    assert sharpness(flipped, unperturbed, weights, delta, absolute=True).item() == pytest.approx(expected, rel=1e-5)
    assert sharpness(flipped, unperturbed, weights, delta).item() < expected


def test_random_directions_have_norm_delta_per_tensor():
    params = [torch.zeros(3, 4), torch.zeros(7), torch.zeros(2, 2, 2)]
    generator = torch.Generator().manual_seed(0)
    for direction in random_directions(params, 1e-4, generator):
        assert direction.norm().item() == pytest.approx(1e-4, rel=1e-5)


class TwoTaskNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.trunk = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(6, 1), nn.Linear(6, 1)])

    def forward(self, x):
        z = self.trunk(x)
        return [head(z).squeeze(-1) for head in self.heads]


def losses_of(model, batch):
    x, y = batch
    outputs = model(x)
    return torch.stack([((out - y[:, k]) ** 2).mean() for k, out in enumerate(outputs)])


def objective_with_adapter(sharpness_grad: str):
    model = TwoTaskNet()
    batch = (torch.randn(16, 3, generator=torch.Generator().manual_seed(2)),
             torch.randn(16, 2, generator=torch.Generator().manual_seed(3)))
    shared = list(model.trunk.parameters())
    adapter = TeleportAdapter(model, ["trunk.0", "trunk.2"], rank=2)
    with torch.no_grad():
        for param in adapter.parameters:
            param.add_(0.05 * torch.randn(param.shape, generator=torch.Generator().manual_seed(4)))
    objective = TeleportObjective(model, losses_of, losses_of(model, batch).detach(), torch.tensor([1.2, 0.8]),
                                  shared, torch.Generator().manual_seed(5), gamma=0.1, delta=1e-2,
                                  directions=3, sharpness_grad=sharpness_grad)
    return objective, adapter, batch


def test_perturbed_losses_carry_gradient_to_adapter():
    objective, adapter, batch = objective_with_adapter("functional")
    perturbed = objective.perturbed_losses(batch)
    assert perturbed.shape == (3, 2)
    assert perturbed.requires_grad
    grads = torch.autograd.grad(perturbed.sum(), adapter.parameters, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_copy_mode_detaches_perturbed_losses():
    objective, adapter, batch = objective_with_adapter("copy")
    perturbed = objective.perturbed_losses(batch)
    assert not perturbed.requires_grad


def test_sharpness_gradient_differs_between_modes():
    # Same seeds, so both modes draw the same directions and evaluate the same values; only
    # the functional mode differentiates through L(θ' + ε).
    functional, adapter_f, batch = objective_with_adapter("functional")
    copy, adapter_c, _ = objective_with_adapter("copy")
    term_f = functional.sharpness_term(batch)
    term_c = copy.sharpness_term(batch)
    assert term_f.item() == pytest.approx(term_c.item(), rel=1e-5)
    grads_f = torch.autograd.grad(term_f, adapter_f.parameters)
    grads_c = torch.autograd.grad(term_c, adapter_c.parameters)
    gap = sum((a - b).abs().sum() for a, b in zip(grads_f, grads_c))
    scale = sum(b.abs().sum() for b in grads_c)
    assert gap > 1e-3 * scale


def test_objective_combines_terms():
    objective, _, batch = objective_with_adapter("functional")
    value = objective(batch, batch)
    assert value.total.item() == pytest.approx(value.invariance - 0.1 * value.sharpness, rel=1e-4, abs=1e-6)
    assert value.invariance == pytest.approx(0.0, abs=1e-6)


def test_perturbed_params_must_belong_to_model():
    model = TwoTaskNet()
    with pytest.raises(ValueError, match="parameters to perturb"):
        TeleportObjective(model, losses_of, torch.zeros(2), torch.ones(2), [torch.zeros(3)],
                          torch.Generator())


@pytest.mark.parametrize("sharpness_grad", ["functional", "copy"])
@pytest.mark.parametrize("absolute", [False, True])
def test_sequential_backward_equals_joint(sharpness_grad: str, absolute: bool):
    results = {}
    for backward in ("joint", "sequential"):
        objective, adapter, batch = objective_with_adapter(sharpness_grad)
        objective.absolute = absolute
        objective.backward = backward
        # A reference away from the current losses, so the invariance term has a gradient too.
        objective.reference = objective.reference + torch.tensor([0.3, -0.2])
        conflict = (batch[0] * 0.5, batch[1])
        value, grads = objective.gradients(batch, conflict, adapter.parameters)
        results[backward] = (value, grads, objective.generator.get_state())
    joint, sequential = results["joint"], results["sequential"]
    assert sequential[0].total.item() == pytest.approx(joint[0].total.item(), rel=1e-6)
    assert sequential[0].sharpness == pytest.approx(joint[0].sharpness, rel=1e-6)
    assert not sequential[0].total.requires_grad
    assert sum(g.abs().sum() for g in joint[1] if g is not None) > 0
    for expected, actual in zip(joint[1], sequential[1]):
        assert (expected is None) == (actual is None)
        if expected is not None:
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(joint[2], sequential[2]), "the generator must end in the same state"


def test_unknown_backward_is_rejected():
    model = TwoTaskNet()
    with pytest.raises(ValueError, match="backward='twice'"):
        TeleportObjective(model, losses_of, torch.zeros(2), torch.ones(2), list(model.trunk.parameters()),
                          torch.Generator(), backward="twice")
