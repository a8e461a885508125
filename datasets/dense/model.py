"""SegNet with task attention (SegNet-MTAN) and the plain SegNet split model.

Both follow "End-to-End Multi-Task Learning with Attention" (Liu, Johns and Davison, 2019),
with the layer sizes of the reference implementation in the Nash-MTL repository
(``experiments/nyuv2/models.py``):

* shared SegNet: filters [64, 128, 256, 512, 512]. A conv block is Conv3×3 (padding 1) →
  BatchNorm → ReLU. The encoder stages have 2, 2, 3, 3, 3 blocks, and each ends in a 2×2
  max pool that keeps its indices. The decoder mirrors the encoder with max unpooling.
* MTAN: per task, an attention block (Conv1×1 → BN → ReLU → Conv1×1 → BN → Sigmoid) at
  every encoder and decoder level. Its mask multiplies the last feature map of that level,
  and a 3×3 conv block shared by all tasks carries the attended features to the next level.
* heads: Conv3×3 (64→64) then Conv1×1 to the task's channels. Segmentation returns
  log-probabilities (log-softmax), and surface normals are L2-normalised.

Convolutions get Xavier-normal weights and zero biases; BatchNorm starts at weight 1, bias 0.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from datasets.base import MTLModel

FILTERS = (64, 128, 256, 512, 512)
# Conv blocks per encoder stage (the decoder mirrors it).
STAGE_DEPTHS = (2, 2, 3, 3, 3)
SEGMENTATION = "segmentation"
NORMAL = "normal"


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv3×3 (padding 1) → BatchNorm → ReLU. The convolution is submodule ``0``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def attention_block(in_channels: int, hidden_channels: int, out_channels: int) -> nn.Sequential:
    """Conv1×1 → BN → ReLU → Conv1×1 → BN → Sigmoid: a soft mask in (0, 1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden_channels, kernel_size=1),
        nn.BatchNorm2d(hidden_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, out_channels, kernel_size=1),
        nn.BatchNorm2d(out_channels),
        nn.Sigmoid(),
    )


