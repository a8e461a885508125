"""The MPNN of "Neural Message Passing for Quantum Chemistry" (Gilmer et al., 2017) with 11 heads.

Shared part: Linear 11→64 + ReLU; NNConv(64, 64, mean aggregation) whose edge network is
Linear 5→128 → ReLU → Linear 128→64·64; GRU(64, 64); three message-passing iterations with
shared weights; Set2Set(64, 3 steps); Linear 128→64 + ReLU. One Linear 64→1 head per task.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch_geometric.nn import Set2Set
from torch_geometric.utils import scatter

from datasets.base import MTLModel


class EdgeConditionedConv(nn.Module):
    """The edge-conditioned convolution of PyG's ``NNConv(aggr="mean")``, split in two calls.

    ``edge_weights`` runs the edge network once per forward pass, and ``forward`` reuses
    its (E, in, out) output in every message-passing iteration. PyG's ``NNConv`` recomputes
    the edge network in each iteration although the edge features do not change; the result
    is the same, at a third of the cost of the largest layer. Output:
    ``mean_{j→i} x_j · W(e_ji) + x_i · root + bias``.
    """

    def __init__(self, in_channels: int, out_channels: int, edge_network: nn.Module):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.nn = edge_network
        self.root = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def edge_weights(self, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.nn(edge_attr).view(-1, self.in_channels, self.out_channels)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        source, target = edge_index
        messages = torch.bmm(x[source].unsqueeze(1), weights).squeeze(1)
        aggregated = scatter(messages, target, dim=0, dim_size=x.size(0), reduce="mean")
        return aggregated + self.root(x) + self.bias


class QM9MPNN(MTLModel):
    def __init__(self, task_names: Sequence[str], num_node_features: int = 11, num_edge_features: int = 5,
                 hidden: int = 64, message_passing_steps: int = 3, set2set_steps: int = 3):
        super().__init__()
        self.task_names = list(task_names)
        self.message_passing_steps = message_passing_steps
        self.lin0 = nn.Linear(num_node_features, hidden)
        edge_network = nn.Sequential(nn.Linear(num_edge_features, 128), nn.ReLU(), nn.Linear(128, hidden * hidden))
        self.conv = EdgeConditionedConv(hidden, hidden, edge_network)
        self.gru = nn.GRU(hidden, hidden)
        self.set2set = Set2Set(hidden, processing_steps=set2set_steps)
        self.lin1 = nn.Linear(2 * hidden, hidden)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, 1) for name in self.task_names})

    def encode(self, data) -> torch.Tensor:
        out = torch.relu(self.lin0(data.x))
        hidden = out.unsqueeze(0)
        weights = self.conv.edge_weights(data.edge_attr)
        for _ in range(self.message_passing_steps):
            message = torch.relu(self.conv(out, data.edge_index, weights))
            out, hidden = self.gru(message.unsqueeze(0), hidden)
            out = out.squeeze(0)
        pooled = self.set2set(out, data.batch)
        return torch.relu(self.lin1(pooled))

    def forward(self, data) -> dict[str, torch.Tensor]:
        representation = self.encode(data)
        return {name: head(representation).squeeze(-1) for name, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("heads.")]

    def task_specific_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def lora_targets(self, mode: str = "paper") -> list[str]:
        """Name the shared linear layers a LoRA adapter wraps.

        ``paper``: the input and output linear layers (PEFT cannot wrap the convolution or the GRU).
        ``extended``: also the two linear layers of the NNConv edge network.
        """
        targets = ["lin0", "lin1"]
        if mode == "extended":
            targets += ["conv.nn.0", "conv.nn.2"]
        elif mode != "paper":
            raise ValueError(f"unknown LoRA target mode {mode!r} for the QM9 MPNN; use 'paper' or 'extended'")
        return targets
