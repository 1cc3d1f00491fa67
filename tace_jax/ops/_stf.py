"""Symmetric-traceless (STF) subspace of rank-l Cartesian tensors.

The STF tensors of rank ``l`` form the ``2l+1`` dimensional irreducible subspace of
``(R^3)^{⊗l}`` (TACE_SPEC §1.2). We build

* ``stf_projector(l)``: the orthogonal projector ``Π_l`` (``3^l × 3^l``), from an SVD of the
  stacked constraints ``[I − S_l ; Tr_12]`` (``S_l`` the symmetriser);
* ``stf_basis(l)``: an orthonormal basis ``Q_l`` (``3^l × (2l+1)``) with ``Q_l Q_lᵀ = Π_l``,
  obtained by a deterministic Gram–Schmidt over the columns of ``Π_l`` (so ``Q_1 = I_3``).

Both are computed once per ``l`` in float64 numpy and cached; callers cast to their dtype.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

__all__ = ["stf_basis", "stf_projector", "symmetrizer", "harmonic_norm", "double_factorial"]


def double_factorial(n: int) -> int:
    """``n!!`` with ``(-1)!! = 0!! = 1``."""
    out = 1
    while n > 1:
        out *= n
        n -= 2
    return out


def harmonic_norm(l: int) -> float:
    """``n_l = (2l−1)!!/l!``, the squared Frobenius norm of the Cartesian harmonic ``Y_l``."""
    return double_factorial(2 * l - 1) / math.factorial(l)


@functools.lru_cache(maxsize=None)
def symmetrizer(l: int) -> np.ndarray:
    """The matrix ``S_l`` (``3^l × 3^l``) averaging a tensor over all permutations of its axes."""
    dim = 3**l
    if l <= 1:
        return np.eye(dim)
    idx = np.arange(dim).reshape((3,) * l)
    s = np.zeros((dim, dim))
    perms = list(itertools.permutations(range(l)))
    for p in perms:
        s[np.arange(dim), np.transpose(idx, p).reshape(-1)] += 1.0
    s /= len(perms)
    s.setflags(write=False)
    return s


def _trace_map(l: int) -> np.ndarray:
    """The matrix of the trace over the first two axes, ``3^(l−2) × 3^l``."""
    rows = 3 ** (l - 2)
    m = np.zeros((rows, 3**l))
    full = np.arange(3**l).reshape((3, 3, rows))
    for a in range(3):
        m[np.arange(rows), full[a, a]] = 1.0
    return m


@functools.lru_cache(maxsize=None)
def stf_projector(l: int) -> np.ndarray:
    """Orthogonal projector ``Π_l`` onto the rank-``l`` STF subspace, ``(3^l, 3^l)`` float64."""
    if l < 0:
        raise ValueError(f"rank must be non-negative, got {l}")
    dim = 3**l
    if l <= 1:
        p = np.eye(dim)
    else:
        cons = np.concatenate([np.eye(dim) - symmetrizer(l), _trace_map(l)], axis=0)
        _, s, vt = np.linalg.svd(cons)
        s_full = np.zeros(dim)
        s_full[: s.shape[0]] = s
        null = vt[s_full < 1e-10 * max(1.0, s_full.max())]
        if null.shape[0] != 2 * l + 1:
            raise RuntimeError(f"STF null space of rank {l} has dim {null.shape[0]} != {2 * l + 1}")
        p = null.T @ null
    p.setflags(write=False)
    return p


@functools.lru_cache(maxsize=None)
def stf_basis(l: int) -> np.ndarray:
    """Orthonormal basis ``Q_l`` of the rank-``l`` STF subspace, shape ``(3^l, 2l+1)``, float64.

    ``Q_lᵀ Q_l = I`` and ``Q_l Q_lᵀ = Π_l``. The basis is deterministic: a modified Gram–Schmidt
    over the columns of ``Π_l`` in row-major multi-index order. ``Q_0 = [[1]]`` and ``Q_1 = I_3``,
    so vectors keep their ``xyz`` components in the compressed layout.

    Examples:
        >>> stf_basis(2).shape
        (9, 5)
    """
    p = stf_projector(l)
    dim, rank = 3**l, 2 * l + 1
    cols: list[np.ndarray] = []
    for i in range(dim):
        v = p[:, i].copy()
        for _ in range(2):  # re-orthogonalise for stability
            for c in cols:
                v -= c * (c @ v)
        n = np.linalg.norm(v)
        if n > 1e-8:
            cols.append(v / n)
        if len(cols) == rank:
            break
    q = np.stack(cols, axis=1)
    q[np.abs(q) < 1e-15] = 0.0
    q.setflags(write=False)
    return q
