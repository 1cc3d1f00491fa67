"""A tiny smooth many-body potential with the TACE ``apply`` interface, for tests.

``toy_apply(variables, graph, edge_vecs=None)`` returns ``{"node_energy": [N], "energy": [G]}``
computed from edge vectors only (like the real model), so every derived property of
:func:`tace_jax.properties.compute_properties` can be checked without the full network. The
energy is rotation/permutation/translation invariant and has pair, embedding (EAM-like) and
angular (``|Σ_j r_ij f(r_ij)|²``) terms, which makes virials anisotropic and Hessians dense.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tace_jax.data.graph import Graph, edge_vectors
from tace_jax.ops import safe_norm

__all__ = ["toy_init", "toy_apply"]


def toy_init(key: jax.Array, num_species: int, cutoff: float = 4.0, dtype=jnp.float64) -> dict:
    """Random toy parameters for ``num_species`` elements (``cutoff`` is stored as a parameter)."""
    k = jax.random.split(key, 5)
    u = lambda kk, shape: jax.random.uniform(kk, shape, dtype, 0.5, 1.5)
    return {
        "params": {
            "e0": jax.random.normal(k[0], (num_species,), dtype),
            "pair": u(k[1], (num_species, num_species)),
            "embed": u(k[2], (num_species,)),
            "angular": 0.3 * u(k[3], (num_species,)),
            "width": u(k[4], (num_species,)),
        },
        "constants": {"cutoff": jnp.asarray(cutoff, dtype)},
    }


def _cutoff_fn(r, rc):
    """Smooth polynomial cutoff, C² at ``rc`` and 0 beyond."""
    x = jnp.clip(r / rc, 0.0, 1.0)
    return (1.0 - x) ** 3 * (1.0 + 3.0 * x + 6.0 * x**2)


def toy_apply(variables: dict, graph: Graph, edge_vecs=None) -> dict:
    """Energy of the toy potential.

    Args:
        variables: from :func:`toy_init`.
        graph: a padded batch.
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
    node_energy = jnp.where(graph.node_mask, node_energy, 0.0)
    energy = jax.ops.segment_sum(node_energy, graph.node_graph, num_segments=g)
    return {"node_energy": node_energy, "energy": jnp.where(graph.graph_mask, energy, 0.0)}
