"""SegNet-MTAN and SegNet split: structure, outputs, parameter partition and LoRA targets."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from datasets.dense.model import FILTERS, SegNetMTAN, SegNetSplit, build_segnet

NYUV2_TASKS = {"segmentation": 13, "depth": 1, "normal": 3}
SMALL = [8, 16, 16, 32, 32]


@pytest.fixture(scope="module")
def full_model() -> SegNetMTAN:
    return SegNetMTAN(NYUV2_TASKS)


def conv_widths(stage: nn.Sequential) -> list[tuple[int, int]]:
    return [(block[0].in_channels, block[0].out_channels) for block in stage]


def test_encoder_stage_depths_and_widths(full_model):
    encoder = full_model.backbone.encoder
    assert [len(stage) for stage in encoder] == [2, 2, 3, 3, 3]
    assert conv_widths(encoder[0]) == [(3, 64), (64, 64)]
    assert conv_widths(encoder[1]) == [(64, 128), (128, 128)]
    assert conv_widths(encoder[2]) == [(128, 256), (256, 256), (256, 256)]
    assert conv_widths(encoder[4]) == [(512, 512)] * 3


def test_decoder_mirrors_encoder(full_model):
    decoder = full_model.backbone.decoder
    assert [len(stage) for stage in decoder] == [2, 2, 3, 3, 3]
    assert conv_widths(decoder[0]) == [(64, 64), (64, 64)]
    assert conv_widths(decoder[1]) == [(128, 64), (64, 64)]
    assert conv_widths(decoder[2]) == [(256, 128), (128, 128), (128, 128)]
    assert conv_widths(decoder[3]) == [(512, 256), (256, 256), (256, 256)]
    assert conv_widths(decoder[4]) == [(512, 512)] * 3


def test_conv_block_is_conv_bn_relu(full_model):
    block = full_model.backbone.encoder[0][0]
    assert isinstance(block[0], nn.Conv2d)
    assert block[0].kernel_size == (3, 3)
    assert block[0].padding == (1, 1)
    assert isinstance(block[1], nn.BatchNorm2d)
    assert isinstance(block[2], nn.ReLU)


def test_attention_block_layout(full_model):
    block = full_model.encoder_attention["depth"][2]
    kinds = [type(m) for m in block]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.Sigmoid]
    assert block[0].kernel_size == (1, 1)
    assert block[3].kernel_size == (1, 1)
    assert (block[0].in_channels, block[3].out_channels) == (512, 256)
    assert full_model.decoder_attention["depth"][4][0].in_channels == 1024
    assert full_model.decoder_attention["depth"][0][0].in_channels == 128


def test_heads_are_conv3_then_conv1(full_model):
    head = full_model.heads["segmentation"]
    assert (head[0].in_channels, head[0].out_channels, head[0].kernel_size) == (64, 64, (3, 3))
    assert (head[1].in_channels, head[1].out_channels, head[1].kernel_size) == (64, 13, (1, 1))


def test_xavier_init_and_zero_bias(full_model):
    conv = full_model.backbone.encoder[3][1][0]
    fan_in = conv.in_channels * 9
    fan_out = conv.out_channels * 9
    expected_std = (2.0 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.02)
    biases = [m.bias for m in full_model.modules() if isinstance(m, nn.Conv2d)]
    assert all(torch.count_nonzero(b) == 0 for b in biases)


def test_outputs_shapes_and_transforms():
    model = SegNetMTAN(NYUV2_TASKS, filters=SMALL).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 96))
    assert out["segmentation"].shape == (2, 13, 64, 96)
    assert out["depth"].shape == (2, 1, 64, 96)
    assert out["normal"].shape == (2, 3, 64, 96)
    probabilities = out["segmentation"].exp().sum(dim=1)
    assert torch.allclose(probabilities, torch.ones_like(probabilities), atol=1e-5)
    norms = out["normal"].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_input_size_not_multiple_of_32_rejected():
    model = SegNetMTAN({"segmentation": 7, "depth": 1}, filters=SMALL)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 48, 64))


def test_task_loss_reaches_only_own_attention():
    model = SegNetMTAN({"segmentation": 7, "depth": 1}, filters=SMALL)
    out = model(torch.rand(2, 3, 64, 64))
    out["depth"].mean().backward()
    depth_grads = [p.grad for p in model.encoder_attention["depth"].parameters()]
    segmentation_grads = [p.grad for p in model.encoder_attention["segmentation"].parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in depth_grads)
    assert all(g is None for g in segmentation_grads)
    assert model.heads["segmentation"][0].weight.grad is None
    assert model.encoder_attention_convs[0][0].weight.grad.abs().sum() > 0


def parameter_ids(params) -> set[int]:
    return {id(p) for p in params}


def test_default_partition_shares_all_but_heads(full_model):
    shared = parameter_ids(full_model.shared_parameters())
    specific = parameter_ids(full_model.task_specific_parameters())
    assert specific == parameter_ids(full_model.heads.parameters())
    assert not shared & specific
    assert shared | specific == parameter_ids(full_model.parameters())
    assert parameter_ids(full_model.encoder_attention.parameters()) <= shared


def test_attention_excluded_partition():
    model = SegNetMTAN(NYUV2_TASKS, filters=SMALL, attention_shared=False)
    shared = parameter_ids(model.shared_parameters())
    specific = parameter_ids(model.task_specific_parameters())
    attention = parameter_ids(model.encoder_attention.parameters()) | parameter_ids(model.decoder_attention.parameters())
    assert attention <= specific
    assert not attention & shared
    assert parameter_ids(model.encoder_attention_convs.parameters()) <= shared
    assert shared | specific == parameter_ids(model.parameters())


def test_lora_targets_are_36_shared_3x3_convs(full_model):
    targets = full_model.lora_targets("paper")
    modules = dict(full_model.named_modules())
    assert len(targets) == 36
    assert len(set(targets)) == 36
    for name in targets:
        module = modules[name]
        assert isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3), name
        assert not name.startswith(("heads", "encoder_attention.", "decoder_attention.")), name
    shared = parameter_ids(full_model.shared_parameters())
    assert all(id(modules[name].weight) in shared for name in targets)


def test_lora_targets_backbone_mode(full_model):
    targets = full_model.lora_targets("backbone")
    assert len(targets) == 26
    assert all(name.startswith("backbone.") for name in targets)
    with pytest.raises(ValueError, match="unknown LoRA target mode"):
        full_model.lora_targets("everything")


def test_peft_wraps_exactly_the_targets():
    peft = pytest.importorskip("peft")
    model = SegNetMTAN({"segmentation": 7, "depth": 1}, filters=SMALL)
    targets = model.lora_targets("paper")
    wrapped = peft.inject_adapter_in_model(peft.LoraConfig(r=5, target_modules=targets), model)
    lora_layers = [name for name, module in wrapped.named_modules() if hasattr(module, "lora_A") and
                   isinstance(module, peft.tuners.lora.LoraLayer)]
    assert len(lora_layers) == 36
    out = wrapped(torch.rand(1, 3, 64, 64))
    assert out["depth"].shape == (1, 1, 64, 64)


def test_split_model_outputs_and_partition():
    model = build_segnet("split", {"segmentation": 7, "depth": 1}, filters=SMALL)
    assert isinstance(model, SegNetSplit)
    out = model(torch.rand(2, 3, 64, 64))
    assert out["segmentation"].shape == (2, 7, 64, 64)
    shared = parameter_ids(model.shared_parameters())
    specific = parameter_ids(model.task_specific_parameters())
    assert shared | specific == parameter_ids(model.parameters())
    assert len(model.lora_targets()) == 26


def test_unknown_model_kind_rejected():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_segnet("unet", {"segmentation": 7}, filters=FILTERS)


def test_widening_deepest_level_keeps_shapes():
    # The reference "wide" split model uses 1024 filters at the deepest level.
    for model in (SegNetMTAN({"segmentation": 7, "depth": 1}, filters=[8, 16, 32, 64, 128]),
                  SegNetSplit({"segmentation": 7, "depth": 1}, filters=[8, 16, 32, 64, 128])):
        out = model(torch.rand(1, 3, 64, 64))
        assert out["depth"].shape == (1, 1, 64, 64), type(model).__name__
