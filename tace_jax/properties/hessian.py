"""Hessians ``H = ∂²E/∂x∂x`` by forward-over-reverse autodiff, chunked over rows.

Row ``(i, a)`` of the Hessian is the JVP of the energy gradient ``∂E/∂x`` along the unit vector
``e_{ia}``. :func:`hessian` maps those JVPs over all rows with ``lax.map(..., batch_size=chunk)``
(a ``vmap`` over ``chunk`` rows at a time), which bounds memory by ``chunk`` forward/backward
passes. :func:`hessian_rows` evaluates a few random rows per graph for HORM-style training
losses (docs/theory.md §3, ``num_samples = 2`` rows per graph by default).

Different graphs of a batch do not interact, so the batch Hessian is block diagonal.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.data.graph import Graph

__all__ = ["hessian", "hessian_rows", "split_hessian"]


def _gradient_fn(apply_fn: Callable, variables, graph: Graph) -> Callable:
    """``x ↦ ∂E/∂x`` for the total energy of the real graphs of ``graph``."""

    def energy(pos):
        out = apply_fn(variables, graph.replace(positions=pos))
        return jnp.sum(jnp.where(graph.graph_mask, out["energy"], 0.0))

    return jax.grad(energy)


def _row_fn(apply_fn, variables, graph):
    """``(atom, xyz) ↦ H[atom, xyz, :, :]`` ([N, 3]) as a JVP of the gradient."""
    grad = _gradient_fn(apply_fn, variables, graph)
    pos = graph.positions

    def row(atom, xyz):
        tangent = jnp.zeros_like(pos).at[atom, xyz].set(1.0)
        _, h = jax.jvp(grad, (pos,), (tangent,))
        return jnp.where(graph.node_mask[:, None], h, 0.0)

    return row


def hessian(
    apply_fn: Callable,
    variables,
    graph: Graph,
    chunk_size: int = 16,
    num_atoms: int | None = None,
    training: bool = False,
) -> jax.Array:
    """Hessian of the energy w.r.t. positions, ``[A, 3, N, 3]`` in eV/Å².

    Args:
        apply_fn: ``apply_fn(variables, graph, edge_vecs=None) -> {"energy": [G], ...}``.
        variables: model variables.
        graph: a padded batch (usually one structure plus padding).
        chunk_size: rows evaluated together (memory ∝ ``chunk_size`` forward/backward passes).
        num_atoms: static number ``A`` of leading atoms whose rows are computed (default: all
            ``N`` nodes). For a single-structure batch pass its atom count to skip padding rows.
        training: keep the result differentiable w.r.t. ``variables``.

    Returns:
        ``H[i, a, j, b] = ∂²E/∂x_{ia}∂x_{jb}``; rows/columns of padding nodes are zero, blocks
        between different graphs are zero.
    """
    if not training:
        variables = jax.lax.stop_gradient(variables)
    n = graph.num_nodes if num_atoms is None else int(num_atoms)
    if not 0 < n <= graph.num_nodes:
        raise ValueError(f"num_atoms must be in [1, {graph.num_nodes}], got {num_atoms}")
    row = _row_fn(apply_fn, variables, graph)
    # equal chunks (one traced body, no remainder); the few extra rows repeat row 0
    n_chunks = -(-3 * n // max(1, int(chunk_size)))
    chunk = -(-3 * n // n_chunks)
    idx = jnp.arange(n_chunks * chunk) % (3 * n)
    one_chunk = jax.vmap(lambda k: row(k // 3, k % 3))
    if n_chunks == 1:
        rows = one_chunk(idx)
    else:
        rows = jax.lax.map(one_chunk, idx.reshape(n_chunks, chunk))
    rows = rows.reshape(n_chunks * chunk, graph.num_nodes, 3)[: 3 * n]
    rows = rows.reshape(n, 3, graph.num_nodes, 3)
    return jnp.where(graph.node_mask[:n, None, None, None], rows, 0.0)


def hessian_rows(
    apply_fn: Callable,
    variables,
    graph: Graph,
    key: jax.Array,
    num_samples: int = 2,
    training: bool = True,
) -> dict:
    """A few random Hessian rows per graph (random real atom, random Cartesian component).

    Args:
        apply_fn: model apply function.
        variables: model variables.
        graph: a padded batch; nodes of a graph must be contiguous (as built by ``collate``).
        key: PRNG key.
        num_samples: rows per graph ``S``.
        training: keep the rows differentiable w.r.t. ``variables`` (default ``True``).

    Returns:
        dict with ``rows [G, S, N, 3]`` (``H[atom, xyz, :, :]``), ``atom [G, S]`` (global node
        index), ``xyz [G, S]``, ``mask [G, S]`` (False for padding graphs; their rows are 0).
        For a target Hessian stored per graph as ``[3n, n, 3]`` (fixture layout), the matching
        row is ``target[3·(atom − first_node_of_graph) + xyz]``.
    """
    if not training:
        variables = jax.lax.stop_gradient(variables)
    g, n = graph.num_graphs, graph.num_nodes
    n_node = graph.n_node.astype(jnp.int32)
    first = jnp.cumsum(n_node) - n_node
    ka, kx = jax.random.split(key)
    u = jax.random.uniform(ka, (g, num_samples))
    local = jnp.minimum(jnp.floor(u * n_node[:, None]).astype(jnp.int32), n_node[:, None] - 1)
    mask = graph.graph_mask[:, None] & (n_node[:, None] > 0) & jnp.ones((1, num_samples), bool)
    atom = jnp.where(mask, first[:, None] + local, n - 1)
    xyz = jax.random.randint(kx, (g, num_samples), 0, 3)
    row = _row_fn(apply_fn, variables, graph)
    rows = jax.vmap(row)(atom.reshape(-1), xyz.reshape(-1)).reshape(g, num_samples, n, 3)
    rows = jnp.where(mask[:, :, None, None], rows, 0.0)
    return {"rows": rows, "atom": atom, "xyz": xyz, "mask": mask}


def split_hessian(h, graph: Graph) -> list[np.ndarray]:
    """Per-real-graph blocks ``[n_g, 3, n_g, 3]`` (numpy) of a :func:`hessian` batch result."""
    h = np.asarray(h)
    n_node = np.asarray(graph.n_node)
    mask = np.asarray(graph.graph_mask)
    first = np.cumsum(n_node) - n_node
    blocks = []
    for k in np.nonzero(mask)[0]:
        a, b = int(first[k]), int(first[k] + n_node[k])
        if b > h.shape[0]:
            raise ValueError(f"graph {k} needs rows up to {b}, the Hessian has {h.shape[0]}")
        blocks.append(h[a:b, :, a:b, :])
    return blocks
