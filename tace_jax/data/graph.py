"""Padded, static-shape batches of atomic graphs.

A :class:`Graph` holds ``G`` graphs with ``N`` nodes and ``E`` directed edges in total, padded to
fixed budgets so that ``jit`` compiles once per budget. Conventions (docs/theory.md §2.1):

* edge ``e`` goes from ``senders[e]`` (neighbour ``j``) to ``receivers[e]`` (centre ``i``);
  messages are summed at the receiver;
* the edge vector is ``r_e = x[receivers] − x[senders] + shifts[e] @ cell[graph of receiver]``
  (lattice vectors are the rows of ``cell``; ``shifts`` are integer-valued floats);
* molecules carry a zero cell and ``pbc = False``.

Padding: the last graph slot is always a padding graph (``graph_mask = False``) which owns every
padding node; padding edges join the last node to itself with zero shift and ``edge_mask =
False``. Padding therefore never changes a real result.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax.numpy as jnp
import numpy as np

from .fields import GRAPH_FIELDS, INPUTS, NODE_FIELDS

__all__ = [
    "Graph",
    "NODE_FIELDS",
    "GRAPH_FIELDS",
    "edge_vectors",
    "round_up",
    "budgets_for",
    "pad_graph",
]


@flax.struct.dataclass
class Graph:
    """A padded batch of atomic graphs (a pytree; all leaves are arrays).

    Attributes:
        positions: ``[N, 3]`` Å.
        species: ``[N]`` int32, element index into the model's sorted ``atomic_numbers``.
        numbers: ``[N]`` int32 atomic numbers (0 for padding).
        node_mask: ``[N]`` bool.
        node_graph: ``[N]`` int32 graph index of each node.
        senders, receivers: ``[E]`` int32.
        shifts: ``[E, 3]`` integer-valued cell shifts.
        edge_mask: ``[E]`` bool.
        cell: ``[G, 3, 3]`` (rows are lattice vectors; zeros for molecules).
        pbc: ``[G, 3]`` bool.
        graph_mask: ``[G]`` bool.
        n_node: ``[G]`` int32 number of real nodes per graph.
        extras: per-node/per-graph inputs (``charges``, ``total_charge``, ``level``,
            ``electric_field``, …).
        targets: labels for training (``energy [G]``, ``forces [N,3]``, ``stress [G,3,3]``, …)
            and their masks/weights.
    """

    positions: Any
    species: Any
    numbers: Any
    node_mask: Any
    node_graph: Any
    senders: Any
    receivers: Any
    shifts: Any
    edge_mask: Any
    cell: Any
    pbc: Any
    graph_mask: Any
    n_node: Any
    extras: dict = flax.struct.field(default_factory=dict)
    targets: dict = flax.struct.field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return self.positions.shape[0]

    @property
    def num_edges(self) -> int:
        return self.senders.shape[0]

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]

    @property
    def budgets(self) -> tuple[int, int, int]:
        return (self.num_nodes, self.num_edges, self.num_graphs)


def edge_vectors(positions, cell, graph: Graph):
    """``r_e = x[receiver] − x[sender] + shift_e @ cell[graph(receiver)]``, shape ``[E, 3]``.

    ``positions`` and ``cell`` are passed separately so that derivatives (forces, strain) can be
    taken with respect to them.
    """
    cell_e = cell[graph.node_graph[graph.receivers]]  # [E, 3, 3]
    shift_vec = jnp.einsum("ea,eab->eb", graph.shifts.astype(cell.dtype), cell_e)
    return positions[graph.receivers] - positions[graph.senders] + shift_vec


def wrap_positions(positions, cell, pbc) -> tuple[np.ndarray, np.ndarray]:
    """Positions wrapped into the cell along the periodic directions, in float64.

    Returns ``(x_w, n)`` with integer lattice vectors ``n [N, 3]`` such that
    ``x_w = x − n · cell`` has fractional coordinates in ``[0, 1)`` along periodic axes; atoms
    already inside (``n = 0``) are returned bit for bit. Wrapping before the cast to the
    compute dtype keeps float32 edge vectors accurate for atoms far outside the cell.
    """
    pos = np.asarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    n = np.zeros(pos.shape, np.int64)
    if len(pos) == 0 or not pbc.any():
        return pos, n
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if abs(np.linalg.det(cell)) < 1e-12:
        return pos, n
    frac = np.linalg.solve(cell.T, pos.T).T
    n = np.where(pbc, np.floor(frac), 0.0).astype(np.int64)
    if not n.any():
        return pos, n
    return pos - n @ cell, n


def wrap_graph_positions(positions, cell, pbc, senders, receivers, shifts):
    """``(x_w, shifts')``: :func:`wrap_positions` with the edge shifts adjusted so that every
    edge vector ``x[r] − x[s] + shift · cell`` is unchanged (``shift' = shift + n_r − n_s``)."""
    pos, n = wrap_positions(positions, cell, pbc)
    shifts = np.asarray(shifts).reshape(-1, 3)
    if n.any():
        shifts = shifts.astype(np.int64) + n[np.asarray(receivers)] - n[np.asarray(senders)]
    return pos, shifts


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``≥ n`` (and ``≥ multiple``)."""
    return max(multiple, -(-int(n) // multiple) * multiple)


def budgets_for(
    n_nodes: int, n_edges: int, n_graphs: int, multiple: int = 64, graph_multiple: int = 1
) -> tuple[int, int, int]:
    """Budgets that hold the given totals plus one padding node, edge and graph."""
    return (
        round_up(n_nodes + 1, multiple),
        round_up(n_edges + 1, multiple),
        round_up(n_graphs + 1, graph_multiple),
    )


def _pad(a: np.ndarray, size: int, fill) -> np.ndarray:
    if a.shape[0] > size:
        raise ValueError(f"cannot pad {a.shape[0]} entries into a budget of {size}")
    pad = np.full((size - a.shape[0], *a.shape[1:]), fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=0)


def pad_graph(g: dict[str, np.ndarray], budgets: tuple[int, int, int], dtype=np.float64) -> Graph:
    """Pad an unpadded numpy batch (``dict`` with the Graph fields) to ``budgets``.

    ``budgets = (N, E, G)`` must exceed the real sizes by at least one node and one graph (the
    padding graph); padding edges are optional when ``E`` equals the real edge count.
    """
    n_budget, e_budget, g_budget = budgets
    n, e, ng = len(g["positions"]), len(g["senders"]), len(g["cell"])
    if n + 1 > n_budget or e > e_budget or ng + 1 > g_budget:
        raise ValueError(
            f"batch of {n} nodes, {e} edges, {ng} graphs does not fit budgets {budgets} "
            "(one node and one graph are reserved for padding)"
        )
    pad_node, pad_graph_idx = n_budget - 1, g_budget - 1
    extras, targets = {}, {}
    for src, dst in ((g.get("extras", {}), extras), (g.get("targets", {}), targets)):
        for k, v in src.items():
            v = np.asarray(v)
            if k in NODE_FIELDS:
                per_node = True
            elif k in GRAPH_FIELDS:
                per_node = False
            elif len(v) == n and n != ng:
                per_node = True
            elif len(v) == ng and n != ng:
                per_node = False
            else:
                raise ValueError(
                    f"field {k!r} of length {len(v)} is ambiguous or wrong for {n} nodes and "
                    f"{ng} graphs; per-node fields are {sorted(NODE_FIELDS)}, per-graph fields "
                    f"are {sorted(GRAPH_FIELDS)}"
                )
            size = n_budget if per_node else g_budget
            if len(v) != (n if per_node else ng):
                raise ValueError(
                    f"field {k!r} has length {len(v)}, expected {n if per_node else ng} "
                    f"({'nodes' if per_node else 'graphs'})"
                )
            fill = False if v.dtype == bool else 0
            dst[k] = _pad(v.astype(dtype) if v.dtype.kind == "f" else v, size, fill)
    n_node = np.bincount(np.asarray(g["node_graph"]), minlength=ng).astype(np.int32)
    return Graph(
        positions=_pad(np.asarray(g["positions"], dtype), n_budget, 0.0),
        species=_pad(np.asarray(g["species"], np.int32), n_budget, 0),
        numbers=_pad(np.asarray(g["numbers"], np.int32), n_budget, 0),
        node_mask=_pad(np.ones(n, bool), n_budget, False),
        node_graph=_pad(np.asarray(g["node_graph"], np.int32), n_budget, pad_graph_idx),
        senders=_pad(np.asarray(g["senders"], np.int32), e_budget, pad_node),
        receivers=_pad(np.asarray(g["receivers"], np.int32), e_budget, pad_node),
        shifts=_pad(np.asarray(g["shifts"], dtype), e_budget, 0.0),
        edge_mask=_pad(np.ones(e, bool), e_budget, False),
        cell=_pad(np.asarray(g["cell"], dtype).reshape(ng, 3, 3), g_budget, 0.0),
        pbc=_pad(np.asarray(g["pbc"], bool).reshape(ng, 3), g_budget, False),
        graph_mask=_pad(np.ones(ng, bool), g_budget, False),
        n_node=_pad(n_node, g_budget, 0),
        extras=extras,
        targets=targets,
    )


def single_atom_graph(atomic_number: int, dtype=np.float32, inputs=()) -> Graph:
    """One isolated atom (no edges) in the smallest padded batch: used to ``init`` models, whose
    parameter shapes do not depend on the graph. ``inputs`` names model inputs (registry names,
    e.g. ``TACEConfig.input_names``) to provide as zero-valued extras."""
    extras = {}
    for name in inputs:
        spec = INPUTS[name]
        extras[name] = np.zeros((1, *spec.shape), spec.np_dtype)
    return pad_graph(
        {
            "positions": np.zeros((1, 3)),
            "species": np.zeros(1, np.int64),
            "numbers": np.asarray([atomic_number]),
            "node_graph": np.zeros(1, np.int64),
            "senders": np.zeros(0, np.int64),
            "receivers": np.zeros(0, np.int64),
            "shifts": np.zeros((0, 3)),
            "cell": np.zeros((1, 3, 3)),
            "pbc": np.zeros((1, 3), bool),
            "extras": extras,
        },
        (2, 1, 2),
        dtype=dtype,
    )
