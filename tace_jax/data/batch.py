"""Assemble padded :class:`~tace_jax.data.graph.Graph` batches (with targets) from structures.

Targets (``Graph.targets``), for each name in ``properties``:

* graph level: ``energy [G]``, ``stress [G,3,3]``, ``virials [G,3,3]``, ``dipole [G,3]``,
  ``polarizability [G,3,3]``; node level: ``forces [N,3]``, ``born_charges [N,3,3]``;
* ``has_<name> [G]`` bool presence mask (False for padding graphs and unlabelled structures;
  values are zero where absent);
* ``weight [G]`` per-structure weight (0 on padding).

Extras (``Graph.extras``): ``level [G]`` int32 and ``total_charge [G]`` always; ``charges [N]``
with ``has_charges [G]`` and ``electric_field [G,3]`` when some structure has them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .atoms_graph import species_index
from .errors import DataError
from .graph import Graph, budgets_for, pad_graph
from .neighbor_cache import NeighborCache
from .structure import Structure

__all__ = ["TARGETS", "batch_structures", "BatchAssembler"]

#: Trainable targets and their per-item shapes; node-level ones are marked with ``True``.
TARGETS: dict[str, tuple[tuple[int, ...], bool]] = {
    "energy": ((), False),
    "forces": ((3,), True),
    "stress": ((3, 3), False),
    "virials": ((3, 3), False),
    "dipole": ((3,), False),
    "polarizability": ((3, 3), False),
    "born_charges": ((3, 3), True),
}


class BatchAssembler:
    """Per-structure preprocessing (species, neighbour lists) and batch assembly.

    Args:
        structures: the data set.
        cutoff: neighbour cutoff, Å.
        atomic_numbers: the model's sorted element list.
        dtype: float dtype of positions, cells and targets.
        properties: target names to include (default: those present in any structure).
        neighbor_cache: a :class:`NeighborCache` for ``cutoff`` (a fresh one by default).
    """

    def __init__(
        self,
        structures: Sequence[Structure],
        cutoff: float,
        atomic_numbers: Sequence[int],
        dtype="float32",
        properties: Sequence[str] | None = None,
        neighbor_cache: NeighborCache | None = None,
    ):
        if len(structures) == 0:
            raise DataError("no structures to batch")
        self.structures = list(structures)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise DataError(f"dtype must be a float type, got {self.dtype}")
        self.atomic_numbers = [int(z) for z in atomic_numbers]
        if neighbor_cache is None:
            neighbor_cache = NeighborCache(cutoff)
        elif abs(neighbor_cache.cutoff - float(cutoff)) > 1e-12:
            raise DataError(f"neighbor_cache cutoff {neighbor_cache.cutoff} != cutoff {cutoff}")
        self.species = [species_index(s.numbers, self.atomic_numbers, s.where) for s in structures]
        self.edges = neighbor_cache.compute(self.structures)
        self.n_nodes = np.array([s.n_atoms for s in self.structures], np.int64)
        self.n_edges = np.array([len(e[0]) for e in self.edges], np.int64)
        if properties is None:
            properties = [p for p in TARGETS if any(s.has(p) for s in self.structures)]
        unknown = set(properties) - set(TARGETS)
        if unknown:
            raise DataError(f"properties: unknown {sorted(unknown)}; known: {list(TARGETS)}")
        self.properties = tuple(p for p in TARGETS if p in properties)
        self.has_charges = any(s.charges is not None for s in self.structures)
        self.has_field = any(s.electric_field is not None for s in self.structures)

    def __len__(self) -> int:
        return len(self.structures)

    def fits(self, budgets: tuple[int, int, int]) -> None:
        """Raise if some single structure cannot fit into ``budgets``."""
        n_b, e_b, g_b = budgets
        if g_b < 2:
            raise DataError(f"budgets {budgets}: need at least 2 graph slots (one is padding)")
        for i in np.where((self.n_nodes + 1 > n_b) | (self.n_edges > e_b))[0][:1]:
            s = self.structures[i]
            raise DataError(
                f"{s.where}: field 'positions': structure with {self.n_nodes[i]} atoms and "
                f"{self.n_edges[i]} edges does not fit budgets {budgets}"
            )

    def assemble(
        self, idx: Sequence[int], budgets: tuple[int, int, int] | None = None, multiple: int = 64
    ) -> Graph:
        """The padded :class:`Graph` of the structures ``idx`` (budgets default to the totals
        rounded up to ``multiple``)."""
        idx = [int(i) for i in idx]
        ss = [self.structures[i] for i in idx]
        n = self.n_nodes[idx]
        offsets = np.concatenate([[0], np.cumsum(n)])
        if budgets is None:
            budgets = budgets_for(int(n.sum()), int(self.n_edges[idx].sum()), len(idx), multiple)
        base = {
            "positions": np.concatenate([s.positions for s in ss]),
            "species": np.concatenate([self.species[i] for i in idx]),
            "numbers": np.concatenate([s.numbers for s in ss]),
            "node_graph": np.repeat(np.arange(len(idx)), n),
            "senders": np.concatenate([self.edges[i][0] + o for i, o in zip(idx, offsets)]),
            "receivers": np.concatenate([self.edges[i][1] + o for i, o in zip(idx, offsets)]),
            "shifts": np.concatenate([self.edges[i][2] for i in idx]).reshape(-1, 3),
            "cell": np.stack([s.cell if s.pbc.any() else np.zeros((3, 3)) for s in ss]),
            "pbc": np.stack([s.pbc for s in ss]),
        }
        graph = pad_graph(base, budgets, dtype=self.dtype)
        n_b, _, g_b = budgets
        targets, extras = self._labels(ss, n_b, g_b, int(offsets[-1]))
        return graph.replace(targets=targets, extras=extras)

    def _labels(self, ss, n_b: int, g_b: int, n_real: int):
        f = self.dtype
        targets: dict[str, np.ndarray] = {}
        for name in self.properties:
            shape, per_node = TARGETS[name]
            arr = np.zeros(((n_b if per_node else g_b), *shape), f)
            has = np.zeros(g_b, bool)
            pos = 0
            for g, s in enumerate(ss):
                value = getattr(s, name)
                if value is not None:
                    has[g] = True
                    if per_node:
                        arr[pos : pos + s.n_atoms] = value
                    else:
                        arr[g] = value
                pos += s.n_atoms
            targets[name] = arr
            targets[f"has_{name}"] = has
        weight = np.zeros(g_b, f)
        weight[: len(ss)] = [s.weight for s in ss]
        targets["weight"] = weight
        extras: dict[str, np.ndarray] = {}
        level = np.zeros(g_b, np.int32)
        level[: len(ss)] = [s.level for s in ss]
        extras["level"] = level
        total = np.zeros(g_b, f)
        total[: len(ss)] = [0.0 if s.total_charge is None else s.total_charge for s in ss]
        extras["total_charge"] = total
        if self.has_charges:
            charges, has = np.zeros(n_b, f), np.zeros(g_b, bool)
            pos = 0
            for g, s in enumerate(ss):
                if s.charges is not None:
                    charges[pos : pos + s.n_atoms] = s.charges
                    has[g] = True
                pos += s.n_atoms
            extras["charges"], extras["has_charges"] = charges, has
        if self.has_field:
            field = np.zeros((g_b, 3), f)
            for g, s in enumerate(ss):
                if s.electric_field is not None:
                    field[g] = s.electric_field
            extras["electric_field"] = field
        return targets, extras


def batch_structures(
    structures: Sequence[Structure],
    cutoff: float,
    atomic_numbers: Sequence[int],
    budgets: tuple[int, int, int] | None = None,
    *,
    dtype="float32",
    properties: Sequence[str] | None = None,
    neighbor_cache: NeighborCache | None = None,
    multiple: int = 64,
) -> Graph:
    """One padded :class:`Graph` holding all ``structures`` (e.g. for prediction)."""
    asm = BatchAssembler(structures, cutoff, atomic_numbers, dtype, properties, neighbor_cache)
    if budgets is not None:
        asm.fits(budgets)
    return asm.assemble(range(len(structures)), budgets, multiple)
