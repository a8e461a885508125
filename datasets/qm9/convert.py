"""Conversion of qm9pack QM9 records into PyTorch Geometric graphs.

Each graph has the fields, shapes and dtypes of ``torch_geometric.datasets.QM9`` (PyG 2.8).
These are ``x`` (N, 11) float, ``z`` (N,) long, ``pos`` (N, 3) float in Å, ``edge_index``
(2, E) long, ``edge_attr`` (E, 4) float, ``y`` (1, 19) float, ``smiles``, ``name``
("gdb_<Index>") and ``idx``. The edges are both directions of every bond, sorted by (row, col).

Bonds are perceived with RDKit: connectivity from the 3-D coordinates, bond orders and formal
charges from the record's SMILES. Where that fails, a fallback takes over and its kind is
returned so that the caller can count it (see ``FALLBACK_KINDS``).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, NamedTuple

import numpy as np
import pandas as pd
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds
from rdkit.Chem.rdchem import BondType, HybridizationType

# torch and torch_geometric are imported inside the functions that build tensors, so that
# conversion worker processes, which only run convert_record, start without importing them.
if TYPE_CHECKING:
    import torch
    from torch_geometric.data import Data

# CODATA 2018 value, the factor PyG 2.8 uses (HAR2EV in torch_geometric/datasets/qm9.py).
HARTREE_TO_EV = 27.211386246

# (name, unit) of the 19 columns of ``data.y``, in the order of torch_geometric.datasets.QM9.
# Columns 7-10 are total energies, columns 12-15 atomisation energies.
QM9_TARGETS: list[tuple[str, str]] = [
    ("mu", "D"),
    ("alpha", "a0^3"),
    ("homo", "eV"),
    ("lumo", "eV"),
    ("gap", "eV"),
    ("r2", "a0^2"),
    ("zpve", "eV"),
    ("U0", "eV"),
    ("U", "eV"),
    ("H", "eV"),
    ("G", "eV"),
    ("cv", "cal/(mol K)"),
    ("U0_atom", "eV"),
    ("U_atom", "eV"),
    ("H_atom", "eV"),
    ("G_atom", "eV"),
    ("A", "GHz"),
    ("B", "GHz"),
    ("C", "GHz"),
]

# Energies of the isolated atoms in Hartree at B3LYP/6-31G(2df,p): U0, U(298.15 K),
# H(298.15 K), G(298.15 K). These are the QM9 "atomref" values.
ATOM_REFERENCE_ENERGIES_HARTREE: dict[str, tuple[float, float, float, float]] = {
    "H": (-0.500273, -0.498857, -0.497912, -0.510927),
    "C": (-37.846772, -37.845355, -37.844411, -37.861317),
    "N": (-54.583861, -54.582445, -54.581501, -54.598897),
    "O": (-75.064579, -75.063163, -75.062219, -75.079532),
    "F": (-99.718730, -99.717314, -99.716370, -99.733544),
}

# Target column -> (qm9pack CSV column, factor to the PyG unit).
DIRECT_TARGET_COLUMNS: dict[int, tuple[str, float]] = {
    0: ("Dipole_debye", 1.0),
    1: ("Polarizability_bohr3", 1.0),
    2: ("HOMO_au", HARTREE_TO_EV),
    3: ("LUMO_au", HARTREE_TO_EV),
    4: ("HOMO_LUMO_gap_au", HARTREE_TO_EV),
    5: ("R2_bohr2", 1.0),
    6: ("ZPVE_au", HARTREE_TO_EV),
    7: ("InternalEnergy_0K_au", HARTREE_TO_EV),
    8: ("InternalEnergy_298K_au", HARTREE_TO_EV),
    9: ("Enthalphy_298K_au", HARTREE_TO_EV),
    10: ("GibbsFreeEnergy_298K_au", HARTREE_TO_EV),
    11: ("Heatcapacity_Cv_cal_mol_K", 1.0),
    16: ("RotA_GHz", 1.0),
    17: ("RotB_GHz", 1.0),
    18: ("RotC_GHz", 1.0),
}

# Atomisation target column -> (total-energy CSV column, position in the atomref tuples).
ATOMISATION_TARGET_COLUMNS: dict[int, tuple[str, int]] = {
    12: ("InternalEnergy_0K_au", 0),
    13: ("InternalEnergy_298K_au", 1),
    14: ("Enthalphy_298K_au", 2),
    15: ("GibbsFreeEnergy_298K_au", 3),
}

STRUCTURE_COLUMNS = ["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"]
REQUIRED_COLUMNS = STRUCTURE_COLUMNS + [column for column, _ in DIRECT_TARGET_COLUMNS.values()]

# One-hot positions of the node and edge features, as in torch_geometric.datasets.QM9.
ATOM_TYPES = {"H": 0, "C": 1, "N": 2, "O": 3, "F": 4}
BOND_TYPES = {BondType.SINGLE: 0, BondType.DOUBLE: 1, BondType.TRIPLE: 2, BondType.AROMATIC: 3}

# Bond perception outcomes other than the normal path (SMILES template on the connectivity
# that RDKit's connect-the-dots method derives from the coordinates), in the order tried:
#   hueckel_connectivity: the template fits the connectivity of RDKit's extended Hückel
#       method instead; the graph is as reliable as on the normal path;
#   determine_bonds: the template fits neither, and RDKit's DetermineBondOrders (total
#       charge 0) supplied bond orders for the geometric connectivity;
#   single_bonds: that failed too, so every bond is single and no atom is aromatic;
#   no_bonds: RDKit derived no connectivity from the coordinates, so the graph has no edges.
FALLBACK_KINDS = ("hueckel_connectivity", "determine_bonds", "single_bonds", "no_bonds")

# Node and edge features:
#   rdkit: aromaticity, hybridisation and aromatic bond types of the sanitised RDKit molecule;
#   pyg: the values torch_geometric.datasets.QM9 stores. PyG reads its SDF with
#       sanitize=False, so it has no aromatic atoms or bonds, and with RDKit 2026.09 every
#       hybridisation is UNSPECIFIED (the sp, sp2 and sp3 columns are zero).
FEATURE_MODES = ("rdkit", "pyg")

# Bound on RDKit's bond-order search in the determine_bonds fallback, so that no single
# molecule can stall a build. NOTE: the value is a guess, and a molecule that exceeds it
# falls back to single_bonds.
_MAX_BOND_ORDER_ITERATIONS = 1_000_000

_PART_FILE = re.compile(r"qm9_part(\d+)\.csv(\.gz)?")


class ConvertedMolecule(NamedTuple):
    """Picklable result of converting one record: arrays and strings, no tensors."""

    arrays: dict[str, Any]
    fallback: str | None
    reason: str | None


def find_qm9pack_csv() -> list[Path]:
    """Return the molecule CSV files of the installed qm9pack package, in part order.

    The package is located through its distribution metadata, because ``import qm9pack``
    fails on current setuptools (it imports ``pkg_resources``). ``qm9_polarizability.csv``
    is left out because it contains the polarizability tensor components, while the isotropic
    polarizability is already a column of the part files.
    """
    try:
        distribution = importlib.metadata.distribution("qm9pack")
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            "the QM9 source package qm9pack is not installed; install it with "
            "`pip install qm9pack==1.0.3` (104 MB wheel) or pass csv_path"
        ) from err

    parts: list[tuple[int, Path]] = []
    for file in distribution.files or []:
        match = _PART_FILE.fullmatch(file.name)
        if match and file.parent.name == "data":
            parts.append((int(match.group(1)), Path(str(distribution.locate_file(file)))))
    paths = [path for _, path in sorted(parts)]

    missing = [path for path in paths if not path.is_file()]
    if not paths or missing:
        location = distribution.locate_file("qm9pack")
        raise FileNotFoundError(
            f"qm9pack is installed at {location} but its data files data/qm9_part*.csv are missing "
            f"({', '.join(str(p) for p in missing) or 'none listed'}); reinstall it with "
            "`pip install --force-reinstall qm9pack==1.0.3`"
        )
    return paths


def read_molecules(path_or_paths: str | Path | Iterable[str | Path], limit: int | None = None) -> pd.DataFrame:
    """Read qm9pack CSV files (plain or gzip) into one frame sorted by the QM9 ``Index``.

    Only the columns needed for graphs and targets are kept. ``limit`` stops after that
    many rows in file order, before sorting.
    """
    if isinstance(path_or_paths, (str, Path)):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValueError("read_molecules needs at least one CSV path")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, got {limit}")

    frames = []
    remaining = limit
    for path in paths:
        if remaining == 0:
            break
        header = pd.read_csv(path, nrows=0).columns
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise ValueError(f"{path} is not a qm9pack molecule CSV: columns {missing} are missing")
        frame = pd.read_csv(path, usecols=REQUIRED_COLUMNS, nrows=remaining,
                            dtype={"SMILES": str, "Elements": str, "XYZ_Ang": str})
        frames.append(frame[REQUIRED_COLUMNS])
        if remaining is not None:
            remaining -= len(frame)

    molecules = pd.concat(frames, ignore_index=True)
    duplicated = molecules["Index"][molecules["Index"].duplicated()]
    if len(duplicated):
        raise ValueError(f"QM9 indices occur more than once in {[str(p) for p in paths]}: "
                         f"{duplicated.head(10).tolist()}")
    if not molecules["Index"].is_monotonic_increasing:
        molecules = molecules.sort_values("Index", kind="stable", ignore_index=True)
    return molecules


def read_uncharacterized(path: str | Path) -> set[int]:
    """Return the QM9 indices listed in ``uncharacterized.txt``.

    Every line whose first token is an integer is a molecule. The header, footer and blank
    lines are skipped wherever they are, unlike PyG's parser, which reads fixed line offsets.
    """
    indices = set()
    for line in Path(path).read_text().splitlines():
        tokens = line.split()
        if tokens and tokens[0].isdigit():
            indices.add(int(tokens[0]))
    return indices


def parse_elements(text: str) -> list[str]:
    """Parse the ``Elements`` column, e.g. ``"['C','H','H','H','H']"``."""
    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise ValueError(f"Elements value is not a list literal: {text[:60]!r}")
    symbols = [token.strip().strip("'\"") for token in inner[1:-1].split(",")]
    unknown = sorted({symbol for symbol in symbols if symbol not in ATOM_TYPES})
    if unknown:
        raise ValueError(f"Elements value has symbols outside H, C, N, O, F: {unknown}")
    return symbols


def parse_coordinates(text: str) -> np.ndarray:
    """Parse the ``XYZ_Ang`` column, a nested list literal, into an (N, 3) float64 array in Å."""
    flat = text.replace("[", " ").replace("]", " ").split(",")
    try:
        values = np.array(flat, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"XYZ_Ang value is not a list of numbers: {text[:60]!r}") from err
    if values.size % 3:
        raise ValueError(f"XYZ_Ang value has {values.size} numbers, not a multiple of 3")
    return values.reshape(-1, 3)


def molecule_name(row: Mapping[str, Any]) -> str:
    """Return the PyG name of a record, ``gdb_<Index>``."""
    return f"gdb_{int(row['Index'])}"


def target_values(row: Mapping[str, Any]) -> np.ndarray:
    """Compute the 19 PyG targets of one record as float32, in ``QM9_TARGETS`` order.

    Energies are converted from Hartree to eV. Atomisation energies are the total energy
    minus the atomref energies of the isolated atoms, also converted to eV. PyG instead
    converts tabulated kcal/mol values with 0.04336414 eV per kcal/mol, so the two agree to
    about 1e-4 relative, not bit for bit.
    """
    values = np.zeros(len(QM9_TARGETS), dtype=np.float64)
    for column_index, (column, factor) in DIRECT_TARGET_COLUMNS.items():
        values[column_index] = float(row[column]) * factor

    symbols = parse_elements(row["Elements"])
    for column_index, (column, reference) in ATOMISATION_TARGET_COLUMNS.items():
        atoms_energy = sum(ATOM_REFERENCE_ENERGIES_HARTREE[symbol][reference] for symbol in symbols)
        values[column_index] = (float(row[column]) - atoms_energy) * HARTREE_TO_EV
    return values.astype(np.float32)


def targets_from_row(row: Mapping[str, Any]) -> torch.Tensor:
    """Return ``target_values(row)`` as a float32 tensor of shape (19,)."""
    import torch

    return torch.from_numpy(target_values(row))


def _molecule_from_geometry(symbols: list[str], coordinates: np.ndarray) -> Chem.RWMol:
    """Build a bond-less molecule with one conformer; no atom gets implicit hydrogens."""
    molecule = Chem.RWMol()
    for symbol in symbols:
        atom = Chem.Atom(symbol)
        atom.SetNoImplicit(True)
        molecule.AddAtom(atom)
    conformer = Chem.Conformer(len(symbols))
    conformer.SetPositions(coordinates)
    conformer.Set3D(True)
    molecule.AddConformer(conformer, assignId=True)
    return molecule


def _bonds_from_template(connected: Chem.Mol, smiles: str) -> Chem.Mol:
    """Copy bond orders and formal charges from ``smiles`` onto the geometric connectivity.

    The SMILES molecule with explicit hydrogens must be isomorphic to the connectivity:
    same atoms, same number of bonds, and a substructure match of its single-bond skeleton.
    Matching hydrogens too keeps the bond orders consistent with each atom's hydrogen count.
    """
    template = Chem.MolFromSmiles(smiles)
    if template is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    template = Chem.AddHs(template)
    Chem.Kekulize(template, clearAromaticFlags=True)

    if template.GetNumAtoms() != connected.GetNumAtoms():
        raise ValueError(f"the SMILES has {template.GetNumAtoms()} atoms with hydrogens, "
                         f"the coordinates {connected.GetNumAtoms()}")
    if template.GetNumBonds() != connected.GetNumBonds():
        raise ValueError(f"the SMILES has {template.GetNumBonds()} bonds, "
                         f"the connectivity of the coordinates {connected.GetNumBonds()}")

    skeleton = Chem.RWMol(template)
    for bond in skeleton.GetBonds():
        bond.SetBondType(BondType.SINGLE)
    for atom in skeleton.GetAtoms():
        atom.SetFormalCharge(0)
    match = connected.GetSubstructMatch(skeleton)
    if not match:
        raise ValueError("the SMILES graph differs from the connectivity of the coordinates")

    molecule = Chem.RWMol(connected)
    for bond in template.GetBonds():
        target = molecule.GetBondBetweenAtoms(match[bond.GetBeginAtomIdx()], match[bond.GetEndAtomIdx()])
        target.SetBondType(bond.GetBondType())
    for atom in template.GetAtoms():
        molecule.GetAtomWithIdx(match[atom.GetIdx()]).SetFormalCharge(atom.GetFormalCharge())
    Chem.SanitizeMol(molecule)
    return molecule


def _bonds_from_geometry(connected: Chem.Mol) -> Chem.Mol:
    """Assign bond orders from the connectivity alone, for a neutral molecule."""
    molecule = Chem.Mol(connected)
    rdDetermineBonds.DetermineBondOrders(molecule, charge=0, allowChargedFragments=True, embedChiral=False,
                                         maxIterations=_MAX_BOND_ORDER_ITERATIONS)
    Chem.SanitizeMol(molecule)
    return molecule


def _single_bond_molecule(connected: Chem.Mol) -> Chem.Mol:
    """Keep all bonds single and set only ring information and hybridisation."""
    molecule = Chem.Mol(connected)
    molecule.UpdatePropertyCache(strict=False)
    Chem.SanitizeMol(molecule, Chem.SanitizeFlags.SANITIZE_SYMMRINGS | Chem.SanitizeFlags.SANITIZE_SETHYBRIDIZATION,
                     catchErrors=True)
    return molecule


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Discard writes to file descriptor 2 while the block runs.

    RDKit's extended Hückel code (YAeHMOP) prints warnings such as "Distance between atoms
    18 and 8 (0.969300 A) is suspicious" straight to file descriptor 2, past RDKit's log
    switches. NOTE: other threads' writes to stderr are discarded during the block too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def perceive_bonds(symbols: list[str], coordinates: np.ndarray, smiles: str) -> tuple[Chem.Mol, str | None, str | None]:
    """Return the RDKit molecule with bonds, the fallback kind (None on the normal path) and why.

    The atom order is that of ``symbols``. Connectivity comes from RDKit's connect-the-dots
    method and, where the SMILES template does not fit it, from RDKit's extended Hückel
    method, which is about 40 times slower.
    """
    # RDKit raises several unrelated exception types (ValueError, RuntimeError and others
    # from its C++ layer), so each step catches Exception and records the message.
    errors = []
    connected = _molecule_from_geometry(symbols, coordinates)
    try:
        rdDetermineBonds.DetermineConnectivity(connected)
        return _bonds_from_template(connected, smiles), None, None
    except Exception as err:  # noqa: BLE001
        errors.append(f"connect-the-dots: {err}")

    # Connect-the-dots links atoms closer than a radius-based threshold, which adds
    # spurious bonds across strained small rings (cyclobutanes, oxetanes, cages).
    hueckel = _molecule_from_geometry(symbols, coordinates)
    try:
        with _native_stderr_silenced():
            rdDetermineBonds.DetermineConnectivity(hueckel, useHueckel=True, charge=0)
        connected = hueckel
        return _bonds_from_template(hueckel, smiles), "hueckel_connectivity", errors[0]
    except Exception as err:  # noqa: BLE001
        errors.append(f"Hückel: {err}")

    if connected.GetNumBonds() == 0 and len(symbols) > 1:
        connected.UpdatePropertyCache(strict=False)
        return connected, "no_bonds", "; ".join(errors)

    try:
        return _bonds_from_geometry(connected), "determine_bonds", "; ".join(errors)
    except Exception as err:  # noqa: BLE001
        errors.append(f"DetermineBondOrders: {err}")
    return _single_bond_molecule(connected), "single_bonds", "; ".join(errors)


def _pyg_feature_molecule(molecule: Chem.Mol) -> Chem.Mol:
    """Re-read ``molecule`` the way torch_geometric.datasets.QM9 reads its SDF.

    PyG uses ``SDMolSupplier(removeHs=False, sanitize=False)`` on a file with Kekulé bonds.
    A Kekulé mol block read back without sanitisation gives the same atom flags.
    """
    block = Chem.MolToMolBlock(molecule, kekulize=True)
    reread = Chem.MolFromMolBlock(block, removeHs=False, sanitize=False)
    if reread is None:
        raise ValueError("RDKit could not read back the mol block of the perceived molecule")
    return reread


def graph_arrays(molecule: Chem.Mol) -> dict[str, np.ndarray]:
    """Compute ``x``, ``z``, ``edge_index`` and ``edge_attr`` of PyG's QM9 layout as numpy arrays.

    x columns: one-hot H, C, N, O, F; atomic number; aromatic; sp; sp2; sp3; number of
    bonded hydrogens. Edges hold both directions of each bond, sorted by (row, col).
    """
    num_atoms = molecule.GetNumAtoms()
    type_index = np.zeros(num_atoms, dtype=np.int64)
    atomic_number = np.zeros(num_atoms, dtype=np.int64)
    flags = np.zeros((num_atoms, 4), dtype=np.float32)  # aromatic, sp, sp2, sp3
    for atom in molecule.GetAtoms():
        i = atom.GetIdx()
        type_index[i] = ATOM_TYPES[atom.GetSymbol()]
        atomic_number[i] = atom.GetAtomicNum()
        hybridization = atom.GetHybridization()
        flags[i, 0] = atom.GetIsAromatic()
        flags[i, 1] = hybridization == HybridizationType.SP
        flags[i, 2] = hybridization == HybridizationType.SP2
        flags[i, 3] = hybridization == HybridizationType.SP3

    rows, cols, bond_types = [], [], []
    for bond in molecule.GetBonds():
        bond_type = bond.GetBondType()
        if bond_type not in BOND_TYPES:
            raise ValueError(f"bond type {bond_type} is not single, double, triple or aromatic")
        begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        rows += [begin, end]
        cols += [end, begin]
        bond_types += [BOND_TYPES[bond_type]] * 2
    row = np.array(rows, dtype=np.int64)
    col = np.array(cols, dtype=np.int64)
    order = np.argsort(row * num_atoms + col, kind="stable")
    row, col = row[order], col[order]
    bond_index = np.array(bond_types, dtype=np.int64)[order]

    # Hydrogens bonded to each atom, counted over the edges as PyG does.
    num_hydrogens = np.bincount(col[atomic_number[row] == 1], minlength=num_atoms).astype(np.float32)

    x = np.concatenate([
        np.eye(len(ATOM_TYPES), dtype=np.float32)[type_index],
        atomic_number[:, None].astype(np.float32),
        flags,
        num_hydrogens[:, None],
    ], axis=1)
    edge_attr = np.eye(len(BOND_TYPES), dtype=np.float32)[bond_index].reshape(-1, len(BOND_TYPES))
    return {
        "x": x,
        "z": atomic_number,
        "edge_index": np.stack([row, col]).reshape(2, -1),
        "edge_attr": edge_attr,
    }


def convert_record(row: Mapping[str, Any], features: str = "rdkit") -> ConvertedMolecule:
    """Convert one CSV record to graph arrays; the picklable core of ``molecule_to_graph``.

    Raises ValueError when the record is malformed (atom count, symbols or coordinates) or
    the perceived molecule has a bond type outside the four one-hot classes. RDKit errors
    during bond perception select a fallback instead of raising.
    """
    if features not in FEATURE_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}, got {features!r}")
    name = molecule_name(row)
    try:
        symbols = parse_elements(row["Elements"])
        coordinates = parse_coordinates(row["XYZ_Ang"])
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err
    if not len(symbols) == len(coordinates) == int(row["N_atoms"]):
        raise ValueError(f"{name}: N_atoms is {row['N_atoms']} but there are {len(symbols)} element symbols "
                         f"and {len(coordinates)} coordinate triples")

    # The RDKit log would repeat each fallback's reason; the caller counts and logs them.
    block_logs = rdBase.BlockLogs()
    molecule, fallback, reason = perceive_bonds(symbols, coordinates, str(row["SMILES"]))
    feature_molecule = _pyg_feature_molecule(molecule) if features == "pyg" else molecule
    arrays = graph_arrays(feature_molecule)
    if features == "rdkit":
        Chem.AssignStereochemistryFrom3D(molecule)
    smiles = Chem.MolToSmiles(feature_molecule, isomericSmiles=True)
    del block_logs

    arrays["pos"] = coordinates.astype(np.float32)
    arrays["y"] = target_values(row)[None, :]
    arrays["smiles"] = smiles
    arrays["name"] = name
    # PyG stores the molecule's 0-based position among all 133,885 QM9 molecules, so
    # idx = Index - 1; the excluded uncharacterized molecules leave gaps.
    arrays["idx"] = int(row["Index"]) - 1
    return ConvertedMolecule(arrays, fallback, reason)


def convert_record_or_error(job: tuple[Mapping[str, Any], str]) -> ConvertedMolecule | str:
    """Run ``convert_record(*job)``; return a malformed record's error message instead of raising.

    This is the task function of the conversion worker processes.
    """
    row, features = job
    try:
        return convert_record(row, features)
    except ValueError as err:
        return str(err)


def graph_from_arrays(arrays: Mapping[str, Any]) -> Data:
    """Wrap the output of ``convert_record`` into a ``Data`` object with PyG's dtypes."""
    import torch
    from torch_geometric.data import Data

    return Data(
        x=torch.from_numpy(arrays["x"]),
        z=torch.from_numpy(arrays["z"]),
        pos=torch.from_numpy(arrays["pos"]),
        edge_index=torch.from_numpy(arrays["edge_index"]),
        smiles=arrays["smiles"],
        edge_attr=torch.from_numpy(arrays["edge_attr"]),
        y=torch.from_numpy(arrays["y"]),
        name=arrays["name"],
        idx=torch.tensor([arrays["idx"]], dtype=torch.long),
    )


def molecule_to_graph(row: Mapping[str, Any], features: str = "rdkit") -> tuple[Data, str | None]:
    """Convert one qm9pack record (a pandas row or a mapping) into a PyG ``Data`` graph.

    Returns the graph and the fallback kind of its bond perception (None on the normal
    path, else one of ``FALLBACK_KINDS``). ``features`` selects the node and edge feature
    values, see ``FEATURE_MODES``.
    """
    converted = convert_record(row, features)
    return graph_from_arrays(converted.arrays), converted.fallback
