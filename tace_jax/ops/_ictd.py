"""Irreducible Cartesian tensor decomposition (ICTD) of a general rank-``n`` tensor.

``(R^3)^{⊗n} = ⊕_paths V_path`` where a path ``(j_0=0, j_1=1, j_2, …, j_n)`` couples one more
vector index at each step with ``j_{m+1} ∈ {j_m+1, j_m, j_m−1}`` (docs/theory.md §1.3). Each
step uses the unique (up to sign) SO(3) intertwiner ``V_{j_m} ⊗ V_1 → V_{j_{m+1}}``; we find it
as the null space of the Lie-algebra commutation constraints, so odd couplings (such as
``1⊗1→1``, the cross product) come out too, without any Clebsch–Gordan tables.
"""

from __future__ import annotations

import functools

import numpy as np

from ._stf import stf_basis

__all__ = ["ictd_projectors", "ictd_paths", "ictd_path_bases", "decompose"]

_LEVI = np.zeros((3, 3, 3))
for _a, _b, _c in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
    _LEVI[_a, _b, _c], _LEVI[_a, _c, _b] = 1.0, -1.0
_GEN = -_LEVI  # (L_x)_{bc} = −ε_{xbc}: generators of rotations on R^3


def _tensor_generators(l: int) -> np.ndarray:
    """The so(3) generators acting on vec of rank-``l`` tensors, ``(3, 3^l, 3^l)``."""
    dim = 3**l
    out = np.zeros((3, dim, dim))
    for s in range(l):
        left, right = np.eye(3**s), np.eye(3 ** (l - s - 1))
        for x in range(3):
            out[x] += np.kron(np.kron(left, _GEN[x]), right)
    return out


@functools.cache
def _irrep_generators(j: int) -> np.ndarray:
    """Generators in the STF basis ``Q_j``, ``(3, 2j+1, 2j+1)``."""
    q = stf_basis(j)
    return np.einsum("ia,xij,jb->xab", q, _tensor_generators(j), q)


@functools.cache
def _step_intertwiner(j: int, jn: int) -> np.ndarray:
    """Isometric embedding ``V_jn → V_j ⊗ V_1``, shape ``((2j+1)·3, 2jn+1)``.

    Solves ``(G_j⊗I + I⊗G_1) M = M G_jn`` for all three generators, then normalises so that
    ``Mᵀ M = I``.
    """
    gj, g1, gn = _irrep_generators(j), _irrep_generators(1), _irrep_generators(jn)
    dj, dn = 2 * j + 1, 2 * jn + 1
    rows = []
    for x in range(3):
        gprod = np.kron(gj[x], np.eye(3)) + np.kron(np.eye(dj), g1[x])  # (3dj, 3dj)
        # vec(M) row-major: (gprod ⊗ I_dn − I_3dj ⊗ gn^T) vec(M) = 0
        rows.append(np.kron(gprod, np.eye(dn)) - np.kron(np.eye(3 * dj), gn[x].T))
    _, s, vt = np.linalg.svd(np.concatenate(rows, axis=0))
    null = vt[-1]
    if s[-1] > 1e-8 or (len(s) > 1 and s[-2] < 1e-8):
        raise RuntimeError(f"intertwiner {j}⊗1→{jn} is not unique")
    m = null.reshape(3 * dj, dn)
    m = m / np.linalg.norm(m) * np.sqrt(dn)
    # deterministic sign: first significant entry positive
    flat = m.reshape(-1)
    first = flat[np.argmax(np.abs(flat) > 1e-8)]
    return m * np.sign(first)


@functools.cache
def ictd_paths(n: int) -> tuple[tuple[int, ...], ...]:
    """Coupling paths ``(0, 1, j_2, …, j_n)``; the first is the STF path ``(0, 1, …, n)``."""
    if n < 0:
        raise ValueError(f"rank must be non-negative, got {n}")
    paths: list[tuple[int, ...]] = [(0,)]
    for _ in range(n):
        nxt = []
        for p in paths:
            j = p[-1]
            for jn in [1] if j == 0 else [j + 1, j, j - 1]:
                nxt.append(p + (jn,))
        paths = nxt
    return tuple(sorted(paths, key=lambda p: [-x for x in p[::-1]]))


@functools.cache
def ictd_path_bases(n: int) -> tuple[tuple[int, np.ndarray], ...]:
    """``(j, E_path)`` with ``E_path`` of shape ``(3^n, 2j+1)`` and orthonormal columns."""
    out = []
    for path in ictd_paths(n):
        e = np.ones((1, 1))
        for j, jn in zip(path[:-1], path[1:]):
            # E_prev: (3^m, 2j+1) → (3^{m+1}, 2jn+1) via (E_prev ⊗ I_3) M
            m = _step_intertwiner(j, jn)
            e = np.kron(e, np.eye(3)) @ m
        out.append((path[-1], e))
    return tuple(out)


@functools.cache
def _projectors(n: int) -> tuple[tuple[int, np.ndarray], ...]:
    out = []
    for j, e in ictd_path_bases(n):
        p = e @ e.T
        p[np.abs(p) < 1e-15] = 0.0
        p.setflags(write=False)
        out.append((j, p))
    return tuple(out)


def ictd_projectors(n: int) -> list[tuple[int, np.ndarray]]:
    """Orthogonal projectors onto the irreducible components of a rank-``n`` tensor.

    Returns a list of ``(j, P)`` with ``P`` of shape ``(3^n, 3^n)`` (float64): mutually
    orthogonal, ``Σ P = I``, and weight ``j`` appearing with the multiplicities of
    docs/theory.md §1.3 (for ``n = 4``: ``j=4:1, 3:3, 2:6, 1:6, 0:3``). The first entry is the STF
    projector ``Π_n``.

    Examples:
        >>> [j for j, _ in ictd_projectors(2)]
        [2, 1, 0]
    """
    return list(_projectors(n))


def decompose(t, n: int) -> list[tuple[int, object]]:
    """Split a tensor ``[..., 3, …, 3]`` (``n`` axes) into ``[(j, P_path t)]``, full layout."""
    import jax.numpy as jnp

    lead = t.shape[: t.ndim - n]
    flat = t.reshape(*lead, 3**n)
    return [(j, (flat @ jnp.asarray(p, t.dtype)).reshape(t.shape)) for j, p in _projectors(n)]
