"""COST trigger variants on hand-built Jacobians."""
from __future__ import annotations

import math

import pytest
import torch

from cost.trigger import GradientGeometry, Trigger, cosines_to_mean, pairwise_cosines


def jacobian(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# g_small = (-1, 0.1) points against g_0 = (4.5, 0.05): dominated, any and weak all fire.
DOMINATED = jacobian((10.0, 0.0), (-1.0, 0.1))
# The smallest gradient (1, 0) agrees with g_0, but (-3, 0.1) opposes it: only any and weak fire.
ANY_ONLY = jacobian((1.0, 0.0), (5.0, 0.0), (-3.0, 0.1))
# Both gradients agree with g_0 = (1, -0.1) but not with each other: only weak fires.
WEAK_ONLY = jacobian((1.0, 1.0), (1.0, -1.2))
# All gradients within 90 degrees of each other: nothing fires.
ALIGNED = jacobian((1.0, 0.2), (2.0, 0.5), (0.5, 0.0))


@pytest.mark.parametrize("matrix, expected", [
    (DOMINATED, {"dominated": True, "any": True, "weak": True, "always": True}),
    (ANY_ONLY, {"dominated": False, "any": True, "weak": True, "always": True}),
    (WEAK_ONLY, {"dominated": False, "any": False, "weak": True, "always": True}),
    (ALIGNED, {"dominated": False, "any": False, "weak": False, "always": True}),
])
def test_trigger_variants_fire_exactly(matrix, expected):
    geometry = GradientGeometry.of(matrix)
    for variant, fires in expected.items():
        trigger = Trigger(variant)
        assert trigger.fires(trigger.statistic(geometry)) is fires, variant


def test_geometry_values_on_known_jacobian():
    geometry = GradientGeometry.of(DOMINATED)
    mean = torch.tensor([4.5, 0.05], dtype=torch.float64)
    small = torch.tensor([-1.0, 0.1], dtype=torch.float64)
    expected_dominated = float(small @ mean / (small.norm() * mean.norm()))
    assert geometry.mean_norm == pytest.approx(float(mean.norm()))
    assert geometry.dominated_cosine == pytest.approx(expected_dominated)
    assert geometry.min_cosine == pytest.approx(expected_dominated)
    assert geometry.min_pair_cosine == pytest.approx(-10.0 / (10.0 * math.hypot(1.0, 0.1)))
    assert geometry.task_norms.tolist() == pytest.approx([10.0, math.hypot(1.0, 0.1)])


def test_threshold_tau_makes_trigger_stricter():
    geometry = GradientGeometry.of(jacobian((1.0, 0.0), (-0.3, math.sqrt(1 - 0.09))))
    # cos(g_2, g_1) = -0.3, so weak fires for tau below 0.3 only.
    assert Trigger("weak", tau=0.2).fires(Trigger("weak").statistic(geometry))
    assert not Trigger("weak", tau=0.5).fires(Trigger("weak").statistic(geometry))


def test_any_fires_at_zero_but_dominated_does_not():
    assert Trigger("any").fires(0.0)
    assert not Trigger("dominated").fires(0.0)
    assert not Trigger("weak").fires(0.0)
    assert not Trigger("any", tau=0.1).fires(0.0)


def test_always_fires_on_zero_gradients():
    geometry = GradientGeometry.of(torch.zeros(3, 4))
    trigger = Trigger("always")
    assert trigger.fires(trigger.statistic(geometry))


def test_always_records_dominated_cosine():
    geometry = GradientGeometry.of(DOMINATED)
    assert Trigger("always").statistic(geometry) == pytest.approx(geometry.dominated_cosine)


def test_zero_gradients_never_fire():
    geometry = GradientGeometry.of(torch.zeros(3, 4))
    for variant in ("dominated", "any", "weak"):
        trigger = Trigger(variant)
        assert not trigger.fires(trigger.statistic(geometry)), variant
    assert math.isnan(geometry.dominated_cosine)


def test_gramian_cosines_match_direct_ones():
    rows = jacobian((1.0, 2.0, 0.0), (-1.0, 0.5, 3.0), (0.2, -0.1, 0.4))
    gramian = rows @ rows.T
    mean = rows.mean(dim=0)
    direct = torch.stack([row @ mean / (row.norm() * mean.norm()) for row in rows])
    assert torch.allclose(cosines_to_mean(gramian), direct)
    assert pairwise_cosines(gramian)[0, 1].item() == pytest.approx(
        float(rows[0] @ rows[1] / (rows[0].norm() * rows[1].norm())))


def test_cosine_helpers_mark_zero_vectors_nan():
    rows = jacobian((1.0, 0.0), (0.0, 0.0))
    to_mean = cosines_to_mean(rows @ rows.T)
    assert to_mean[0].item() == pytest.approx(1.0)
    assert math.isnan(to_mean[1].item())
    pairs = pairwise_cosines(rows @ rows.T)
    assert pairs[0, 0].item() == pytest.approx(1.0)
    assert math.isnan(pairs[0, 1].item())


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="dominated, any, weak or always"):
        Trigger("sometimes").statistic(GradientGeometry.of(ALIGNED))
