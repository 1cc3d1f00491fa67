"""Assemble padded :class:`~tace_jax.data.graph.Graph` batches (with targets) from structures.

Targets (``Graph.targets``), for each name in ``properties``:

* graph level: ``energy [G]``, ``stress [G,3,3]``, ``virials [G,3,3]``, ``dipole [G,3]``,
  ``polarizability [G,3,3]``, ``polarization [G,3]``; node level: ``forces [N,3]``,
  ``born_charges [N,3,3]``, ``hessian [N,3,N,3]`` (block diagonal over the graphs);
* ``has_<name> [G]`` bool presence mask (False for padding graphs and unlabelled structures;
  values are zero where absent);
* ``weight [G]`` per-structure weight (0 on padding).

Extras (``Graph.extras``): ``level [G]`` int32 and ``total_charge [G]`` always; ``charges [N]``
with ``has_charges [G]`` and ``electric_field [G,3]`` when some structure has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .atoms_graph import species_index
from .errors import DataError
from .fields import INPUTS, LABEL_FIELDS
from .graph import Graph, budgets_for, pad_graph, wrap_graph_positions
from .inputs import check_input_names, collate_inputs, read_inputs
from .neighbor_cache import NeighborCache
from .structure import Structure

__all__ = ["BATCH_LABELS", "batch_structures", "BatchAssembler"]

#: Trainable labels and their per-item shapes (``True``: per node), from the field registry.
BATCH_LABELS: dict[str, tuple[tuple[int, ...], bool]] = {
    name: (spec.shape, spec.per_node) for name, spec in LABEL_FIELDS.items()
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
        inputs: model inputs to put in ``Graph.extras`` (e.g. ``TACEConfig.input_names``);
            a structure missing a required one raises. ``None``: ``level``, ``total_charge``
            and, where some structure has them, ``charges`` and ``electric_field``.
        input_limits: exclusive upper bounds of integer inputs (``{"level": num_levels}``).
    """

    def __init__(
        self,
        structures: Sequence[Structure],
        cutoff: float,
        atomic_numbers: Sequence[int],
        dtype="float32",
        properties: Sequence[str] | None = None,
        neighbor_cache: NeighborCache | None = None,
        inputs: Sequence[str] | None = None,
        input_limits: Mapping[str, int] | None = None,
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
            properties = [p for p in BATCH_LABELS if any(s.has(p) for s in self.structures)]
        unknown = set(properties) - set(BATCH_LABELS)
        if unknown:
            raise DataError(f"properties: unknown {sorted(unknown)}; known: {list(BATCH_LABELS)}")
        self.properties = tuple(p for p in BATCH_LABELS if p in properties)
        self.explicit_inputs = inputs is not None
        if inputs is None:
            inputs = ["level", "total_charge"]
            inputs += [
                n for n in ("charges", "electric_field") if any(s.has(n) for s in structures)
            ]
        check_input_names(inputs)
        self.input_names = tuple(inputs)
        self.input_limits = dict(input_limits or {})

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
        wrapped = [  # float64 wrap before the cast to self.dtype (shifts adjusted)
            wrap_graph_positions(s.positions, s.cell, s.pbc, *self.edges[i])
            for s, i in zip(ss, idx)
        ]
        base = {
            "positions": np.concatenate([w[0] for w in wrapped]),
            "species": np.concatenate([self.species[i] for i in idx]),
            "numbers": np.concatenate([s.numbers for s in ss]),
            "node_graph": np.repeat(np.arange(len(idx)), n),
            "senders": np.concatenate([self.edges[i][0] + o for i, o in zip(idx, offsets)]),
            "receivers": np.concatenate([self.edges[i][1] + o for i, o in zip(idx, offsets)]),
            "shifts": np.concatenate([w[1] for w in wrapped]).reshape(-1, 3),
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
            shape, per_node = BATCH_LABELS[name]
            if name == "hessian":  # block diagonal [N, 3, N, 3]
                shape = (3, n_b, 3)
            arr = np.zeros(((n_b if per_node else g_b), *shape), f)
            has = np.zeros(g_b, bool)
            pos = 0
            for g, s in enumerate(ss):
                value = getattr(s, name)
                if value is not None:
                    has[g] = True
                    if name == "hessian":
                        arr[pos : pos + s.n_atoms, :, pos : pos + s.n_atoms] = value
                    elif per_node:
                        arr[pos : pos + s.n_atoms] = value
                    else:
                        arr[g] = value
                pos += s.n_atoms
            targets[name] = arr
            targets[f"has_{name}"] = has
        weight = np.zeros(g_b, f)
        weight[: len(ss)] = [s.weight for s in ss]
        targets["weight"] = weight
        extras = self._inputs(ss, n_b, g_b)
        return targets, extras

    def _inputs(self, ss, n_b: int, g_b: int) -> dict[str, np.ndarray]:
        """Model inputs through the one assembler (:func:`~tace_jax.data.inputs.read_inputs`).

        With explicit ``inputs`` a missing required input raises, naming the structure. Without,
        ``level`` and ``total_charge`` are always given and ``charges``/``electric_field``
        when some structure has them; structures without charges get zeros and
        ``has_charges = False``."""
        per, has = [], {}
        for s in ss:
            fill = {}
            if not self.explicit_inputs:
                for name in self.input_names:
                    spec = INPUTS[name]
                    if spec.default is None and getattr(s, name, None) is None:
                        fill[name] = np.zeros((s.n_atoms if spec.per_node else 1, *spec.shape))
                        has.setdefault(name, []).append(False)
                    elif spec.default is None:
                        has.setdefault(name, []).append(True)
            per.append(read_inputs(s, self.input_names, fill, s.where, self.input_limits))
        extras = {}
        for name, value in collate_inputs(per).items():
            spec = INPUTS[name]
            size = n_b if spec.per_node else g_b
            dtype = self.dtype if spec.kind == "float" else spec.np_dtype
            padded = np.zeros((size, *value.shape[1:]), dtype)
            padded[: len(value)] = value
            extras[name] = padded
        for name, flags in has.items():
            extras[f"has_{name}"] = np.zeros(g_b, bool)
            extras[f"has_{name}"][: len(flags)] = flags
        return extras


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
