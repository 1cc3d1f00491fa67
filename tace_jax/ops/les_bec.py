"""Born effective charges from LES latent charges (docs/theory.md §4, arXiv 2509.14961).

Charges are mean-removed per structure (optional). With ``c = √ε∞`` (``epsilon_factor = ε∞``):

* non-periodic: ``P = c Σ_i q_i x_i`` and ``Z*_{i,αβ} = ∂P_α/∂x_{iβ}``;
* periodic, Berry-phase-like: fractional ``s = x L^{−1}``, ``S_a = Σ_i q_i e^{2πi s_{ia}}``,
  ``P_a = c S_a/(2πi)`` in the lattice basis; the complex derivative is de-phased in that
  basis, ``Z^{latt}_{i,aβ} = Re[∂P_a/∂x_{iβ} · conj(e^{2πi s_{ia}})]``, then projected to
  Cartesian axes, ``Z*_i = Lᵀ Z^{latt}_i`` (the triclinic projection). For constant charges this
  gives ``Z*_i = c q_i I`` in any cell.

Shapes ``[N, 3, 3]``, axes ``[atom, polarization component α, position component β]``.
Charges may be an array or a function of the positions (then ``Z*`` includes ``∂q/∂x``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["les_bec", "les_bec_graph", "les_polarization_graph"]


def _flags(pbc, num_graphs: int, where: str):
    try:
        p = np.broadcast_to(np.asarray(pbc, bool), (num_graphs, 3))
    except jax.errors.TracerArrayConversionError:
        return jnp.asarray(pbc, bool).reshape(num_graphs, 3)[:, 0]
    mixed = p.any(axis=1) & ~p.all(axis=1)
    if mixed.any():
        g = int(np.flatnonzero(mixed)[0])
        raise ValueError(f"{where}: structure {g} has mixed pbc={p[g].tolist()}")
    return jnp.asarray(p[:, 0])


def _prepared(charges, positions, node_graph, node_mask, num_graphs, remove_mean):
    q = charges(positions) if callable(charges) else jnp.asarray(charges)
    q = jnp.where(node_mask, q.astype(positions.dtype), 0)
    if remove_mean:
        cnt = jax.ops.segment_sum(node_mask.astype(q.dtype), node_graph, num_segments=num_graphs)
        mean = jax.ops.segment_sum(q, node_graph, num_segments=num_graphs) / jnp.maximum(cnt, 1)
        q = jnp.where(node_mask, q - mean[node_graph], 0)
    return q


def _phases(positions, cell, periodic, node_graph):
    eye = jnp.eye(3, dtype=positions.dtype)
    safe = jnp.where(periodic[:, None, None], cell, eye)
    frac = jnp.einsum("nx,nxa->na", positions, jnp.linalg.inv(safe)[node_graph])
    return 2.0 * jnp.pi * frac  # [N, 3]


def les_polarization_graph(
    charges,
    positions,
    cell,
    pbc,
    node_graph,
    node_mask,
    num_graphs: int,
    epsilon_factor: float = 1.0,
    remove_mean: bool = True,
):
    """LES polarization per graph as ``(Re P, Im P)``, each ``[G, 3]``.

    Cartesian ``c Σ q x`` (imaginary part 0) for molecules; the lattice-basis Berry-phase form
    ``c S_a/(2πi)`` for periodic graphs. Arguments as in :func:`les_bec_graph`.
    """
    positions = jnp.asarray(positions)
    node_graph = jnp.asarray(node_graph, jnp.int32)
    node_mask = jnp.asarray(node_mask, bool)
    periodic = _flags(pbc, num_graphs, "les_polarization_graph")
    cell = jnp.asarray(cell).astype(positions.dtype).reshape(num_graphs, 3, 3)
    q = _prepared(charges, positions, node_graph, node_mask, num_graphs, remove_mean)
    theta = _phases(positions, cell, periodic, node_graph)
    per = periodic[node_graph][:, None]
    re = jnp.where(per, q[:, None] * jnp.sin(theta) / (2 * jnp.pi), q[:, None] * positions)
    im = jnp.where(per, -q[:, None] * jnp.cos(theta) / (2 * jnp.pi), 0.0)
    c = math.sqrt(epsilon_factor)
    seg = lambda v: jax.ops.segment_sum(v, node_graph, num_segments=num_graphs)
    return c * seg(re), c * seg(im)


def les_bec_graph(
    charges: jax.Array | Callable[[jax.Array], jax.Array],
    positions,
    cell,
    pbc,
    node_graph,
    node_mask,
    num_graphs: int,
    epsilon_factor: float = 1.0,
    remove_mean: bool = True,
):
    """LES Born effective charges of a padded batch, ``[N, 3, 3]`` (padding rows 0).

    Args:
        charges: ``[N]`` array, or a function ``positions [N, 3] → charges [N]`` whose output
            for a graph depends on that graph's positions only.
        positions: ``[N, 3]``; cell: ``[G, 3, 3]`` rows = lattice vectors;
            pbc: ``[G, 3]`` bool, rows all True or all False.
        node_graph: ``[N]`` int; node_mask: ``[N]`` bool; num_graphs: ``G`` (static).
        epsilon_factor: ε∞ (``P`` is scaled by ``√ε∞``).
        remove_mean: subtract each graph's mean charge first.
    """
    positions = jnp.asarray(positions)
    node_graph = jnp.asarray(node_graph, jnp.int32)
    node_mask = jnp.asarray(node_mask, bool)
    periodic = _flags(pbc, num_graphs, "les_bec_graph")
    cell = jnp.asarray(cell).astype(positions.dtype).reshape(num_graphs, 3, 3)

    def total(x):
        re, im = les_polarization_graph(
            charges, x, cell, periodic[:, None].repeat(3, 1), node_graph, node_mask,
            num_graphs, epsilon_factor, remove_mean,
        )  # fmt: skip
        return jnp.stack([re.sum(0), im.sum(0)])  # graphs do not interact: sum is safe

    jac = jax.jacrev(total)(positions)  # [2, 3(a), N, 3(β)]
    d_re = jnp.moveaxis(jac[0], 1, 0)  # [N, a, β]
    d_im = jnp.moveaxis(jac[1], 1, 0)
    theta = _phases(positions, cell, periodic, node_graph)
    per = periodic[node_graph]
    cos = jnp.where(per[:, None], jnp.cos(theta), 1.0)[..., None]
    sin = jnp.where(per[:, None], jnp.sin(theta), 0.0)[..., None]
    z_latt = d_re * cos + d_im * sin  # Re[(d_re + i d_im) e^{-iθ}]
    eye = jnp.eye(3, dtype=positions.dtype)
    proj = jnp.where(periodic[:, None, None], jnp.swapaxes(cell, -1, -2), eye)[node_graph]
    z = jnp.einsum("nab,nbc->nac", proj, z_latt)
    return jnp.where(node_mask[:, None, None], z, 0)


def les_bec(
    charges: jax.Array | Callable[[jax.Array], jax.Array],
    positions,
    cell,
    pbc,
    epsilon_factor: float = 1.0,
    remove_mean: bool = True,
):
    """LES Born effective charges of one structure, ``[N, 3, 3]`` (see :func:`les_bec_graph`).

    ``pbc`` is ``[3]`` bools (all True or all False) or one bool; ``cell`` is ``[3, 3]``.
    """
    positions = jnp.asarray(positions)
    n = positions.shape[0]
    try:
        pbc = np.broadcast_to(np.asarray(pbc, bool), (3,))
    except jax.errors.TracerArrayConversionError:
        pbc = jnp.broadcast_to(jnp.asarray(pbc, bool), (3,))
    return les_bec_graph(
        charges, positions, jnp.asarray(cell)[None], pbc[None], jnp.zeros((n,), jnp.int32),
        jnp.ones((n,), bool), 1, epsilon_factor, remove_mean,
    )  # fmt: skip
