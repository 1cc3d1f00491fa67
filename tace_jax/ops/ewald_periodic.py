"""Reciprocal-space part of Latent Ewald Summation on a static k-grid (docs/theory.md §4).

LES (arXiv 2509.14961, docs/theory.md §4) sums latent charges in reciprocal space:

    E = (ℵ/V) Σ_{k≠0, |k|≤k_c} e^{−σ²k²/2}/k² |S(k)|²  (− the Gaussian self energy),

with ``S(k) = Σ_i q_i e^{ik·x_i}``, ``k = n·G``, ``G = 2π L^{−T}`` and ``k_c = 2π/dl``. The sum
over ``k`` and ``−k`` is folded into the half-space ``n_1 ≥ 0`` (weight 2 for ``n_1 > 0``; the
plane ``n_1 = 0`` is kept whole with weight 1, which is the same set as "first non-zero
component positive, weight 2").

The integer vectors live on a **static** grid ``n_a ∈ [−N_a, N_a]`` (``kgrid = (N_1, N_2,
N_3)``) and a mask keeps ``|k| ≤ k_c``; any cell whose needed grid (:func:`ewald_kgrid`) fits
inside gives exactly the reference k-set, so a jitted call does not recompile when the cell
changes within the grid (NPT). Because ``k·a_a = 2π n_a``, ``|k| ≤ k_c`` implies
``|n_a| ≤ |a_a|/dl`` for any triclinic cell, hence the needed grid ``⌊|a_a|/dl⌋``.

The structure factor factorises over the three lattice directions,
``e^{ik·x} = Π_a e^{2πi n_a s_a}`` with fractional coordinates ``s = x L^{−1}``, so ``S`` is one
complex matrix product of per-axis phases instead of ``N × K`` exponentials. In a batch the
graphs enter through a one-hot ``[N, G]`` factor, so the cost is ``N·G·K`` multiply-adds
(``K`` = :func:`num_kvectors`); memory is ``N·(N_1+1)(2N_2+1)`` complex numbers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ewald_kgrid",
    "kgrid_fits",
    "num_kvectors",
    "reciprocal_energy_graph",
    "self_energy_coefficient",
]

KGrid = tuple[int, int, int]


def _host_cells(cell, pbc=None) -> np.ndarray:
    try:
        c = np.asarray(cell, dtype=np.float64)
    except jax.errors.TracerArrayConversionError as err:
        raise ValueError(
            "latent_ewald: the cell is traced (inside jit); pass a static kgrid=... computed on "
            "the host with tace_jax.ops.ewald_kgrid(cell, dl)"
        ) from err
    if c.shape == (3, 3):
        c = c[None]
    if c.ndim != 3 or c.shape[1:] != (3, 3):
        raise ValueError(f"latent_ewald: cell must be [3, 3] or [G, 3, 3], got shape {c.shape}")
    if pbc is not None:
        p = np.broadcast_to(np.asarray(pbc, dtype=bool), (c.shape[0], 3))
        c = c[p.all(axis=1)]
    return c


def ewald_kgrid(cell, dl: float = 2.0, pbc=None, headroom: float = 0.0) -> KGrid:
    """The k-grid ``(N_1, N_2, N_3)`` needed by a cell (or the max over a batch of cells).

    ``N_a = max(1, ⌊(1 + headroom)·|a_a|/dl⌋)``, the reference's per-axis count (docs/theory.md
    §4). ``headroom > 0`` leaves room for a growing cell (NPT) before :func:`kgrid_fits` fails.

    Args:
        cell: ``[3, 3]`` or ``[G, 3, 3]`` host array, rows are lattice vectors.
        dl: the LES grid resolution in Å (``k_c = 2π/dl``).
        pbc: optional ``[3]``/``[G, 3]`` bools; only fully periodic cells count.
        headroom: relative growth of the lattice vectors the grid must accommodate.

    Returns:
        A tuple of three Python ints (hashable: usable as a static argument).
    """
    if dl <= 0:
        raise ValueError(f"latent_ewald: dl must be > 0, got {dl}")
    c = _host_cells(cell, pbc)
    if c.shape[0] == 0:
        return (1, 1, 1)
    norms = np.linalg.norm(c, axis=-1) * (1.0 + float(headroom))  # [G, 3]
    n = np.maximum(1, np.floor(norms / dl)).astype(np.int64).max(axis=0)
    return (int(n[0]), int(n[1]), int(n[2]))


def kgrid_fits(cell, kgrid: Sequence[int], dl: float = 2.0, pbc=None) -> bool:
    """Whether every (periodic) cell needs no more than ``kgrid`` (else: reallocate, recompile)."""
    need = ewald_kgrid(cell, dl, pbc)
    return all(int(a) <= int(b) for a, b in zip(need, kgrid))


def num_kvectors(kgrid: Sequence[int]) -> int:
    """Number of half-space grid points evaluated per structure (before the ``|k|`` mask)."""
    n1, n2, n3 = (int(v) for v in kgrid)
    return (n1 + 1) * (2 * n2 + 1) * (2 * n3 + 1)


def _check_kgrid(kgrid) -> KGrid:
    try:
        g = tuple(int(v) for v in kgrid)
    except TypeError as err:
        raise ValueError(f"latent_ewald: kgrid must be 3 ints, got {kgrid!r}") from err
    if len(g) != 3 or min(g) < 1:
        raise ValueError(f"latent_ewald: kgrid must be 3 ints ≥ 1, got {kgrid!r}")
    return g  # type: ignore[return-value]


def _grid_constants(kgrid: KGrid):
    """Integer ranges per axis and the half-space weight ``w[a, b, c]`` (host numpy)."""
    n1, n2, n3 = kgrid
    r1 = np.arange(0, n1 + 1)
    r2 = np.arange(-n2, n2 + 1)
    r3 = np.arange(-n3, n3 + 1)
    w = np.where(r1[:, None, None] > 0, 2.0, 1.0) * np.ones((1, r2.size, r3.size))
    w[0, n2, n3] = 0.0  # k = 0 is excluded
    return r1, r2, r3, w


def self_energy_coefficient(sigma: float, norm_factor: float) -> float:
    """``ℵ/(σ(2π)^{3/2})``: the Gaussian self energy per ``q²`` (docs/theory.md §4)."""
    return float(norm_factor) / (float(sigma) * (2.0 * math.pi) ** 1.5)


def reciprocal_energy_graph(
    charges,
    positions,
    cell,
    periodic,
    node_graph,
    num_graphs: int,
    kgrid: KGrid,
    sigma: float = 1.0,
    dl: float = 2.0,
    remove_self_interaction: bool = True,
    norm_factor: float = 90.4756,
):
    """Reciprocal-space LES energy of each fully periodic graph, ``[G]`` (0 for the others).

    Args:
        charges: ``[N]`` latent charges (padding rows must be 0).
        positions: ``[N, 3]`` Cartesian positions (need not be wrapped).
        cell: ``[G, 3, 3]`` rows are lattice vectors.
        periodic: ``[G]`` bool, True for fully periodic graphs.
        node_graph: ``[N]`` int graph index of each node.
        num_graphs: ``G`` (static).
        kgrid: static ``(N_1, N_2, N_3)``; must contain :func:`ewald_kgrid` of every cell.
        sigma, dl, remove_self_interaction, norm_factor: see :func:`latent_ewald`.
    """
    return _reciprocal(
        charges, positions, cell, periodic, node_graph, int(num_graphs), _check_kgrid(kgrid),
        float(sigma), float(dl), bool(remove_self_interaction), float(norm_factor),
    )  # fmt: skip


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9, 10))
def _reciprocal(
    charges, positions, cell, periodic, node_graph, num_graphs, kgrid, sigma, dl,
    remove_self_interaction, norm_factor,
):  # fmt: skip
    dtype = positions.dtype
    cdtype = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
    r1, r2, r3, w = _grid_constants(kgrid)

    periodic = jnp.asarray(periodic, bool)
    eye = jnp.eye(3, dtype=dtype)
    safe_cell = jnp.where(periodic[:, None, None], cell, eye)  # no NaN for molecules/padding
    inv = jnp.linalg.inv(safe_cell)  # [G, 3, 3]
    vol = jnp.abs(jnp.linalg.det(safe_cell))  # [G]
    recip = 2.0 * jnp.pi * jnp.swapaxes(inv, -1, -2)  # rows b_a, a_a·b_b = 2π δ_ab

    # k-vectors on the grid and their coefficients, [G, A, B, C]
    b1, b2, b3 = recip[:, 0], recip[:, 1], recip[:, 2]  # [G, 3]
    kvec = (
        jnp.asarray(r1, dtype)[None, :, None, None, None] * b1[:, None, None, None, :]
        + jnp.asarray(r2, dtype)[None, None, :, None, None] * b2[:, None, None, None, :]
        + jnp.asarray(r3, dtype)[None, None, None, :, None] * b3[:, None, None, None, :]
    )
    k2 = jnp.sum(kvec * kvec, axis=-1)
    k_sq_max = (2.0 * math.pi / dl) ** 2
    keep = (k2 <= k_sq_max) & (jnp.asarray(w) > 0)[None] & periodic[:, None, None, None]
    k2_safe = jnp.where(keep, k2, 1.0)
    coef = jnp.where(keep, jnp.asarray(w, dtype) * jnp.exp(-0.5 * sigma**2 * k2_safe) / k2_safe, 0)
    coef = coef * (norm_factor / vol)[:, None, None, None]

    # per-axis phases e^{2πi n s}; only atoms of periodic graphs contribute
    node_graph = jnp.asarray(node_graph)
    q = jnp.where(periodic[node_graph], charges, 0).astype(dtype)
    frac = jnp.einsum("nx,nxa->na", positions, inv[node_graph])  # s = x L^{-1}
    theta = 2.0 * jnp.pi * frac

    def phases(col, r):
        ang = theta[:, col, None] * jnp.asarray(r, dtype)[None, :]
        return jax.lax.complex(jnp.cos(ang), jnp.sin(ang)).astype(cdtype)

    e1, e2, e3 = phases(0, r1), phases(1, r2), phases(2, r3)
    n_a, n_b, n_c = r1.size, r2.size, r3.size
    x12 = (q.astype(cdtype)[:, None, None] * e1[:, :, None] * e2[:, None, :]).reshape(-1, n_a * n_b)
    onehot = jax.nn.one_hot(node_graph, num_graphs, dtype=dtype).astype(cdtype)  # [N, G]
    y3 = (onehot[:, :, None] * e3[:, None, :]).reshape(-1, num_graphs * n_c)
    s_k = (x12.T @ y3).reshape(n_a, n_b, num_graphs, n_c)  # [A, B, G, C]
    s2 = jnp.real(s_k) ** 2 + jnp.imag(s_k) ** 2
    energy = jnp.einsum("abgc,gabc->g", s2, coef)

    if remove_self_interaction:
        q2 = jax.ops.segment_sum(q * q, node_graph, num_segments=num_graphs)
        energy = energy - self_energy_coefficient(sigma, norm_factor) * q2
    return energy
