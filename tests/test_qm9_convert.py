"""QM9 conversion from qm9pack records to PyG graphs, targets, and the graph cache."""
from __future__ import annotations

import ast
import importlib.metadata
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import require_shared
from datasets.qm9 import convert, graphs
from datasets.qm9.convert import (
    QM9_TARGETS,
    REQUIRED_COLUMNS,
    convert_record,
    molecule_to_graph,
    parse_coordinates,
    parse_elements,
    read_molecules,
    read_uncharacterized,
    targets_from_row,
)
from datasets.qm9.graphs import QM9CacheError, load_qm9_graphs, subset_positions

SAMPLE = "qm9/qm9pack_sample5000.csv.gz"

# gdb_1 (methane) as qm9pack 1.0.3 ships it, target-relevant columns only.
METHANE = {
    "Index": 1,
    "SMILES": "C",
    "N_atoms": 5,
    "Stoichiometry": "[4,1,0,0,0]",
    "Elements": "['C','H','H','H','H']",
    "XYZ_Ang": "[[-0.0126981359,1.0858041578,0.0080009958],[0.002150416,-0.0060313176,0.0019761204],"
               "[1.0117308433,1.4637511618,0.0002765748],[-0.540815069,1.4475266138,-0.8766437152],"
               "[-0.5238136345,1.4379326443,0.9063972942]]",
    "RotA_GHz": 157.7118, "RotB_GHz": 157.70997, "RotC_GHz": 157.70699,
    "Dipole_debye": 0.0, "Polarizability_bohr3": 13.21,
    "HOMO_au": -0.3877, "LUMO_au": 0.1171, "HOMO_LUMO_gap_au": 0.5048,
    "R2_bohr2": 35.3641, "ZPVE_au": 0.044749,
    "InternalEnergy_0K_au": -40.47893, "InternalEnergy_298K_au": -40.476062,
    "Enthalphy_298K_au": -40.475117, "GibbsFreeEnergy_298K_au": -40.498597,
    "Heatcapacity_Cv_cal_mol_K": 6.469,
}

# Independent copies of the constants: CODATA 2018 Hartree energy in eV and kcal/mol.
EV_PER_HARTREE = 27.211386246
KCAL_PER_MOL_PER_HARTREE = 627.509474
# Atomref energies (Hartree) of H, C, N, O, F for U0, U, H, G, the order of the
# Stoichiometry column.
ATOMREF = np.array([
    [-0.500273, -0.498857, -0.497912, -0.510927],
    [-37.846772, -37.845355, -37.844411, -37.861317],
    [-54.583861, -54.582445, -54.581501, -54.598897],
    [-75.064579, -75.063163, -75.062219, -75.079532],
    [-99.718730, -99.717314, -99.716370, -99.733544],
])


@pytest.fixture(scope="module")
def sample_csv() -> Path:
    return require_shared(SAMPLE)


@pytest.fixture(scope="module")
def sample(sample_csv) -> pd.DataFrame:
    """All columns of the sample, including Stoichiometry for independent atom counts."""
    return pd.read_csv(sample_csv)


def record(sample: pd.DataFrame, index: int) -> dict:
    rows = sample[sample["Index"] == index]
    assert len(rows) == 1, f"gdb_{index} is not in the sample"
    return rows.iloc[0].to_dict()


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows)[REQUIRED_COLUMNS].to_csv(path, index=False)
    return path


# Reading and parsing


