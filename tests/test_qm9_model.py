"""The QM9 MPNN: equivalence of its convolution to PyG's NNConv, parameter split, LoRA targets."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import NNConv

from datasets.qm9.model import EdgeConditionedConv, QM9MPNN


def random_graph(num_nodes: int, seed: int) -> Data:
    generator = torch.Generator().manual_seed(seed)
    row = torch.arange(num_nodes).repeat_interleave(num_nodes)
    col = torch.arange(num_nodes).repeat(num_nodes)
    keep = row != col
    return Data(x=torch.randn(num_nodes, 11, generator=generator), edge_index=torch.stack([row[keep], col[keep]]),
                edge_attr=torch.randn(int(keep.sum()), 5, generator=generator))


def test_edge_conditioned_conv_equals_nnconv():
    torch.manual_seed(0)
    edge_network = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 8 * 6))
    reference = NNConv(8, 6, edge_network, aggr="mean")
    ours = EdgeConditionedConv(8, 6, edge_network)
    with torch.no_grad():
        ours.root.weight.copy_(reference.lin.weight)
        ours.bias.copy_(torch.randn(6))
        reference.bias.copy_(ours.bias)
    graph = random_graph(7, seed=1)
    x = torch.randn(7, 8)
    expected = reference(x, graph.edge_index, graph.edge_attr)
    got = ours(x, graph.edge_index, ours.edge_weights(graph.edge_attr))
    assert torch.allclose(got, expected, atol=1e-5)


def test_mpnn_outputs_and_parameter_split():
    tasks = [f"t{k}" for k in range(11)]
    model = QM9MPNN(tasks, hidden=16)
    batch = Batch.from_data_list([random_graph(5, 2), random_graph(9, 3)])
    outputs = model(batch)
    assert list(outputs) == tasks
    assert all(out.shape == (2,) for out in outputs.values())
    shared = {id(p) for p in model.shared_parameters()}
    specific = {id(p) for p in model.task_specific_parameters()}
    assert not shared & specific
    assert shared | specific == {id(p) for p in model.parameters()}
    assert len(specific) == 2 * 11


def test_mpnn_lora_targets_exist():
    model = QM9MPNN(["a"], hidden=16)
    names = dict(model.named_modules())
    assert model.lora_targets("paper") == ["lin0", "lin1"]
    for name in model.lora_targets("extended"):
        assert isinstance(names[name], nn.Linear), name
    with pytest.raises(ValueError, match="unknown LoRA target mode"):
        model.lora_targets("everything")
