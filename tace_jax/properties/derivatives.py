"""Forces, virials, stress, edge forces and atomic virials/stresses by automatic differentiation.

Conventions (TACE_SPEC §3, fixture README §4); edge ``e`` has
``r_e = x[receiver] − x[sender] + S_e·L`` and

* forces ``F_i = −∂E/∂x_i``;
* virials ``V = −∂E/∂ε`` for the symmetric strain ``x′ = x + x·ε_s``, ``L′ = L + L·ε_s``,
  ``ε_s = ½(ε + εᵀ)`` at ``ε = 0`` (one ``3×3`` per graph);
* stress ``σ = −V/|det L|`` (ASE sign), zero for non-periodic graphs (virials are kept);
* edge forces ``g_e = +∂E/∂r_e`` (LAMMPS convention);
* atomic virials ``W_i = −sym(½Σ_{e: sender=i} g_e⊗r_e + ½Σ_{e: receiver=i} g_e⊗r_e)``;
* atomic stresses ``−W_i/|det L|`` (whole-cell volume), zero for non-periodic graphs.

Default route (``method="edges"``): one reverse pass gives ``g = ∂E/∂r`` for all edges. Because
the model sees positions and cell only through edge vectors, everything follows from ``g`` with
segment sums: ``F_i = Σ_{sender=i} g_e − Σ_{receiver=i} g_e`` and, since the strain maps
``r_e ↦ r_e + r_e·ε_s``, ``V = −sym(Σ_e r_e⊗g_e)``. The alternative ``method="positions"``
differentiates with respect to ``(positions, strain)`` through the whole graph (one reverse pass
as well); use it for models that also depend on positions directly (e.g. long-range terms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from tace_jax.data.graph import Graph, edge_vectors

__all__ = [
    "DERIVED_PROPERTIES",
    "PROPERTY_NAMES",
    "VOLUME_EPS",
    "compute_properties",
    "strained",
    "cell_volume",
]

#: Properties computed from the energy gradient.
DERIVED_PROPERTIES = (
    "forces",
    "virials",
    "stress",
    "edge_forces",
    "atomic_virials",
    "atomic_stresses",
)
#: Every name :func:`compute_properties` knows besides raw model outputs.
PROPERTY_NAMES = ("energy", "node_energy", *DERIVED_PROPERTIES)
_EDGE_ONLY = ("edge_forces", "atomic_virials", "atomic_stresses")
#: Graphs with ``|det L|`` at or below this (Å³) count as non-periodic: zero stress.
VOLUME_EPS = 1e-6

ApplyFn = Callable[..., dict]


def _sym(m: jax.Array) -> jax.Array:
    return 0.5 * (m + jnp.swapaxes(m, -1, -2))


def cell_volume(graph: Graph) -> tuple[jax.Array, jax.Array]:
    """``(safe_volume [G], periodic [G])``: ``|det L|`` (1 where not periodic) and the mask.

    The double-``where`` keeps gradients finite for molecules (``L = 0``).
    """
    vol = jnp.abs(jnp.linalg.det(graph.cell))
    periodic = vol > VOLUME_EPS
    return jnp.where(periodic, vol, 1.0), periodic


def strained(graph: Graph, strain: jax.Array) -> Graph:
    """Apply ``x′ = x + x·ε_s``, ``L′ = L + L·ε_s`` with ``ε_s = ½(ε + εᵀ)`` per graph.

    Args:
        graph: a padded batch.
        strain: ``[G, 3, 3]`` (usually zeros; differentiate at that point).
    """
    eps = _sym(strain)
    pos = graph.positions + jnp.einsum("na,nab->nb", graph.positions, eps[graph.node_graph])
    cell = graph.cell + jnp.einsum("gca,gab->gcb", graph.cell, eps)
    return graph.replace(positions=pos, cell=cell)


def _check_properties(properties: Sequence[str], method: str) -> tuple[str, ...]:
    if isinstance(properties, str):
        properties = (properties,)
    properties = tuple(properties)
    if method not in ("edges", "positions"):
        raise ValueError(f"method must be 'edges' or 'positions', got {method!r}")
    if method == "positions" and any(p in _EDGE_ONLY for p in properties):
        bad = [p for p in properties if p in _EDGE_ONLY]
        raise ValueError(f"properties {bad} need method='edges' (edge-vector gradients)")
    return properties


def _total_energy(out: dict, graph: Graph) -> jax.Array:
    if "energy" not in out:
        raise KeyError(f"the model output has no 'energy' (keys: {sorted(out)})")
    return jnp.sum(jnp.where(graph.graph_mask, out["energy"], 0.0))


def _edge_route(apply_fn, variables, graph, need) -> tuple[dict, dict]:
    """One VJP w.r.t. edge vectors; returns (model output, derived properties)."""
    n, g = graph.num_nodes, graph.num_graphs
    r = edge_vectors(graph.positions, graph.cell, graph)

    def energy_of_edges(r):
        out = apply_fn(variables, graph, edge_vecs=r)
        return _total_energy(out, graph), out

    _, vjp, out = jax.vjp(energy_of_edges, r, has_aux=True)
    (grad_r,) = vjp(jnp.ones((), r.dtype))
    ge = jnp.where(graph.edge_mask[:, None], grad_r, 0.0)  # g_e = +∂E/∂r_e
    res: dict = {}
    if "forces" in need:
        f = jax.ops.segment_sum(ge, graph.senders, num_segments=n) - jax.ops.segment_sum(
            ge, graph.receivers, num_segments=n
        )
        res["forces"] = jnp.where(graph.node_mask[:, None], f, 0.0)
    if "edge_forces" in need:
        res["edge_forces"] = ge
    gr = ge[:, :, None] * r[:, None, :]  # g_e ⊗ r_e  [E, 3, 3]
    if "virials" in need or "stress" in need:
        edge_graph = graph.node_graph[graph.receivers]
        v = -_sym(jax.ops.segment_sum(gr, edge_graph, num_segments=g))
        res["virials"] = jnp.where(graph.graph_mask[:, None, None], v, 0.0)
    if "atomic_virials" in need or "atomic_stresses" in need:
        w = jax.ops.segment_sum(gr, graph.senders, num_segments=n)
        w = w + jax.ops.segment_sum(gr, graph.receivers, num_segments=n)
        w = -_sym(0.5 * w)
        res["atomic_virials"] = jnp.where(graph.node_mask[:, None, None], w, 0.0)
    return out, res


def _positions_route(apply_fn, variables, graph, need) -> tuple[dict, dict]:
    """One VJP w.r.t. (positions, strain) through the whole graph."""
    strain = jnp.zeros((graph.num_graphs, 3, 3), graph.positions.dtype)

    def energy_of(pos, eps):
        gr = strained(graph.replace(positions=pos), eps)
        out = apply_fn(variables, gr)
        return _total_energy(out, graph), out

    _, vjp, out = jax.vjp(energy_of, graph.positions, strain, has_aux=True)
    de_dx, de_deps = vjp(jnp.ones((), graph.positions.dtype))
    res: dict = {}
    if "forces" in need:
        res["forces"] = jnp.where(graph.node_mask[:, None], -de_dx, 0.0)
    if "virials" in need or "stress" in need:
        res["virials"] = jnp.where(graph.graph_mask[:, None, None], -de_deps, 0.0)
    return out, res


def compute_properties(
    apply_fn: ApplyFn,
    variables,
    graph: Graph,
    properties: Sequence[str] = ("energy", "forces"),
    training: bool = False,
    method: str = "edges",
) -> dict:
    """Energy and requested derivatives for a padded batch (pure; ``jit`` with static args).

    Args:
        apply_fn: ``apply_fn(variables, graph, edge_vecs=None) -> dict`` with ``"energy" [G]``
            and ``"node_energy" [N]`` (e.g. ``TACE(cfg, stats).apply``).
        variables: model variables.
        graph: padded :class:`~tace_jax.data.Graph` batch.
        properties: names among :data:`PROPERTY_NAMES` or any key of the model output (e.g.
            ``"scalar_descriptor"``). ``"energy"`` and any ``direct_*`` heads are always returned.
        training: ``True`` keeps every output differentiable w.r.t. ``variables`` (double
            backprop for force/stress losses); ``False`` wraps ``variables`` in
            ``stop_gradient`` so nothing upstream is kept.
        method: ``"edges"`` (default; one VJP w.r.t. edge vectors gives every derivative) or
            ``"positions"`` (one VJP w.r.t. positions and strain; no edge-level outputs).

    Returns:
        dict with ``energy [G]``, ``node_energy [N]``, ``forces [N,3]``, ``virials [G,3,3]``,
        ``stress [G,3,3]``, ``edge_forces [E,3]``, ``atomic_virials [N,3,3]``,
        ``atomic_stresses [N,3,3]`` as requested, plus ``direct_*`` heads. Padding entries are 0.

    Raises:
        ValueError: unknown ``method``, or edge-level outputs with ``method="positions"``.
        KeyError: a requested name is neither derived nor in the model output.
    """
    properties = _check_properties(properties, method)
    if not training:
        variables = jax.lax.stop_gradient(variables)
    need = {p for p in properties if p in DERIVED_PROPERTIES}
    if not need:
        out, res = apply_fn(variables, graph), {}
    elif method == "edges":
        out, res = _edge_route(apply_fn, variables, graph, need)
    else:
        out, res = _positions_route(apply_fn, variables, graph, need)

    result = {"energy": jnp.where(graph.graph_mask, out["energy"], 0.0)}
    for p in properties:
        if p in result or p in res or p in DERIVED_PROPERTIES:
            continue
        if p not in out:
            raise KeyError(f"property {p!r} is neither derived nor a model output {sorted(out)}")
        result[p] = out[p]
    result.update({k: v for k, v in out.items() if k.startswith("direct_")})
    if need & {"stress", "atomic_stresses"}:
        vol, periodic = cell_volume(graph)
        if "stress" in need:
            s = -res["virials"] / vol[:, None, None]
            res["stress"] = jnp.where(periodic[:, None, None], s, 0.0)
        if "atomic_stresses" in need:
            vol_n, per_n = vol[graph.node_graph], periodic[graph.node_graph]
            s = -res["atomic_virials"] / vol_n[:, None, None]
            res["atomic_stresses"] = jnp.where(per_n[:, None, None], s, 0.0)
    result.update({k: v for k, v in res.items() if k in properties})
    return result
