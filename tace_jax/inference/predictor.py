"""The padded-batch predictor: ``ase.Atoms`` in, numpy results per structure out.

:class:`Predictor` turns structures into padded :class:`~tace_jax.data.graph.Graph` batches
(neighbour lists, model inputs through :func:`tace_jax.data.inputs.read_inputs`), rounds the
budgets up to buckets so that a stream of similar structures reuses a few compiled shapes,
compiles one function per (properties, bucket) and cuts the batch outputs back into one dict per
structure. It knows nothing about TACE: any ``apply_fn(variables, graph, edge_vecs=None)`` works.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from tace_jax.data.atoms_graph import atoms_to_graph_dict, collate
from tace_jax.data.graph import Graph, pad_graph, round_up
from tace_jax.data.inputs import check_input_names, present_inputs, read_inputs
from tace_jax.properties import compute_properties, hessian

__all__ = ["Predictor", "bucket", "GRAPH_OUTPUTS"]

#: Outputs with one entry per graph (the rest are per node, or per edge for ``edge_forces``).
GRAPH_OUTPUTS = frozenset(
    {
        "energy",
        "virials",
        "stress",
        "direct_dipole",
        "direct_polarizability",
        "direct_virials",
        "direct_stress",
        "polarization",
        "conservative_polarizability",
        "magnetization",
        "magnetic_susceptibility",
        "les_energy",
    }
)


def bucket(n: int, multiple: int = 64, per_octave: int = 8) -> int:
    """Padding size for ``n`` items: a multiple of ``multiple``, then ``per_octave`` sizes per
    doubling (≤ 12.5 % waste with the default 8), so nearby sizes share a compiled shape."""
    m = round_up(max(int(n), 1), multiple)
    if m <= multiple * per_octave:
        return m
    step = max(multiple, 1 << (m.bit_length() - 1 - int(math.log2(per_octave))))
    return round_up(m, step)


class Predictor:
    """Batched, bucketed, compiled prediction for one energy model.

    Args:
        apply_fn: ``apply_fn(variables, graph, edge_vecs=None) -> dict`` with ``energy [G]``.
        cutoff: neighbour-list cutoff, Å.
        atomic_numbers: the model's sorted elements.
        dtype: compute dtype of positions, cells and float inputs.
        input_names: model inputs to assemble into ``graph.extras``.
        input_limits: exclusive upper bounds of integer inputs (e.g. ``{"level": 3}``).
        static_args: optional ``graph -> dict`` of hashable keyword arguments for ``apply_fn``
            computed on the host per batch (e.g. the LES k-grid); part of the compile key.
        extra_properties: optional ``{name: f(apply_fn, variables, graph) -> array}`` for
            properties that ``compute_properties`` does not know (e.g. LES Born charges).
        method: the ``compute_properties`` route (``"positions"`` for energies with an explicit
            cell dependence, such as LES, that the ``"edges"`` route does not differentiate).

    Attributes:
        trace_count: how many times a function was traced (one per compile).
    """

    def __init__(
        self,
        apply_fn,
        cutoff: float,
        atomic_numbers: Sequence[int],
        dtype,
        input_names: Sequence[str] = (),
        input_limits: Mapping[str, int] | None = None,
        static_args=None,
        extra_properties: Mapping[str, Any] | None = None,
        method: str = "edges",
    ):
        check_input_names(input_names)
        self.apply_fn = apply_fn
        self.cutoff = float(cutoff)
        self.atomic_numbers = tuple(int(z) for z in atomic_numbers)
        self.dtype = np.dtype(dtype)
        self.input_names = tuple(input_names)
        self.input_limits = dict(input_limits or {})
        self.static_args = static_args
        self.extra_properties = dict(extra_properties or {})
        self.method = method
        self.trace_count = 0
        self._fns: dict = {}
        self._warned: set[str] = set()

    # -------------------------------------------------------------------------- graphs
    def graph_dict(self, atoms, where: str, inputs: Mapping[str, Any] | None = None) -> dict:
        """One unpadded graph dict of ``atoms`` with its model inputs in ``extras``."""
        d = atoms_to_graph_dict(atoms, self.cutoff, self.atomic_numbers, where=where)
        d["extras"] = read_inputs(atoms, self.input_names, inputs, where, self.input_limits)
        self._warn_unused(present_inputs(atoms, inputs))
        return d

    def _warn_unused(self, given: set[str]) -> None:
        unused = sorted(given - set(self.input_names) - self._warned)
        if unused:
            self._warned.update(unused)
            warnings.warn(
                f"inputs {unused} are ignored: this model does not use them (it uses "
                f"{list(self.input_names) or 'none'})",
                stacklevel=4,
            )

    def pad(self, batch: dict, n_graphs: int, budgets=None) -> Graph:
        """Pad a collated batch (budgets bucketed unless given)."""
        if budgets is None:
            budgets = (
                bucket(len(batch["positions"]) + 1, multiple=8),
                bucket(len(batch["senders"]) + 1, multiple=32),
                n_graphs + 1,
            )
        return pad_graph(batch, budgets, dtype=self.dtype)

    def graph(self, atoms_list, budgets=None, where: str = "structure", **inputs) -> Graph:
        """A padded graph of one ``Atoms`` or a list of them."""
        if not isinstance(atoms_list, (list, tuple)):
            atoms_list = [atoms_list]
        dicts = [self.graph_dict(a, f"{where} {k}", inputs) for k, a in enumerate(atoms_list)]
        return self.pad(collate(dicts), len(dicts), budgets)

    # ------------------------------------------------------------------------- compute
    def compute(self, variables, graph: Graph, properties: Sequence[str]) -> dict:
        """Jitted :func:`~tace_jax.properties.compute_properties` (one compile per shape)."""
        properties = tuple(properties)
        apply, static = self._static_apply(graph)
        key = (properties, static)
        if key not in self._fns:
            extra = [p for p in properties if p in self.extra_properties]
            base = tuple(p for p in properties if p not in self.extra_properties)

            def fn(variables, graph):
                self.trace_count += 1
                out = compute_properties(apply, variables, graph, base, method=self.method)
                for p in extra:
                    out[p] = self.extra_properties[p](apply, variables, graph)
                return out

            self._fns[key] = jax.jit(fn)
        return self._fns[key](variables, graph)

    def _static_apply(self, graph: Graph):
        """``(apply_fn with the batch's static arguments bound, their hashable key)``."""
        if self.static_args is None:
            return self.apply_fn, ()
        static = self.static_args(graph)
        return functools.partial(self.apply_fn, **static), tuple(sorted(static.items()))

    def predict(
        self,
        variables,
        atoms_list,
        properties: Sequence[str],
        batch_size: int = 8,
        inputs: Mapping[str, Any] | None = None,
    ) -> list[dict]:
        """One dict of numpy arrays per structure (see ``Potential.predict``)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results = []
        for start in range(0, len(atoms_list), batch_size):
            chunk = atoms_list[start : start + batch_size]
            dicts = [
                self.graph_dict(a, f"structure {start + k}", inputs) for k, a in enumerate(chunk)
            ]
            graph = self.pad(collate(dicts), len(dicts))
            out = jax.tree.map(np.asarray, self.compute(variables, graph, properties))
            results.extend(split_outputs(out, dicts, graph))
        return results

    def hessian(self, variables, atoms, chunk_size: int = 16, inputs=None) -> np.ndarray:
        """Hessian ``∂²E/∂x∂x`` of one structure, ``[n, 3, n, 3]`` (numpy)."""
        d = self.graph_dict(atoms, "structure 0", inputs)
        graph = self.pad(collate([d]), 1)
        n = len(d["positions"])
        apply, static = self._static_apply(graph)
        key = ("hessian", n, int(chunk_size), graph.budgets, static)
        if key not in self._fns:

            def fn(variables, graph):
                self.trace_count += 1
                return hessian(apply, variables, graph, chunk_size, num_atoms=n)

            self._fns[key] = jax.jit(fn)
        return np.asarray(self._fns[key](variables, graph))[:, :, :n, :]


def split_outputs(out: dict, dicts: list[dict], graph: Graph) -> list[dict]:
    """Cut batch outputs into per-structure numpy dicts."""
    n_nodes, _, n_graphs = graph.budgets
    node_off = np.cumsum([0] + [len(d["positions"]) for d in dicts])
    edge_off = np.cumsum([0] + [len(d["senders"]) for d in dicts])
    res = []
    for k, d in enumerate(dicts):
        r: dict[str, Any] = {}
        for name, v in out.items():
            if name == "edge_forces":
                r[name] = v[edge_off[k] : edge_off[k + 1]]
                r["edge_senders"] = np.asarray(d["senders"])
                r["edge_receivers"] = np.asarray(d["receivers"])
                r["edge_shifts"] = np.asarray(d.get("input_shifts", d["shifts"]))
            elif name in GRAPH_OUTPUTS or (v.shape[:1] == (n_graphs,) and n_graphs != n_nodes):
                r[name] = v[k]
            else:
                r[name] = v[node_off[k] : node_off[k + 1]]
        r["energy"] = float(r["energy"])
        res.append(r)
    return res