def test_find_qm9pack_csv_lists_parts():
    try:
        importlib.metadata.distribution("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("qm9pack is not installed")
    paths = convert.find_qm9pack_csv()
    assert [p.name for p in paths] == ["qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"]
    assert all(p.is_file() for p in paths)


def test_find_qm9pack_csv_missing_package(monkeypatch):
    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(convert.importlib.metadata, "distribution", not_found)
    with pytest.raises(FileNotFoundError, match="pip install qm9pack"):
        convert.find_qm9pack_csv()


def test_parsers_match_literal_eval(sample):
    for elements, xyz in zip(sample["Elements"], sample["XYZ_Ang"]):
        assert parse_elements(elements) == ast.literal_eval(elements)
        expected = np.array(ast.literal_eval(xyz), dtype=np.float64)
        np.testing.assert_array_equal(parse_coordinates(xyz), expected)


def test_read_molecules_limit(sample_csv):
    head = read_molecules(sample_csv, limit=10)
    assert len(head) == 10
    assert list(head.columns) == REQUIRED_COLUMNS
    assert head["Index"].is_monotonic_increasing


def test_read_molecules_sorts_parts(tmp_path, sample):
    late = write_csv(tmp_path / "late.csv", sample.tail(3).to_dict("records"))
    early = write_csv(tmp_path / "early.csv", sample.head(4).to_dict("records"))
    combined = read_molecules([late, early])
    assert combined["Index"].tolist() == sorted(sample.head(4)["Index"].tolist() + sample.tail(3)["Index"].tolist())
    with pytest.raises(ValueError, match="more than once"):
        read_molecules([early, early])


def test_read_molecules_missing_column(tmp_path, sample):
    path = tmp_path / "bad.csv"
    sample.head(3).drop(columns=["SMILES"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="SMILES"):
        read_molecules(path)


def test_sample_excludes_uncharacterized(sample):
    listed = read_uncharacterized(require_shared("qm9/uncharacterized.txt"))
    assert len(listed) == 3054
    assert 133_885 - len(listed) == 130_831
    assert not listed & set(sample["Index"])


# Targets


def test_methane_atomisation_energy():
    y = targets_from_row(METHANE)
    assert y.shape == (19,)
    assert y.dtype == torch.float32
    assert abs(float(y[12]) - (-17.172)) < 1e-3
    kcal_per_mol = float(y[12]) / EV_PER_HARTREE * KCAL_PER_MOL_PER_HARTREE
    assert abs(kcal_per_mol - (-396.0)) < 0.05


@pytest.mark.parametrize("index", [3, 50, 940, 132183])
def test_target_units_each_column(sample, index):
    row = record(sample, index)
    counts = np.array(ast.literal_eval(row["Stoichiometry"]), dtype=np.float64)
    atom_energies = counts @ ATOMREF  # U0, U, H, G of the isolated atoms
    expected = {
        0: row["Dipole_debye"],
        1: row["Polarizability_bohr3"],
        2: row["HOMO_au"] * EV_PER_HARTREE,
        3: row["LUMO_au"] * EV_PER_HARTREE,
        4: row["HOMO_LUMO_gap_au"] * EV_PER_HARTREE,
        5: row["R2_bohr2"],
        6: row["ZPVE_au"] * EV_PER_HARTREE,
        7: row["InternalEnergy_0K_au"] * EV_PER_HARTREE,
        8: row["InternalEnergy_298K_au"] * EV_PER_HARTREE,
        9: row["Enthalphy_298K_au"] * EV_PER_HARTREE,
        10: row["GibbsFreeEnergy_298K_au"] * EV_PER_HARTREE,
        11: row["Heatcapacity_Cv_cal_mol_K"],
        12: (row["InternalEnergy_0K_au"] - atom_energies[0]) * EV_PER_HARTREE,
        13: (row["InternalEnergy_298K_au"] - atom_energies[1]) * EV_PER_HARTREE,
        14: (row["Enthalphy_298K_au"] - atom_energies[2]) * EV_PER_HARTREE,
        15: (row["GibbsFreeEnergy_298K_au"] - atom_energies[3]) * EV_PER_HARTREE,
        16: row["RotA_GHz"],
        17: row["RotB_GHz"],
        18: row["RotC_GHz"],
    }
    assert sorted(expected) == list(range(len(QM9_TARGETS)))
    y = targets_from_row(row)
    for column, value in expected.items():
        # float32 storage: 1e-6 relative, plus 1e-6 absolute for zero dipoles.
        assert float(y[column]) == pytest.approx(value, rel=1e-6, abs=1e-6), QM9_TARGETS[column]


def test_target_names_and_units():
    assert len(QM9_TARGETS) == 19
    assert QM9_TARGETS[7] == ("U0", "eV")
    assert QM9_TARGETS[12] == ("U0_atom", "eV")
    assert QM9_TARGETS[11] == ("cv", "cal/(mol K)")
    assert QM9_TARGETS[16] == ("A", "GHz")


# Node and edge features


def test_water_features(sample):
    graph, fallback = molecule_to_graph(record(sample, 3))
    assert fallback is None
    # columns: H C N O F, Z, aromatic, sp, sp2, sp3, bonded H
    oxygen = [0, 0, 0, 1, 0, 8, 0, 0, 0, 1, 2]
    hydrogen = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert graph.x.tolist() == [oxygen, hydrogen, hydrogen]
    assert graph.z.tolist() == [8, 1, 1]
    assert graph.edge_index.tolist() == [[0, 0, 1, 2], [1, 2, 0, 0]]
    assert graph.edge_attr.tolist() == [[1, 0, 0, 0]] * 4
    assert graph.name == "gdb_3"
    assert graph.idx.tolist() == [2]


def test_methane_features():
    graph, fallback = molecule_to_graph(METHANE)
    assert fallback is None
    assert graph.x[0].tolist() == [0, 1, 0, 0, 0, 6, 0, 0, 0, 1, 4]
    assert graph.x[1:].tolist() == [[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]] * 4
    assert graph.edge_index.size(1) == 8
    assert graph.smiles == "[H]C([H])([H])[H]"


def test_pyrrole_aromatic_features(sample):
    graph, fallback = molecule_to_graph(record(sample, 50))  # N1C=CC=C1
    assert fallback is None
    ring_nitrogen = [0, 0, 1, 0, 0, 7, 1, 0, 1, 0, 1]
    ring_carbon = [0, 1, 0, 0, 0, 6, 1, 0, 1, 0, 1]
    assert graph.x[0].tolist() == ring_nitrogen
    assert graph.x[1:5].tolist() == [ring_carbon] * 4
    bond_counts = graph.edge_attr.sum(dim=0).tolist()
    assert bond_counts == [10, 0, 0, 10]  # 5 N-H/C-H bonds, 5 aromatic ring bonds, both directions


def test_aniline_ring_is_aromatic(sample):
    graph, _ = molecule_to_graph(record(sample, 940))  # NC1=CC=CC=C1
    ring = graph.x[1:7]
    assert ring[:, 6].tolist() == [1] * 6
    assert ring[:, 8].tolist() == [1] * 6
    assert ring[:, 10].tolist() == [0, 1, 1, 1, 1, 1]
    assert graph.x[0, 10] == 2  # NH2


def test_pyg_feature_mode_matches_pyg_reader(sample):
    row = record(sample, 50)
    rdkit_graph, _ = molecule_to_graph(row, features="rdkit")
    pyg_graph, _ = molecule_to_graph(row, features="pyg")
    # PyG reads its SDF without sanitisation: no aromatic flags, unset hybridisation,
    # Kekulé bond types.
    assert pyg_graph.x[:, 6:10].abs().sum() == 0
    assert torch.equal(pyg_graph.x[:, [0, 1, 2, 3, 4, 5, 10]], rdkit_graph.x[:, [0, 1, 2, 3, 4, 5, 10]])
    assert pyg_graph.edge_attr.sum(dim=0).tolist() == [16, 4, 0, 0]
    assert torch.equal(pyg_graph.edge_index, rdkit_graph.edge_index)
    assert pyg_graph.smiles == "[H]C1=C([H])N([H])C([H])=C1[H]"


def test_graph_layout_on_sample(sample):
    rows = sample.iloc[::25].head(200).to_dict("records")
    for row in rows:
        graph, fallback = molecule_to_graph(row)
        name = graph.name
        n = int(row["N_atoms"])
        assert fallback in (None, "hueckel_connectivity"), name
        assert graph.x.dtype == torch.float32, name
        assert graph.x.shape == (n, 11), name
        assert graph.z.dtype == torch.long, name
        assert graph.z.shape == (n,), name
        assert graph.pos.dtype == torch.float32, name
        assert graph.pos.shape == (n, 3), name
        assert graph.edge_index.dtype == torch.long, name
        assert graph.edge_index.size(0) == 2, name
        assert graph.edge_attr.dtype == torch.float32, name
        assert graph.edge_attr.shape == (graph.edge_index.size(1), 4), name
        assert graph.y.dtype == torch.float32, name
        assert graph.y.shape == (1, 19), name
        assert graph.idx.dtype == torch.long, name
        assert graph.idx.tolist() == [row["Index"] - 1], name

        row_index, col_index = graph.edge_index
        pairs = set(zip(row_index.tolist(), col_index.tolist()))
        assert pairs == {(c, r) for r, c in pairs}, f"{name}: edges not symmetric"
        assert len(pairs) == graph.edge_index.size(1), f"{name}: duplicate edges"
        assert not (row_index == col_index).any(), f"{name}: self loop"
        keys = row_index * n + col_index
        assert torch.equal(keys, keys.sort().values), f"{name}: edges not sorted by (row, col)"
        assert graph.edge_attr.sum(dim=1).tolist() == [1.0] * graph.edge_index.size(1), name

        assert graph.x[:, :5].sum(dim=1).tolist() == [1.0] * n, name
        assert torch.equal(graph.x[:, 5].long(), graph.z), name
        bonded_h = torch.zeros(n).index_add_(0, col_index, (graph.z[row_index] == 1).float())
        assert torch.equal(graph.x[:, 10], bonded_h), name
        formula = [int((graph.z == z).sum()) for z in (1, 6, 7, 8, 9)]
        assert formula == ast.literal_eval(row["Stoichiometry"]), name
        np.testing.assert_allclose(graph.pos.numpy(), parse_coordinates(row["XYZ_Ang"]), atol=1e-6)


# Fallbacks


def test_contradicting_smiles_falls_back(sample):
    row = record(sample, 11)  # CC=O geometry
    row["SMILES"] = "C1CO1"  # ethylene oxide: same formula, other graph
    converted = convert_record(row)
    assert converted.fallback == "determine_bonds"
    assert "SMILES" in converted.reason
    assert converted.arrays["edge_attr"].sum(axis=0).tolist() == [10, 2, 0, 0]  # C=O found from geometry


def test_fallbacks_counted_in_build(tmp_path, sample):
    water = record(sample, 3)
    rows = [record(sample, index) for index in (3, 11, 50)]

    contradicting = dict(rows[1], Index=900_001, SMILES="C1CO1")
    hydroxyl = dict(water, Index=900_002, N_atoms=2, Elements="['O','H']",
                    XYZ_Ang="[[-0.0343604951,0.9775395708,0.0076015923],[0.0647664923,0.0205721989,0.0015346341]]")
    far_apart = dict(water, Index=900_003, XYZ_Ang="[[0,0,0],[5,0,0],[0,5,0]]")
    malformed = dict(water, Index=900_004, N_atoms=4)
    csv_path = write_csv(tmp_path / "mixed.csv", rows + [contradicting, hydroxyl, far_apart, malformed])

    built = load_qm9_graphs(tmp_path / "data", csv_path=csv_path, workers=1)
    assert len(built) == 6
    assert built.meta["n_molecules"] == 6
    counts = built.meta["fallback_counts"]
    assert counts["determine_bonds"] == 1
    assert counts["single_bonds"] == 1
    assert counts["no_bonds"] == 1
    assert built.meta["fallback_names"]["single_bonds"] == ["gdb_900002"]
    assert built.meta["skipped_records"] == ["gdb_900004"]
    assert built[5].edge_index.size(1) == 0


# Cache and dataset


def assert_same_graphs(left, right):
    assert len(left) == len(right)
    assert left.slices.keys() == right.slices.keys()
    for key, value in left._data.to_dict().items():
        other = right._data[key]
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, other), key
            assert torch.equal(left.slices[key], right.slices[key]), key
        else:
            assert value == other, key


def test_cache_roundtrip(tmp_path, sample_csv):
    root = tmp_path / "data"
    built = load_qm9_graphs(root, subset=40, csv_path=sample_csv, workers=1)
    assert built.meta["from_cache"] is False
    cache = root / "qm9pack" / "graphs_40_s0.pt"
    assert cache.is_file()
    assert not list(cache.parent.glob("*.tmp"))

    reloaded = load_qm9_graphs(root, subset=40, csv_path=sample_csv)
    assert reloaded.meta["from_cache"] is True
    assert_same_graphs(built, reloaded)
    for key in ("source", "n_molecules", "fallback_counts", "build_seconds", "csv_paths"):
        assert reloaded.meta[key] == built.meta[key], key


def test_dataset_item_equals_direct_conversion(tmp_path, sample_csv, sample):
    built = load_qm9_graphs(tmp_path, subset=10, csv_path=sample_csv, workers=1)
    for position in (0, 9):
        item = built[position]
        direct, _ = molecule_to_graph(record(sample, int(item.name.removeprefix("gdb_"))))
        for key in ("x", "z", "pos", "edge_index", "edge_attr", "y", "idx"):
            assert torch.equal(item[key], direct[key]), key
        assert item.smiles == direct.smiles


def test_dataset_indexing(tmp_path, sample_csv):
    built = load_qm9_graphs(tmp_path, subset=12, csv_path=sample_csv, workers=1)
    assert len(built) == 12
    assert built.y.shape == (12, 19)
    picked = built[[3, 1]]
    assert [g.name for g in picked] == [built[3].name, built[1].name]
    by_tensor = built[torch.tensor([5, 0, 7])]
    assert len(by_tensor) == 3
    assert by_tensor[2].name == built[7].name
    for key in ("source", "n_molecules", "fallback_counts", "build_seconds", "csv_paths"):
        assert key in built.meta, key


def test_truncated_cache_raises(tmp_path, sample_csv):
    root = tmp_path / "data"
    load_qm9_graphs(root, subset=20, csv_path=sample_csv, workers=1)
    cache = root / "qm9pack" / "graphs_20_s0.pt"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    with pytest.raises(QM9CacheError, match="delete it") as error:
        load_qm9_graphs(root, subset=20, csv_path=sample_csv)
    assert str(cache) in str(error.value)

    cache.write_bytes(b"")
    with pytest.raises(QM9CacheError, match="truncated or unreadable"):
        load_qm9_graphs(root, subset=20, csv_path=sample_csv)


def test_cache_rebuilt_for_other_csv(tmp_path, sample):
    first = write_csv(tmp_path / "a.csv", sample.head(6).to_dict("records"))
    second = write_csv(tmp_path / "b.csv", sample.head(8).to_dict("records"))
    root = tmp_path / "data"
    assert len(load_qm9_graphs(root, csv_path=first, workers=1)) == 6
    rebuilt = load_qm9_graphs(root, csv_path=second, workers=1)
    assert rebuilt.meta["from_cache"] is False
    assert len(rebuilt) == 8


def test_subset_positions_deterministic():
    first = subset_positions(5000, 50, 0)
    assert np.array_equal(first, subset_positions(5000, 50, 0))
    assert np.array_equal(subset_positions(5000, 20, 0), first[:20])
    assert not np.array_equal(subset_positions(5000, 50, 1), first)
    assert len(set(first.tolist())) == 50
    with pytest.raises(ValueError, match="subset"):
        subset_positions(5000, 5001, 0)


def test_subset_build_deterministic(tmp_path, sample_csv):
    first_build = load_qm9_graphs(tmp_path / "first", subset=25, subset_seed=3, csv_path=sample_csv, workers=1)
    second_build = load_qm9_graphs(tmp_path / "second", subset=25, subset_seed=3, csv_path=sample_csv, workers=1)
    assert_same_graphs(first_build, second_build)
    other_seed = load_qm9_graphs(tmp_path / "first", subset=25, subset_seed=4, csv_path=sample_csv, workers=1)
    assert other_seed._data.name != first_build._data.name
    assert (tmp_path / "first" / "qm9pack" / "graphs_25_s4.pt").is_file()


def test_worker_processes_keep_order(tmp_path, sample_csv):
    serial = load_qm9_graphs(tmp_path / "serial", subset=60, csv_path=sample_csv, workers=1)
    parallel = load_qm9_graphs(tmp_path / "parallel", subset=60, csv_path=sample_csv, workers=2)
    assert_same_graphs(serial, parallel)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="source"):
        load_qm9_graphs(tmp_path, source="sdf")
    with pytest.raises(ValueError, match="features"):
        load_qm9_graphs(tmp_path, features="morgan")
    with pytest.raises(ValueError, match="subset"):
        load_qm9_graphs(tmp_path, subset=0)


# PyG source (its download is replaced by a failing stub; nothing is fetched)


def test_pyg_source_download_failure(tmp_path, monkeypatch):
    from torch_geometric.datasets import QM9

    def offline(self):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(QM9, "download", offline)
    with pytest.raises(RuntimeError, match="source='qm9pack'") as error:
        load_qm9_graphs(tmp_path, source="pyg")
    assert str(tmp_path / "pyg" / "raw") in str(error.value)


def test_pyg_uncharacterized_layout_check(tmp_path):
    lines = require_shared("qm9/uncharacterized.txt").read_text().split("\n")
    shifted = tmp_path / "shifted.txt"
    shifted.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="layout"):
        graphs._check_uncharacterized_layout(shifted)

    # Without the three extra blank lines at the top, the copy has the original layout.
    assert lines[:3] == ["", "", ""]
    original = tmp_path / "original.txt"
    original.write_text("\n".join(lines[3:]))
    graphs._check_uncharacterized_layout(original)