def prediction_head(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv3×3 (in→in, padding 1) then Conv1×1 (in→out), without normalisation between."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def init_weights(model: nn.Module) -> None:
    """Xavier-normal convolution and linear weights, zero biases, BatchNorm weight 1 and bias 0."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def finish_prediction(task: str, raw: torch.Tensor) -> torch.Tensor:
    """Apply the output transform of a task: log-softmax or L2 normalisation or none."""
    if task == SEGMENTATION:
        return F.log_softmax(raw, dim=1)
    if task == NORMAL:
        return raw / raw.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)
    return raw


def check_input_size(image: torch.Tensor, levels: int) -> None:
    factor = 2 ** levels
    height, width = image.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(f"SegNet input of {height}×{width} pixels: both sides must be multiples of {factor} "
                         f"(one 2×2 pooling per level, {levels} levels); set dataset.resolution accordingly")


class SharedSegNet(nn.Module):
    """The shared SegNet encoder-decoder.

    ``encoder[i]`` is stage i. Its first block changes the width and the others keep it.
    ``decoder[i]`` is the decoder stage that mirrors encoder stage i, so the forward pass
    runs ``decoder[4]`` first. Its first block maps to the next shallower width.
    """

    def __init__(self, filters: Sequence[int] = FILTERS, stage_depths: Sequence[int] = STAGE_DEPTHS,
                 in_channels: int = 3):
        super().__init__()
        if len(filters) != len(stage_depths):
            raise ValueError(f"filters {list(filters)} and stage_depths {list(stage_depths)} differ in length")
        self.filters = list(filters)
        encoder = []
        decoder = []
        for level, depth in enumerate(stage_depths):
            width = filters[level]
            previous = in_channels if level == 0 else filters[level - 1]
            encoder.append(nn.Sequential(conv_block(previous, width), *[conv_block(width, width) for _ in range(depth - 1)]))

            # The decoder stage mirrors this level: first block width→shallower width,
            # then depth − 1 blocks at the shallower width (level 0 keeps 64 channels).
            shallower = filters[max(level - 1, 0)]
            decoder.append(nn.Sequential(conv_block(width, shallower),
                                         *[conv_block(shallower, shallower) for _ in range(depth - 1)]))
        self.encoder = nn.ModuleList(encoder)
        self.decoder = nn.ModuleList(decoder)

    @property
    def levels(self) -> int:
        return len(self.encoder)

    def forward(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Return the feature maps that the attention modules read.

        ``encoder_first[i]`` / ``encoder_last[i]``: output of the first / last block of
        encoder stage i (before pooling). ``upsampled[j]`` / ``decoder_first[j]`` /
        ``decoder_last[j]``: unpooled input, first-block output and last-block output of
        the j-th decoder stage in forward order (j = 0 is the deepest).
        """
        check_input_size(image, self.levels)
        features: dict[str, list[torch.Tensor]] = {key: [] for key in (
            "encoder_first", "encoder_last", "upsampled", "decoder_first", "decoder_last")}

        indices = []
        x = image
        for stage in self.encoder:
            first = stage[0](x)
            last = stage[1:](first)
            features["encoder_first"].append(first)
            features["encoder_last"].append(last)
            x, pool_indices = F.max_pool2d(last, kernel_size=2, stride=2, return_indices=True)
            indices.append(pool_indices)

        for level in reversed(range(self.levels)):
            x = F.max_unpool2d(x, indices[level], kernel_size=2, stride=2)
            stage = self.decoder[level]
            first = stage[0](x)
            last = stage[1:](first)
            features["upsampled"].append(x)
            features["decoder_first"].append(first)
            features["decoder_last"].append(last)
            x = last
        return features


class SegNetMTAN(MTLModel):
    """SegNet-MTAN of "End-to-End Multi-Task Learning with Attention" (Liu et al., 2019).

    ``task_channels`` maps each task to its output channels, e.g.
    ``{"segmentation": 13, "depth": 1, "normal": 3}``; the task named ``segmentation``
    returns log-probabilities and ``normal`` returns unit vectors.

    ``attention_shared`` decides where the per-task attention blocks count: True (default)
    puts every parameter except the heads in :meth:`shared_parameters`, as the Nash-MTL,
    FAMO and COST code does; False moves the per-task attention blocks to
    :meth:`task_specific_parameters`, as the original CAGrad code does. The 3×3 blocks shared
    between attention levels stay shared in both cases.
    """

    def __init__(self, task_channels: Mapping[str, int], filters: Sequence[int] = FILTERS,
                 stage_depths: Sequence[int] = STAGE_DEPTHS, attention_shared: bool = True):
        super().__init__()
        self.task_names = list(task_channels)
        self.attention_shared = attention_shared
        self.backbone = SharedSegNet(filters, stage_depths)
        levels = len(filters)
        f = list(filters)

        # Encoder level i reads the stage's first-block output (f[i] channels) and, above
        # level 0, the attended features of level i − 1 carried by a shared block (f[i]).
        # Decoder level j (forward order, level = levels − 1 − j) reads the unpooled input
        # (f[level]) and the carried attended features (f[level − 1] or f[0] at level 0).
        self.encoder_attention = nn.ModuleDict({
            task: nn.ModuleList([attention_block(f[i] if i == 0 else 2 * f[i], f[i], f[i]) for i in range(levels)])
            for task in self.task_names
        })
        self.decoder_attention = nn.ModuleDict({
            task: nn.ModuleList([
                attention_block(f[level] + f[max(level - 1, 0)] if level > 0 else 2 * f[0],
                                f[max(level - 1, 0)], f[max(level - 1, 0)])
                for level in range(levels)
            ])
            for task in self.task_names
        })

        # Shared 3×3 blocks between attention levels. Encoder level i maps f[i] to the width
        # of level i + 1, and the deepest level keeps its width. Decoder level i maps f[i]
        # to f[i − 1], the width of its attention mask (f[0] at level 0). The reference code
        # keeps 512 at the deepest decoder level, which equals f[3] for the default filters.
        self.encoder_attention_convs = nn.ModuleList(
            [conv_block(f[i], f[min(i + 1, levels - 1)]) for i in range(levels)])
        self.decoder_attention_convs = nn.ModuleList([conv_block(f[i], f[max(i - 1, 0)]) for i in range(levels)])
        self.heads = nn.ModuleDict({task: prediction_head(f[0], channels) for task, channels in task_channels.items()})
        init_weights(self)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(image)
        levels = self.backbone.levels
        outputs = {}
        for task in self.task_names:
            attended = None
            for i in range(levels):
                source = features["encoder_first"][i]
                if attended is not None:
                    source = torch.cat([source, attended], dim=1)
                mask = self.encoder_attention[task][i](source)
                attended = F.max_pool2d(self.encoder_attention_convs[i](mask * features["encoder_last"][i]),
                                        kernel_size=2, stride=2)

            for j in range(levels):
                level = levels - 1 - j
                carried = F.interpolate(attended, scale_factor=2, mode="bilinear", align_corners=True)
                carried = self.decoder_attention_convs[level](carried)
                mask = self.decoder_attention[task][level](torch.cat([features["upsampled"][j], carried], dim=1))
                attended = mask * features["decoder_last"][j]
            outputs[task] = finish_prediction(task, self.heads[task](attended))
        return outputs

    def _is_task_specific(self, name: str) -> bool:
        if name.startswith("heads."):
            return True
        if not self.attention_shared:
            return name.startswith(("encoder_attention.", "decoder_attention."))
        return False

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not self._is_task_specific(name)]

    def task_specific_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if self._is_task_specific(name)]

    def lora_targets(self, mode: str = "paper") -> list[str]:
        """Name the shared 3×3 convolutions a LoRA adapter wraps (PEFT ``target_modules``).

        ``paper``: every 3×3 convolution of the encoder and decoder stages and of the shared
        blocks between attention levels, 36 with the default stage depths (26 + 10). Task
        attention blocks and heads are never targets. ``backbone``: only the encoder and
        decoder stages (26).
        """
        if mode not in ("paper", "backbone"):
            raise ValueError(f"unknown LoRA target mode {mode!r} for SegNet-MTAN; use 'paper' or 'backbone'")
        targets = backbone_conv_names(self.backbone, prefix="backbone.")
        if mode == "paper":
            for group in ("encoder_attention_convs", "decoder_attention_convs"):
                targets += [f"{group}.{i}.0" for i in range(len(getattr(self, group)))]
        return targets


