"""Forces, virials, stress, edge forces, atomic virials/stresses and field responses by
automatic differentiation.

Conventions (docs/theory.md §3); edge ``e`` has ``r_e = x[receiver] − x[sender] + S_e·L`` and

* forces ``F_i = −dE/dx_i``;
* virials ``V = −∂E/∂ε`` for the symmetric strain ``x′ = x + x·ε_s``, ``L′ = L + L·ε_s``,
  ``ε_s = ½(ε + εᵀ)`` at ``ε = 0`` (one ``3×3`` per graph);
* stress ``σ = −V/|det L|`` (ASE sign), zero for non-periodic graphs (virials are kept);
* edge forces ``g_e = +∂E/∂r_e`` (LAMMPS convention);
* atomic virials ``W_i = −sym(½Σ_{e: sender=i} g_e⊗r_e + ½Σ_{e: receiver=i} g_e⊗r_e + d_i⊗x_i)``
  where ``d_i = ∂E/∂x_i`` at fixed edge vectors (zero for a model that sees positions only
  through edge vectors, like TACE without a direct position term);
* atomic stresses ``−W_i/|det L|`` (whole-cell volume), zero for non-periodic graphs;
* response properties (polarization, polarizability, Born charges, magnetization,
  susceptibility, magnetic forces): :mod:`tace_jax.properties.response`.

Default route (``method="edges"``): one reverse pass gives ``g = ∂E/∂r`` for all edges, the
direct ``d = ∂E/∂x`` and the direct ``D = ∂E/∂L`` (at fixed edge vectors; LES depends on the
cell itself). Everything follows with segment sums:
``F_i = Σ_{sender=i} g_e − Σ_{receiver=i} g_e − d_i`` and, since the strain maps
``r_e ↦ r_e + r_e·ε_s``, ``x_i ↦ x_i + x_i·ε_s`` and ``L ↦ L + L·ε_s``,
``V = −sym(Σ_e g_e⊗r_e + Σ_i d_i⊗x_i + DᵀL)``. The direct cell term has no per-atom split:
``atomic_virials`` leave it out (they sum to the virial only for models without one).
The alternative ``method="positions"`` differentiates with respect to ``(positions, strain)``
through the whole graph (one reverse pass as well; no edge-level outputs). Both routes give the
same forces, virials and responses, also for models with direct position terms.

The same reverse pass also differentiates with respect to the requested field inputs; second
derivatives (α, Z*, χ) are JVPs of it (forward-over-reverse), so the whole result stays
differentiable with respect to the variables (double backprop for training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from tace_jax.data.graph import Graph, edge_vectors

from .response import (
    RESPONSE_PROPERTIES,
    field_directions,
    response_outputs,
    response_plan,
    reverse_names,
)

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
PROPERTY_NAMES = ("energy", "node_energy", *DERIVED_PROPERTIES, *RESPONSE_PROPERTIES)
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


def _geometry_primals(graph: Graph, method: str) -> dict:
    """The geometric variables of the reverse pass for ``method``."""
    if method == "edges":
        # edge vectors, plus positions and cell for any direct (non-edge) dependence (LES)
        edges = edge_vectors(graph.positions, graph.cell, graph)
        return {"edges": edges, "pos": graph.positions, "cell": graph.cell}
    strain = jnp.zeros((graph.num_graphs, 3, 3), graph.positions.dtype)
    return {"pos": graph.positions, "strain": strain}


def _model_call(apply_fn, variables, graph: Graph, geo: dict, inputs: dict) -> dict:
    if inputs:
        graph = graph.replace(extras={**(graph.extras or {}), **inputs})
    if not geo:
        return apply_fn(variables, graph)
    if "edges" in geo:
        graph = graph.replace(positions=geo["pos"], cell=geo["cell"])
        return apply_fn(variables, graph, edge_vecs=geo["edges"])
    return apply_fn(variables, strained(graph.replace(positions=geo["pos"]), geo["strain"]))


def _forces(graph: Graph, d_geo: dict) -> jax.Array:
    """``F = −dE/dx`` from the geometric gradient (linear in ``d_geo``)."""
    n = graph.num_nodes
    f = -d_geo["pos"]
    if "edges" in d_geo:
        ge = jnp.where(graph.edge_mask[:, None], d_geo["edges"], 0.0)
        f = f + jax.ops.segment_sum(ge, graph.senders, num_segments=n)
        f = f - jax.ops.segment_sum(ge, graph.receivers, num_segments=n)
    return jnp.where(graph.node_mask[:, None], f, 0.0)


def _geometry_outputs(graph: Graph, geo: dict, d_geo: dict, need: set) -> dict:
    """Forces, virials, edge forces and atomic virials from ``∂E/∂(geometry)``."""
    n, g = graph.num_nodes, graph.num_graphs
    res: dict = {}
    if "forces" in need:
        res["forces"] = _forces(graph, d_geo)
    if "strain" in d_geo:
        if "virials" in need or "stress" in need:
            res["virials"] = jnp.where(graph.graph_mask[:, None, None], -d_geo["strain"], 0.0)
        return res
    ge = jnp.where(graph.edge_mask[:, None], d_geo["edges"], 0.0)  # g_e = +∂E/∂r_e
    d = jnp.where(graph.node_mask[:, None], d_geo["pos"], 0.0)  # direct ∂E/∂x_i
    if "edge_forces" in need:
        res["edge_forces"] = ge
    gr = ge[:, :, None] * geo["edges"][:, None, :]  # g_e ⊗ r_e  [E, 3, 3]
    dx = d[:, :, None] * geo["pos"][:, None, :]  # d_i ⊗ x_i  [N, 3, 3]
    if "virials" in need or "stress" in need:
        edge_graph = graph.node_graph[graph.receivers]
        v = jax.ops.segment_sum(gr, edge_graph, num_segments=g)
        v = v + jax.ops.segment_sum(dx, graph.node_graph, num_segments=g)
        v = -_sym(v + jnp.einsum("gca,gcb->gab", d_geo["cell"], geo["cell"]))  # direct L term
        res["virials"] = jnp.where(graph.graph_mask[:, None, None], v, 0.0)
    if "atomic_virials" in need or "atomic_stresses" in need:
        w = jax.ops.segment_sum(gr, graph.senders, num_segments=n)
        w = w + jax.ops.segment_sum(gr, graph.receivers, num_segments=n)
        w = -_sym(0.5 * w + dx)
        res["atomic_virials"] = jnp.where(graph.node_mask[:, None, None], w, 0.0)
    return res


def _autodiff(apply_fn, variables, graph: Graph, need: set, method: str) -> tuple[dict, dict]:
    """One reverse pass for every first derivative; JVPs of it for α, Z* and χ."""
    inputs, tangent_names = response_plan(need, graph)
    reverse = reverse_names(need)
    geometric = bool(need & (set(DERIVED_PROPERTIES) | {"born_effective_charges"}))
    geo = _geometry_primals(graph, method) if geometric else {}

    def gradients(moving: dict):
        fixed = {**inputs, **moving}

        def energy(geo, rev):
            out = _model_call(apply_fn, variables, graph, geo, {**fixed, **rev})
            return _total_energy(out, graph), out

        e, vjp, out = jax.vjp(energy, geo, {k: fixed[k] for k in reverse}, has_aux=True)
        d_geo, d_rev = vjp(jnp.ones_like(e))
        return (d_geo, d_rev), out

    moving = {k: inputs[k] for k in tangent_names}
    d_rev_dot = f_dot = None
    if not tangent_names:
        (d_geo, d_rev), out = gradients(moving)
    else:

        def along(direction):
            primal, dot, out = jax.jvp(gradients, (moving,), (direction,), has_aux=True)
            return primal, out, dot

        dirs = field_directions(moving, tangent_names)
        (d_geo, d_rev), out, (d_geo_dot, d_rev_dot) = jax.vmap(along, out_axes=(None, None, 0))(
            dirs
        )
        if "born_effective_charges" in need:
            f_dot = jax.vmap(lambda d: _forces(graph, d))(d_geo_dot)
    res = _geometry_outputs(graph, geo, d_geo, need) if geometric else {}
    res.update(response_outputs(graph, need, d_rev, tangent_names, d_rev_dot, f_dot))
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
        method: ``"edges"`` (default; one VJP w.r.t. edge vectors and positions gives every
            derivative) or ``"positions"`` (one VJP w.r.t. positions and strain; no edge-level
            outputs).

    Returns:
        dict with ``energy [G]``, ``node_energy [N]``, ``forces [N,3]``, ``virials [G,3,3]``,
        ``stress [G,3,3]``, ``edge_forces [E,3]``, ``atomic_virials [N,3,3]``,
        ``atomic_stresses [N,3,3]`` and the response properties of
        :data:`~tace_jax.properties.RESPONSE_PROPERTIES` (``polarization [G,3]``,
        ``conservative_polarizability [G,3,3]``, ``born_effective_charges [N,3,3]``,
        ``magnetization [G,3]``, ``magnetic_susceptibility [G,3,3]``,
        ``collinear_magnetic_forces [N]``, ``noncollinear_magnetic_forces [N,3]``) as
        requested, plus ``direct_*`` heads. Only what is asked for is computed. Padding
        entries are 0.

    Raises:
        ValueError: unknown ``method``; edge-level outputs with ``method="positions"``; a
            response property whose input (``graph.extras["electric_field"]`` etc.) is missing
            or malformed (the message names both).
        KeyError: a requested name is neither derived nor in the model output.
    """
    properties = _check_properties(properties, method)
    if not training:
        variables = jax.lax.stop_gradient(variables)
    need = {p for p in properties if p in DERIVED_PROPERTIES or p in RESPONSE_PROPERTIES}
    if not need:
        out, res = apply_fn(variables, graph), {}
    else:
        out, res = _autodiff(apply_fn, variables, graph, need, method)

    result = {"energy": jnp.where(graph.graph_mask, out["energy"], 0.0)}
    for p in properties:
        if p in result or p in res or p in need:
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
