"""A tiny smooth many-body potential with the TACE ``apply`` interface, for property tests.

``toy_apply(variables, graph, edge_vecs=None)`` returns ``{"node_energy": [N], "energy": [G]}``
so that every derived property of :func:`tace_jax.properties.compute_properties` can be checked
without the full network.

Geometry part (always): pair, embedding (EAM-like, density ``ρ_i``) and angular
(``|μ_i|²`` with the local vector ``μ_i = Σ_j r_ij f(r_ij)``) terms, built from edge vectors only
(like the real model); rotation, permutation and translation invariant, with anisotropic
virials and dense Hessians.

Response part, each term read only when its input is in ``graph.extras`` (docs/theory.md §3;
the field enters like the equivariant embedding of §2.5, so the site energy couples it to the
local geometry through ``μ_i``):

* ``electric_field`` ℰ ``[G, 3]``:
  ``−κ_z tanh(μ_i·ℰ + c_z) − ½ a_z (1 + ρ_i)|ℰ|²`` (a learned-like dipole, nonlinear in ℰ);
* ``magnetic_field`` B ``[G, 3]``: ``−½ χ_z (1 + ρ_i)|B|² − β_z tanh(μ_i·B + b_z)``;
* ``initial_collinear_magmoms`` m ``[N]``: ``½ k_z (1 + ρ_i) m_i² + ½ J Σ_j f_ij m_i m_j``,
  plus ``−ζ_z m_i (μ_i·B)`` when B is present;
* ``initial_noncollinear_magmoms`` n ``[N, 3]``: ``½ k'_z ρ_i |n_i|² + λ_z (n_i·μ_i)²
  + ½ J' Σ_j f_ij n_i·n_j``, plus ``−η_z tanh(n_i·B)`` when B is present.

B and the moments are treated as polar vectors, like the reference model (the toy is then
O(3) invariant with every vector input rotated as ``v·Rᵀ``; with a physical, axial B it would be
invariant under proper rotations only).

``toy_init(..., direct_charges=True)`` adds a term that depends on positions directly (not
through edge vectors): ``−(q_z − q̄_g) x_i·ℰ`` with fixed species charges, mean-removed per
graph so the polarization stays translation invariant (acoustic sum rule).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tace_jax.data.graph import Graph, edge_vectors
from tace_jax.ops import safe_norm

__all__ = ["toy_init", "toy_apply"]

_RESPONSE_PARAMS = ("kappa", "c", "a", "chi", "beta", "b", "k", "zeta", "k_nc", "lam", "eta")


def toy_init(
    key: jax.Array,
    num_species: int,
    cutoff: float = 4.0,
    dtype=jnp.float64,
    direct_charges: bool = False,
) -> dict:
    """Random toy parameters for ``num_species`` elements (``cutoff`` is stored as a constant).

    Args:
        key: PRNG key.
        num_species: number of elements.
        cutoff: cutoff radius (Å).
        dtype: parameter dtype.
        direct_charges: add the direct position term ``−(q_z − q̄_g) x_i·ℰ``.
    """
    k = jax.random.split(key, 5)
    u = lambda kk, shape: jax.random.uniform(kk, shape, dtype, 0.5, 1.5)
    params = {
        "e0": jax.random.normal(k[0], (num_species,), dtype),
        "pair": u(k[1], (num_species, num_species)),
        "embed": u(k[2], (num_species,)),
        "angular": 0.3 * u(k[3], (num_species,)),
        "width": u(k[4], (num_species,)),
    }
    kr = jax.random.split(jax.random.fold_in(key, 1), len(_RESPONSE_PARAMS) + 3)
    response = {
        name: jax.random.uniform(kk, (num_species,), dtype, -1.0, 1.0) + 0.5
        for name, kk in zip(_RESPONSE_PARAMS, kr)
    }
    response["exchange"] = jax.random.uniform(kr[-3], (), dtype, 0.2, 0.6)
    response["exchange_nc"] = jax.random.uniform(kr[-2], (), dtype, -0.6, -0.2)
    params["response"] = response
    if direct_charges:
        params["charge"] = jax.random.normal(kr[-1], (num_species,), dtype)
    return {"params": params, "constants": {"cutoff": jnp.asarray(cutoff, dtype)}}


def _cutoff_fn(r, rc):
    """Smooth polynomial cutoff, C² at ``rc`` and 0 beyond."""
    x = jnp.clip(r / rc, 0.0, 1.0)
    return (1.0 - x) ** 3 * (1.0 + 3.0 * x + 6.0 * x**2)


def _dot(a, b):
    return jnp.sum(a * b, axis=-1)


def _response_energy(p: dict, graph: Graph, mu, rho, fc) -> jax.Array:
    """Site energies ``[N]`` of the input-dependent terms (0 when no input is present)."""
    ex = graph.extras or {}
    q = p["response"]
    s, n = graph.species, graph.num_nodes
    e = jnp.zeros(rho.shape, rho.dtype)
    field = ex.get("electric_field")
    bfield = ex.get("magnetic_field")
    if field is not None:
        f = jnp.asarray(field)[graph.node_graph]
        e = e - q["kappa"][s] * jnp.tanh(_dot(mu, f) + q["c"][s])
        e = e - 0.5 * q["a"][s] * (1.0 + rho) * _dot(f, f)
        if "charge" in p:
            e = e + _direct_charge_energy(p["charge"], graph, f)
    if bfield is not None:
        bn = jnp.asarray(bfield)[graph.node_graph]
        e = e - 0.5 * q["chi"][s] * (1.0 + rho) * _dot(bn, bn)
        e = e - q["beta"][s] * jnp.tanh(_dot(mu, bn) + q["b"][s])
    m = ex.get("initial_collinear_magmoms")
    if m is not None:
        m = jnp.asarray(m)
        pair = fc * m[graph.senders] * m[graph.receivers]
        e = e + 0.5 * q["k"][s] * (1.0 + rho) * m**2
        e = e + 0.5 * q["exchange"] * jax.ops.segment_sum(pair, graph.receivers, num_segments=n)
        if bfield is not None:
            e = e - q["zeta"][s] * m * _dot(mu, bn)
    v = ex.get("initial_noncollinear_magmoms")
    if v is not None:
        v = jnp.asarray(v)
        pair = fc * _dot(v[graph.senders], v[graph.receivers])
        e = e + 0.5 * q["k_nc"][s] * rho * _dot(v, v) + q["lam"][s] * _dot(v, mu) ** 2
        e = e + 0.5 * q["exchange_nc"] * jax.ops.segment_sum(pair, graph.receivers, num_segments=n)
        if bfield is not None:
            e = e - q["eta"][s] * jnp.tanh(_dot(v, bn))
    return e


def _direct_charge_energy(charge, graph: Graph, field_n) -> jax.Array:
    """``−(q_i − q̄_g) x_i·ℰ`` per node: depends on positions directly."""
    g = graph.num_graphs
    qi = jnp.where(graph.node_mask, charge[graph.species], 0.0)
    count = jnp.maximum(graph.n_node, 1).astype(qi.dtype)
    qbar = jax.ops.segment_sum(qi, graph.node_graph, num_segments=g) / count
    return -(qi - qbar[graph.node_graph]) * _dot(graph.positions, field_n)


def toy_apply(variables: dict, graph: Graph, edge_vecs=None) -> dict:
    """Energy of the toy potential.

    Args:
        variables: from :func:`toy_init`.
        graph: a padded batch; the optional inputs are read from ``graph.extras``.
        edge_vecs: optional ``[E, 3]`` edge vectors replacing those built from the graph.

    Returns:
        ``{"node_energy": [N], "energy": [G]}``; zero on padding nodes and graphs.
    """
    p = variables["params"]
    rc = variables["constants"]["cutoff"]
    if edge_vecs is None:
        edge_vecs = edge_vectors(graph.positions, graph.cell, graph)
    n, g = graph.num_nodes, graph.num_graphs
    s_send, s_recv = graph.species[graph.senders], graph.species[graph.receivers]
    r = safe_norm(edge_vecs, axis=-1)
    fc = jnp.where(graph.edge_mask, _cutoff_fn(r, rc), 0.0)
    width = p["width"][s_send]
    pair = p["pair"][s_send, s_recv] * jnp.exp(-r / width) * fc
    dens = jnp.exp(-0.5 * (r / width) ** 2) * fc
    rho = jax.ops.segment_sum(dens, graph.receivers, num_segments=n)
    mu = jax.ops.segment_sum(edge_vecs * dens[:, None], graph.receivers, num_segments=n)
    s = graph.species
    node_energy = (
        p["e0"][s]
        + 0.5 * jax.ops.segment_sum(pair, graph.receivers, num_segments=n)
        - p["embed"][s] * jnp.sqrt(1.0 + rho)
        + p["angular"][s] * jnp.sum(mu * mu, axis=-1)
    )
    if "response" in p:
        node_energy = node_energy + _response_energy(p, graph, mu, rho, fc)
    node_energy = jnp.where(graph.node_mask, node_energy, 0.0)
    energy = jax.ops.segment_sum(node_energy, graph.node_graph, num_segments=g)
    return {"node_energy": node_energy, "energy": jnp.where(graph.graph_mask, energy, 0.0)}