class SegNetSplit(MTLModel):
    """Plain SegNet with one head per task, the "standard" split model of the reference code.

    Every parameter except the heads is shared, and the heads read the last decoder output.
    Filters [64, 128, 256, 512, 1024] give the reference code's "wide" variant.
    """

    def __init__(self, task_channels: Mapping[str, int], filters: Sequence[int] = FILTERS,
                 stage_depths: Sequence[int] = STAGE_DEPTHS):
        super().__init__()
        self.task_names = list(task_channels)
        self.backbone = SharedSegNet(filters, stage_depths)
        self.heads = nn.ModuleDict({task: prediction_head(filters[0], channels)
                                    for task, channels in task_channels.items()})
        init_weights(self)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.backbone(image)["decoder_last"][-1]
        return {task: finish_prediction(task, self.heads[task](shared)) for task in self.task_names}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def task_specific_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def lora_targets(self, mode: str = "paper") -> list[str]:
        """Name every 3×3 convolution of the shared encoder-decoder (26 by default)."""
        if mode not in ("paper", "backbone"):
            raise ValueError(f"unknown LoRA target mode {mode!r} for SegNet; use 'paper' or 'backbone'")
        return backbone_conv_names(self.backbone, prefix="backbone.")


def backbone_conv_names(backbone: SharedSegNet, prefix: str) -> list[str]:
    """Return the qualified names of the 3×3 convolutions of the encoder and decoder stages."""
    names = []
    for part in ("encoder", "decoder"):
        for level, stage in enumerate(getattr(backbone, part)):
            names += [f"{prefix}{part}.{level}.{block}.0" for block in range(len(stage))]
    return names


def build_segnet(kind: str, task_channels: Mapping[str, int], filters: Sequence[int] = FILTERS,
                 attention_shared: bool = True) -> MTLModel:
    """Build ``mtan`` (SegNet-MTAN) or ``split`` (plain SegNet with task heads)."""
    if kind == "mtan":
        return SegNetMTAN(task_channels, filters=filters, attention_shared=attention_shared)
    if kind == "split":
        return SegNetSplit(task_channels, filters=filters)
    raise ValueError(f"unknown model kind {kind!r}; use 'mtan' or 'split' (dataset.model.kind)")
