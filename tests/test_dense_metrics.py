"""Dense metrics and losses: masking, conventions, mIoU edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datasets.dense.losses import depth_loss, normal_loss, segmentation_loss
from datasets.dense.metrics import (DenseAccumulator, confusion_matrix, histogram_median, median,
                                    miou_and_pixel_accuracy)

TASKS = ("segmentation", "depth", "normal")


def random_batch(generator: torch.Generator, n: int, classes: int = 4, h: int = 6, w: int = 8,
                 invalid: float = 0.2):
    """Return (outputs, batch) with random predictions and targets that include invalid pixels."""
    logits = torch.randn(n, classes, h, w, generator=generator)
    label = torch.randint(0, classes, (n, h, w), generator=generator)
    label[torch.rand(n, h, w, generator=generator) < invalid] = -1
    depth = torch.rand(n, 1, h, w, generator=generator) + 0.5
    depth[torch.rand(n, 1, h, w, generator=generator) < invalid] = 0.0
    normal = torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=generator), dim=1)
    normal = normal * (torch.rand(n, 1, h, w, generator=generator) >= invalid)
    outputs = {
        "segmentation": torch.log_softmax(logits, dim=1),
        "depth": torch.rand(n, 1, h, w, generator=generator) + 0.5,
        "normal": torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=generator), dim=1),
    }
    return outputs, (torch.zeros(n, 3, h, w), {"segmentation": label, "depth": depth, "normal": normal})


def reference_batch_values(outputs, targets) -> list[float]:
    """Per-batch depth and normal statistics written out as the MTAN/Nash-MTL evaluation defines them."""
    pred_depth = outputs["depth"].double().numpy()
    true_depth = targets["depth"].double().numpy()
    mask = true_depth.sum(axis=1) != 0
    pred_valid = pred_depth[:, 0][mask]
    true_valid = true_depth[:, 0][mask]
    abs_err = np.abs(pred_valid - true_valid).sum() / mask.sum()
    rel_err = (np.abs(pred_valid - true_valid) / true_valid).sum() / mask.sum()

    pred_normal = outputs["normal"].double().numpy()
    true_normal = targets["normal"].double().numpy()
    normal_mask = np.abs(true_normal).sum(axis=1) != 0
    dot = (pred_normal * true_normal).sum(axis=1)[normal_mask]
    error = np.degrees(np.arccos(np.clip(dot, -1, 1)))
    return [abs_err, rel_err, error.mean(), np.median(error), np.mean(error < 11.25), np.mean(error < 22.5),
            np.mean(error < 30)]


NAMES = ["abs_err", "rel_err", "angle_mean", "angle_median", "within_11_25", "within_22_5", "within_30"]


def test_absent_class_keeps_miou_finite():
    # Class 2 of 3 appears in neither target nor prediction.
    label = torch.tensor([[0, 0, 1, 1]])
    prediction = torch.tensor([[0, 1, 1, 1]])
    confusion = confusion_matrix(prediction, label, num_classes=3)
    miou, pixacc = miou_and_pixel_accuracy(confusion)
    assert math.isfinite(miou)
    # IoU(0) = 1/2, IoU(1) = 2/3; class 2 is left out of the mean.
    assert miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert pixacc == pytest.approx(3 / 4)


def test_class_only_predicted_counts_as_zero_iou():
    label = torch.tensor([[0, 0, 0, 0]])
    prediction = torch.tensor([[0, 0, 0, 2]])
    miou, _ = miou_and_pixel_accuracy(confusion_matrix(prediction, label, num_classes=3))
    assert miou == pytest.approx((3 / 4 + 0.0) / 2)


def test_confusion_ignores_unlabelled_pixels():
    label = torch.tensor([[-1, 0, 1, -1]])
    prediction = torch.tensor([[1, 0, 1, 0]])
    confusion = confusion_matrix(prediction, label, num_classes=2)
    assert confusion.sum() == 2
    assert miou_and_pixel_accuracy(confusion) == (1.0, 1.0)


def test_empty_confusion_gives_nan():
    miou, pixacc = miou_and_pixel_accuracy(torch.zeros(3, 3, dtype=torch.int64))
    assert math.isnan(miou)
    assert math.isnan(pixacc)


@pytest.mark.parametrize("convention", ["per_batch", "pooled"])
def test_invalid_pixels_masked_in_every_metric(convention):
    generator = torch.Generator().manual_seed(0)
    outputs, batch = random_batch(generator, 2)
    targets = batch[1]
    clean = DenseAccumulator(TASKS, 4, convention)
    clean.update(outputs, batch)

    # Wild predictions at invalid pixels must not change any metric.
    noisy = {k: v.clone() for k, v in outputs.items()}
    depth_invalid = targets["depth"] == 0
    noisy["depth"][depth_invalid] = 1e6
    normal_invalid = (targets["normal"] == 0).all(dim=1, keepdim=True).expand_as(noisy["normal"])
    noisy["normal"][normal_invalid] = -1.0
    label_invalid = (targets["segmentation"] == -1).unsqueeze(1).expand_as(noisy["segmentation"])
    noisy["segmentation"][label_invalid] = 0.0
    assert depth_invalid.any()
    assert normal_invalid.any()
    assert label_invalid.any()
    perturbed = DenseAccumulator(TASKS, 4, convention)
    perturbed.update(noisy, batch)

    expected = clean.compute()
    got = perturbed.compute()
    for name in ["miou", "pixacc", *NAMES]:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


def test_relative_error_never_divides_by_invalid_depth():
    outputs = {"depth": torch.tensor([[[[1.0, 2.0]]]])}
    batch = (None, {"depth": torch.tensor([[[[0.0, 4.0]]]])})
    accumulator = DenseAccumulator(["depth"], 1)
    accumulator.update(outputs, batch)
    values = accumulator.compute()
    assert values["abs_err"] == pytest.approx(2.0)
    assert values["rel_err"] == pytest.approx(0.5)


def test_per_batch_equals_reference_formula_batch_size_2():
    generator = torch.Generator().manual_seed(1)
    accumulator = DenseAccumulator(TASKS, 4, "per_batch")
    per_batch = []
    # Five batches of 2 and a last batch of 1, as an odd test split would give.
    for n in [2, 2, 2, 2, 2, 1]:
        outputs, batch = random_batch(generator, n)
        accumulator.update(outputs, batch)
        per_batch.append(reference_batch_values(outputs, batch[1]))
    expected = np.mean(np.array(per_batch), axis=0)
    got = accumulator.compute()
    for name, value in zip(NAMES, expected):
        assert got[name] == pytest.approx(value, rel=1e-9), name


def test_pooled_equals_all_pixels_at_once():
    generator = torch.Generator().manual_seed(2)
    pooled = DenseAccumulator(TASKS, 4, "pooled")
    batches = [random_batch(generator, n, h=16, w=16) for n in (2, 2, 1)]
    for outputs, batch in batches:
        pooled.update(outputs, batch)
    all_outputs = {k: torch.cat([o[k] for o, _ in batches]) for k in TASKS}
    all_targets = {k: torch.cat([b[1][k] for _, b in batches]) for k in TASKS}
    expected = reference_batch_values(all_outputs, all_targets)
    got = pooled.compute()
    for name, value in zip(NAMES, expected):
        tolerance = 2e-3 if name == "angle_median" else 1e-9
        assert got[name] == pytest.approx(value, rel=tolerance), name


def test_conventions_differ_on_median():
    generator = torch.Generator().manual_seed(3)
    per_batch = DenseAccumulator(["normal"], 1, "per_batch")
    pooled = DenseAccumulator(["normal"], 1, "pooled")
    for _ in range(4):
        outputs, batch = random_batch(generator, 2)
        per_batch.update(outputs, batch)
        pooled.update(outputs, batch)
    assert per_batch.compute()["angle_median"] != pytest.approx(pooled.compute()["angle_median"], rel=1e-6)


def test_unknown_convention_rejected():
    with pytest.raises(ValueError, match="metric convention"):
        DenseAccumulator(TASKS, 4, "median_of_means")


def test_median_matches_numpy_even_and_odd():
    for values in ([3.0, 1.0, 2.0], [4.0, 1.0, 3.0, 2.0]):
        assert median(torch.tensor(values)) == pytest.approx(float(np.median(values)))


def test_histogram_median_within_one_bin():
    values = np.random.default_rng(0).uniform(0, 90, size=1001)
    width = 0.01
    histogram = torch.bincount(torch.from_numpy((values / width).astype(np.int64)), minlength=20000).double()
    assert abs(histogram_median(histogram, width) - np.median(values)) <= width


def test_segmentation_loss_ignores_minus_one():
    log_probabilities = torch.log_softmax(torch.randn(1, 3, 2, 2), dim=1)
    label = torch.tensor([[[0, -1], [2, -1]]])
    expected = -(log_probabilities[0, 0, 0, 0] + log_probabilities[0, 2, 1, 0]) / 2
    assert segmentation_loss(log_probabilities, label).item() == pytest.approx(expected.item())


def test_depth_loss_over_valid_pixels():
    prediction = torch.tensor([[[[1.0, 5.0, 2.0]]]])
    target = torch.tensor([[[[2.0, 0.0, 4.0]]]])
    assert depth_loss(prediction, target).item() == pytest.approx((1.0 + 2.0) / 2)


def test_normal_loss_is_one_minus_mean_dot():
    prediction = torch.tensor([[[[1.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]], [[0.0, 0.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]]])
    # Pixel 0: dot 1; pixel 1: target all zero (invalid); pixel 2: target all zero.
    assert normal_loss(prediction, target).item() == pytest.approx(0.0)
    target[0, 1, 0, 2] = 1.0
    # Pixel 2 now valid with dot 0: 1 − (1 + 0) / 2.
    assert normal_loss(prediction, target).item() == pytest.approx(0.5)


def test_losses_finite_without_valid_pixels():
    log_probabilities = torch.log_softmax(torch.randn(1, 3, 2, 2, requires_grad=True), dim=1)
    losses = [
        segmentation_loss(log_probabilities, torch.full((1, 2, 2), -1)),
        depth_loss(torch.ones(1, 1, 2, 2, requires_grad=True), torch.zeros(1, 1, 2, 2)),
        normal_loss(torch.ones(1, 3, 2, 2, requires_grad=True), torch.zeros(1, 3, 2, 2)),
    ]
    assert [loss.item() for loss in losses] == [0.0, 0.0, 1.0]
    for loss in losses:
        loss.backward()
