"""Helpers shared by the TACE model tests (not a test module)."""

from __future__ import annotations

import json
import os

import ase
import numpy as np

from tace_jax.data import atoms_to_graph_dict, collate, pad_graph

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
# variant -> (npz, json, systems present in the npz)
VARIANTS = {
    "tiny_l2": ("tace_tiny_l2.npz", "tace_tiny_l2.json", ("hcooh", "si8")),
    "default": ("tace_default_trim.npz", "tace_default.json", ("tio2",)),
}


def fixture_paths(variant: str) -> tuple[str, str]:
    npz, js, _ = VARIANTS[variant]
    return os.path.join(FIXTURES, npz), os.path.join(FIXTURES, js)


def load_fixture(variant: str) -> tuple[dict, dict]:
    npz, js = fixture_paths(variant)
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    with open(js) as f:
        meta = json.load(f)
    return arrays, meta


def stored_graph_dict(z: dict, system: str, atomic_numbers) -> dict:
    """Unpadded graph dict from a fixture system with the stored (reference) edges."""
    numbers = z[f"{system}/numbers"]
    table = {a: i for i, a in enumerate(atomic_numbers)}
    ei = z[f"{system}/edge_index"]
    pbc = z[f"{system}/pbc"]
    cell = z[f"{system}/cell"] if pbc.any() else np.zeros((3, 3))
    return {
        "positions": z[f"{system}/positions"],
        "species": np.array([table[int(a)] for a in numbers]),
        "numbers": numbers,
        "node_graph": np.zeros(len(numbers), np.int64),
        "senders": ei[0],
        "receivers": ei[1],
        "shifts": z[f"{system}/edge_shifts"],
        "cell": cell[None],
        "pbc": pbc[None],
    }


def own_graph_dict(z: dict, system: str, cutoff: float, atomic_numbers) -> dict:
    """Unpadded graph dict with our own neighbour list (vesin)."""
    atoms = ase.Atoms(
        numbers=z[f"{system}/numbers"],
        positions=z[f"{system}/positions"],
        cell=z[f"{system}/cell"],
        pbc=z[f"{system}/pbc"],
    )
    return atoms_to_graph_dict(atoms, cutoff, atomic_numbers)


def pad(graph_dicts, budgets, dtype=np.float64):
    """Collate and pad to fixed budgets (so several graphs share one compilation)."""
    return pad_graph(collate(list(graph_dicts)), budgets, dtype=dtype)
