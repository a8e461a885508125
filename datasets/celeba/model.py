"""The CelebA multi-task CNN: a shared convolutional encoder and one linear head per attribute.

Shared part: convolution blocks, each a 3×3 convolution without bias (padding 1) →
BatchNorm → ReLU, with channels 3→64, max-pool, 64→128, 128→128, max-pool, 128→256,
256→256, max-pool, 256→512, 512→512, global average pool. Two blocks Linear 512→512
without bias → BatchNorm1d → ReLU follow. Each of the 40 heads is Linear 512→1. The heads return logits: the sigmoid of the
protocol sits inside the loss (``binary_cross_entropy_with_logits``) and the metric
(logit > 0 ⇔ sigmoid > 0.5).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from datasets.base import MTLModel

# Output channels of the convolution blocks; "pool" marks a 2×2 max-pool.
ENCODER_PLAN: tuple[int | str, ...] = (64, "pool", 128, 128, "pool", 256, 256, "pool", 512, 512)


class ConvBlock(nn.Module):
    """3×3 convolution without bias → BatchNorm2d → ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """Linear without bias → BatchNorm1d → ReLU."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.linear(x)))


class CelebACNN(MTLModel):
    """Shared CNN encoder and two shared linear blocks, then one logit head per attribute."""

    def __init__(self, task_names: Sequence[str], in_channels: int = 3, hidden: int = 512):
        super().__init__()
        self.task_names = list(task_names)

        layers: list[nn.Module] = []
        channels = in_channels
        for step in ENCODER_PLAN:
            if step == "pool":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(ConvBlock(channels, int(step)))
                channels = int(step)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.encoder = nn.Sequential(*layers)

        self.projection = nn.Sequential(LinearBlock(channels, hidden), LinearBlock(hidden, hidden))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, 1) for name in self.task_names})

    def representation(self, images: torch.Tensor) -> torch.Tensor:
        """Return the shared 512-dimensional representation of a (B, 3, H, W) batch in [0, 1]."""
        return self.projection(self.encoder(images))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.representation(images)
        return {name: head(shared).squeeze(-1) for name, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters()) + list(self.projection.parameters())

    def task_specific_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def lora_targets(self, mode: str = "paper") -> list[str]:
        """Name the shared 3×3 convolutions and the two shared linear layers (PEFT ``target_modules``).

        Only ``paper`` is defined: every shared layer with weights besides BatchNorm is a
        target, so there is nothing to extend.
        """
        if mode != "paper":
            raise ValueError(f"unknown LoRA target mode {mode!r} for the CelebA CNN; use 'paper'")
        return [name for name, module in self.named_modules()
                if isinstance(module, (nn.Conv2d, nn.Linear)) and not name.startswith("heads.")]
