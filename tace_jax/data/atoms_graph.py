"""Build padded :class:`~tace_jax.data.graph.Graph` batches from ``ase.Atoms``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import DataError
from .graph import Graph, budgets_for, pad_graph, wrap_graph_positions
from .neighbors import neighbor_list

__all__ = ["atoms_to_graph_dict", "collate", "graph_from_atoms", "UnknownElementError"]


class UnknownElementError(DataError):
    """An atom's element is not among the model's ``atomic_numbers``."""


def species_index(numbers: np.ndarray, atomic_numbers: Sequence[int], where: str = "structure"):
    """Map atomic numbers to indices into the sorted model element list."""
    table = np.full(119, -1, dtype=np.int64)
    table[np.asarray(atomic_numbers)] = np.arange(len(atomic_numbers))
    numbers = np.asarray(numbers, dtype=np.int64)
    bad = (numbers < 0) | (numbers > 118)
    if bad.any() or (table[np.clip(numbers, 0, 118)] < 0).any():
        unknown = sorted(set(numbers[bad | (table[np.clip(numbers, 0, 118)] < 0)].tolist()))
        raise UnknownElementError(
            f"{where}: field 'numbers' has element(s) {unknown} not in the model's "
            f"atomic_numbers {list(atomic_numbers)}"
        )
    return table[numbers]


def atoms_to_graph_dict(
    atoms,
    cutoff: float,
    atomic_numbers: Sequence[int],
    where: str = "structure",
    neighbors: tuple | None = None,
) -> dict[str, np.ndarray]:
    """One unpadded graph (numpy) from an ``ase.Atoms``; ``neighbors`` may pass a cached list.

    Positions are wrapped into the cell in float64 (periodic directions; edge shifts adjusted,
    atom order kept), so a later cast to float32 loses no accuracy on far-away images;
    ``input_shifts`` keeps the shifts in the frame of the given positions (to name edges).
    """
    pos = np.asarray(atoms.get_positions(), dtype=np.float64)
    cell = np.asarray(atoms.get_cell().array, dtype=np.float64)
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    numbers = np.asarray(atoms.get_atomic_numbers())
    species = species_index(numbers, atomic_numbers, where)
    if neighbors is None:
        neighbors = neighbor_list(pos, cell, pbc, cutoff, where=where)
    s, r, input_shifts = neighbors
    pos, sh = wrap_graph_positions(pos, cell, pbc, s, r, input_shifts)
    if not pbc.any():
        cell = np.zeros((3, 3))
    return {
        "positions": pos,
        "species": species,
        "numbers": numbers,
        "node_graph": np.zeros(len(pos), np.int64),
        "senders": s,
        "receivers": r,
        "shifts": sh,
        "input_shifts": np.asarray(input_shifts).reshape(-1, 3),
        "cell": cell[None],
        "pbc": pbc[None],
    }


def collate(graphs: Sequence[dict]) -> dict:
    """Concatenate unpadded graph dicts, offsetting node indices (extras/targets included)."""
    out: dict = {}
    offsets = np.cumsum([0] + [len(g["positions"]) for g in graphs])
    for key in ("positions", "species", "numbers", "shifts", "cell", "pbc"):
        out[key] = np.concatenate([g[key] for g in graphs], axis=0)
    out["node_graph"] = np.concatenate(
        [np.full(len(g["positions"]), k) for k, g in enumerate(graphs)]
    )
    out["senders"] = np.concatenate([g["senders"] + o for g, o in zip(graphs, offsets)])
    out["receivers"] = np.concatenate([g["receivers"] + o for g, o in zip(graphs, offsets)])
    for group in ("extras", "targets"):
        keys = set().union(*(g.get(group, {}).keys() for g in graphs))
        out[group] = {}
        for k in sorted(keys):
            missing = [i for i, g in enumerate(graphs) if k not in g.get(group, {})]
            if missing:
                raise ValueError(
                    f"{group} field {k!r} missing for graphs {missing[:10]} of the batch"
                )
            out[group][k] = np.concatenate([np.asarray(g[group][k]) for g in graphs], axis=0)
    return out


def graph_from_atoms(
    atoms_list,
    cutoff: float,
    atomic_numbers: Sequence[int],
    budgets: tuple[int, int, int] | None = None,
    dtype=np.float64,
    multiple: int = 64,
) -> Graph:
    """A padded :class:`Graph` from one ``ase.Atoms`` or a list of them.

    Budgets default to the totals plus one padding node/graph, rounded up to ``multiple``.
    """
    if not isinstance(atoms_list, (list, tuple)):
        atoms_list = [atoms_list]
    dicts = [
        atoms_to_graph_dict(a, cutoff, atomic_numbers, where=f"structure {k}")
        for k, a in enumerate(atoms_list)
    ]
    batch = collate(dicts)
    if budgets is None:
        budgets = budgets_for(len(batch["positions"]), len(batch["senders"]), len(dicts), multiple)
    return pad_graph(batch, budgets, dtype=dtype)
