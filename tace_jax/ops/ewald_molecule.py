"""Real-space (non-periodic) part of Latent Ewald Summation (docs/theory.md §4).

For a finite structure LES (arXiv 2509.14961) uses the Gaussian-smeared Coulomb energy

    E = (ℵ/2π) · ½ Σ_{i≠j} q_i q_j erf(r_ij/(√2σ))/r_ij,

where ``ℵ/2π = 1/(4πε₀)``, so the molecular and periodic forms share one constant ``ℵ``.
Two evaluations: a dense ``N × N`` one, and a chunked one (``lax.scan`` over row blocks, body
rematerialised) whose memory is ``block × N`` also under reverse-mode differentiation.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from .ewald_periodic import self_energy_coefficient

__all__ = ["AUTO_CHUNK_ABOVE", "realspace_energy_graph"]

#: Above this many (padded) nodes the pair sum is chunked by default.
AUTO_CHUNK_ABOVE = 2048
_DEFAULT_BLOCK = 256


def _pair_kernel(r2, valid, sigma):
    """``erf(r/(√2σ))/r`` on valid pairs, 0 elsewhere; finite value and gradient at ``r = 0``."""
    a = 1.0 / (math.sqrt(2.0) * sigma)
    pos = valid & (r2 > 0)
    r = jnp.sqrt(jnp.where(pos, r2, 1.0))
    val = jax.scipy.special.erf(a * r) / r
    limit = 2.0 * a / math.sqrt(math.pi)  # lim_{r→0} erf(a r)/r (coincident atoms)
    return jnp.where(pos, val, jnp.where(valid, limit, 0.0))


def _rows(q_i, x_i, g_i, idx_i, q, x, g, sigma):
    """½ q_i Σ_j q_j K(r_ij) for a block of rows, ``[B]``."""
    d = x_i[:, None, :] - x[None, :, :]
    r2 = jnp.sum(d * d, axis=-1)
    valid = (g_i[:, None] == g[None, :]) & (idx_i[:, None] != jnp.arange(x.shape[0])[None, :])
    kern = _pair_kernel(r2, valid, sigma)
    return 0.5 * q_i * (kern @ q)


def realspace_energy_graph(
    charges,
    positions,
    periodic,
    node_graph,
    num_graphs: int,
    sigma: float = 1.0,
    remove_self_interaction: bool = True,
    norm_factor: float = 90.4756,
    pair_chunk: int | None = None,
):
    """Smeared-Coulomb LES energy of each non-periodic graph, ``[G]`` (0 for periodic graphs).

    Args:
        charges: ``[N]`` latent charges (padding rows must be 0).
        positions: ``[N, 3]``.
        periodic: ``[G]`` bool; atoms of periodic graphs are left out here.
        node_graph: ``[N]`` int graph index of each node.
        num_graphs: ``G`` (static).
        sigma, remove_self_interaction, norm_factor: see :func:`latent_ewald`.
        pair_chunk: rows per block of the chunked sum; ``None`` chunks (256 rows) only above
            :data:`AUTO_CHUNK_ABOVE` nodes, ``0`` forces the dense ``N × N`` sum.
    """
    n = positions.shape[0]
    if pair_chunk is None:
        pair_chunk = _DEFAULT_BLOCK if n > AUTO_CHUNK_ABOVE else 0
    pair_chunk = int(pair_chunk)
    if pair_chunk < 0:
        raise ValueError(f"latent_ewald: pair_chunk must be ≥ 0 or None, got {pair_chunk}")
    return _realspace(
        charges, positions, periodic, node_graph, int(num_graphs), float(sigma),
        bool(remove_self_interaction), float(norm_factor), pair_chunk,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7, 8))
def _realspace(
    charges, positions, periodic, node_graph, num_graphs, sigma, remove_self_interaction,
    norm_factor, pair_chunk,
):  # fmt: skip
    dtype = positions.dtype
    node_graph = jnp.asarray(node_graph)
    periodic = jnp.asarray(periodic, bool)
    q = jnp.where(periodic[node_graph], 0, charges).astype(dtype)
    n = positions.shape[0]
    idx = jnp.arange(n)

    if pair_chunk == 0 or pair_chunk >= n:
        per_node = _rows(q, positions, node_graph, idx, q, positions, node_graph, sigma)
    else:
        n_blocks = -(-n // pair_chunk)
        pad = n_blocks * pair_chunk - n

        def blocks(a, fill):
            a = jnp.concatenate([a, jnp.full((pad,) + a.shape[1:], fill, a.dtype)])
            return a.reshape((n_blocks, pair_chunk) + a.shape[1:])

        xs = (blocks(q, 0), blocks(positions, 0), blocks(node_graph, -1), blocks(idx, -1))

        @jax.checkpoint
        def body(carry, blk):
            q_i, x_i, g_i, i_i = blk
            return carry, _rows(q_i, x_i, g_i, i_i, q, positions, node_graph, sigma)

        _, out = jax.lax.scan(body, None, xs)
        per_node = out.reshape(-1)[:n]

    energy = jax.ops.segment_sum(per_node, node_graph, num_segments=num_graphs)
    energy = energy * (norm_factor / (2.0 * math.pi))
    if not remove_self_interaction:
        q2 = jax.ops.segment_sum(q * q, node_graph, num_segments=num_graphs)
        energy = energy + self_energy_coefficient(sigma, norm_factor) * q2
    return energy
