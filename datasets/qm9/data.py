"""QM9 splits, target standardisation and the complete-graph transform."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data

# Targets reported in meV instead of eV (the MAE is multiplied by 1000).
MEV_TARGETS = {2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15}


def complete_graph_with_distance(data: Data) -> Data:
    """Return a copy of ``data`` on the complete graph without self loops.

    Bond edges keep their 4 bond-type features, the other pairs get zeros, and the
    Euclidean distance between the two atoms (Å, not normalised) is appended: 5 edge
    features, as in the QM9 examples of PyTorch Geometric.
    """
    num_nodes = data.num_nodes
    row = torch.arange(num_nodes).repeat_interleave(num_nodes)
    col = torch.arange(num_nodes).repeat(num_nodes)
    keep = row != col
    row, col = row[keep], col[keep]
    bond_features = torch.zeros(num_nodes * num_nodes, data.edge_attr.size(1), dtype=data.edge_attr.dtype)
    if data.edge_index.numel():
        flat = data.edge_index[0] * num_nodes + data.edge_index[1]
        bond_features[flat] = data.edge_attr
    bond_features = bond_features.view(num_nodes, num_nodes, -1)[row, col]
    distance = (data.pos[row] - data.pos[col]).norm(dim=-1, keepdim=True)
    return Data(x=data.x, pos=data.pos, z=getattr(data, "z", None), edge_index=torch.stack([row, col]),
                edge_attr=torch.cat([bond_features, distance], dim=-1), y=data.y)


def split_indices(num_molecules: int, test: int, val: int, seed: int) -> dict[str, torch.Tensor]:
    """Shuffle with ``seed``; test = first ``test``, val = next ``val``, train = the rest."""
    if test + val >= num_molecules:
        raise ValueError(f"split sizes test={test} + val={val} leave no training molecules out of {num_molecules}; "
                         "lower dataset.split.test/val or raise dataset.subset")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_molecules, generator=generator)
    return {"test": order[:test], "val": order[test : test + val], "train": order[test + val :]}


@dataclass
class TargetScaler:
    """Standardises the selected targets with training-set mean and std."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, targets: torch.Tensor) -> "TargetScaler":
        return cls(mean=targets.mean(dim=0), std=targets.std(dim=0))

    def transform(self, targets: torch.Tensor) -> torch.Tensor:
        return (targets - self.mean) / self.std

    def inverse(self, targets: torch.Tensor) -> torch.Tensor:
        return targets * self.std.to(targets.device) + self.mean.to(targets.device)


class QM9Split(Dataset):
    """One split: graphs on the complete graph, ``y`` = standardised selected targets (1 × T).

    ``y_raw`` keeps the selected targets in PyG units for MAE in original units.
    """

    def __init__(self, graphs, indices: torch.Tensor, targets: list[int], scaler: TargetScaler):
        self.graphs = graphs
        self.indices = indices
        self.targets = targets
        self.scaler = scaler

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> Data:
        data = self.graphs[int(self.indices[item])]
        graph = complete_graph_with_distance(data)
        raw = data.y.view(1, -1)[:, self.targets].float()
        graph.y_raw = raw
        graph.y = self.scaler.transform(raw)
        return graph


def all_targets(graphs) -> torch.Tensor:
    """Return the (N, 19) target matrix of a graph collection."""
    y = getattr(graphs, "y", None)
    if isinstance(y, torch.Tensor) and y.dim() == 2 and y.size(0) == len(graphs):
        return y
    return torch.cat([graphs[i].y.view(1, -1) for i in range(len(graphs))])
