"""Symmetric-traceless (STF) subspace of rank-l Cartesian tensors.

The STF tensors of rank ``l`` form the ``2l+1`` dimensional irreducible subspace of
``(R^3)^{⊗l}`` (docs/theory.md §1.2). We build

* ``stf_basis(l)``: an orthonormal basis ``Q_l`` (``3^l × (2l+1)``) with ``Q_l Q_lᵀ = Π_l``,
  obtained by a deterministic Gram–Schmidt over the columns of ``Π_l`` (so ``Q_1 = I_3``). The
  STF subspace itself is found as the null space of the trace ``Tr_12`` restricted to the
  symmetric tensors (one orthonormal symmetric basis tensor per index multiset);
* ``stf_projector(l)``: the orthogonal projector ``Π_l = Q_l Q_lᵀ`` (``3^l × 3^l``).

Both are computed once per ``l`` in float64 numpy and cached; callers cast to their dtype.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["stf_basis", "stf_projector", "harmonic_norm", "double_factorial"]


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


def _symmetric_basis(l: int) -> np.ndarray:
    """Orthonormal basis of the symmetric rank-``l`` tensors, ``(3^l, (l+1)(l+2)/2)``.

    One column per multiset of indices (``n_x, n_y, n_z``): the normalised sum of all
    ``l!/(n_x! n_y! n_z!)`` index tuples with those counts.
    """
    idx = np.indices((3,) * l).reshape(l, -1)
    counts = np.stack([(idx == a).sum(axis=0) for a in range(3)], axis=1)  # (3^l, 3)
    _, group, sizes = np.unique(counts, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    b = np.zeros((3**l, sizes.shape[0]))
    b[np.arange(3**l), group] = 1.0 / np.sqrt(sizes[group])
    return b


def _first_occurrences(l: int) -> np.ndarray:
    """Row-major index of the first tuple of every index multiset, in increasing order."""
    if l <= 1:
        return np.arange(3**l)
    idx = np.indices((3,) * l).reshape(l, -1)
    counts = np.stack([(idx == a).sum(axis=0) for a in range(3)], axis=1)
    _, first = np.unique(counts, axis=0, return_index=True)
    return np.sort(first)


@functools.cache
def _stf_frame(l: int) -> np.ndarray:
    """Some orthonormal basis of the STF subspace, ``(3^l, 2l+1)``.

    Null space of the trace ``Tr_12`` restricted to the symmetric tensors: cheap even for
    ``l = 8`` (``O(3^l · l^2)``), unlike an SVD of the ``3^l``-dimensional constraint matrix.
    """
    if l < 0:
        raise ValueError(f"rank must be non-negative, got {l}")
    if l <= 1:
        return np.eye(3**l)
    sym = _symmetric_basis(l)
    nsym = sym.shape[1]
    blocks = sym.reshape(3, 3, 3 ** (l - 2), nsym)
    trace = blocks[0, 0] + blocks[1, 1] + blocks[2, 2]  # (3^(l-2), nsym)
    # null space from the small (nsym × nsym) Gram matrix: cheap, no large LAPACK calls
    evals, evecs = np.linalg.eigh(trace.T @ trace)
    null = evecs[:, evals < 1e-10 * max(1.0, evals.max())].T
    if null.shape[0] != 2 * l + 1:
        raise RuntimeError(f"STF null space of rank {l} has dim {null.shape[0]} != {2 * l + 1}")
    return sym @ null.T


@functools.cache
def stf_projector(l: int) -> np.ndarray:
    """Orthogonal projector ``Π_l`` onto the rank-``l`` STF subspace, ``(3^l, 3^l)`` float64."""
    if l < 0:
        raise ValueError(f"rank must be non-negative, got {l}")
    if l <= 1:
        p = np.eye(3**l)
    else:
        q = stf_basis(l)
        p = q @ q.T
        p[np.abs(p) < 1e-15] = 0.0
    p.setflags(write=False)
    return p


@functools.cache
def stf_basis(l: int) -> np.ndarray:
    """Orthonormal basis ``Q_l`` of the rank-``l`` STF subspace, shape ``(3^l, 2l+1)``, float64.

    ``Q_lᵀ Q_l = I`` and ``Q_l Q_lᵀ = Π_l``. The basis is deterministic: a modified Gram–Schmidt
    over the columns of ``Π_l`` in row-major multi-index order. ``Q_0 = [[1]]`` and ``Q_1 = I_3``,
    so vectors keep their ``xyz`` components in the compressed layout.

    Examples:
        >>> stf_basis(2).shape
        (9, 5)
    """
    frame = _stf_frame(l)  # F with F Fᵀ = Π_l; column i of Π_l is F · frame[i]
    rank = 2 * l + 1
    # Gram–Schmidt in the (2l+1)-dim coordinates of F, which is isometric to the STF subspace.
    # Columns of Π_l for index tuples with the same multiset are equal, so only the first
    # occurrence of each multiset (in row-major order) can contribute.
    cols: list[np.ndarray] = []
    for i in _first_occurrences(l):
        v = frame[i].copy()
        for _ in range(2):  # re-orthogonalise for stability
            for c in cols:
                v -= c * (c @ v)
        n = np.linalg.norm(v)
        if n > 1e-8:
            cols.append(v / n)
        if len(cols) == rank:
            break
    q = frame @ np.stack(cols, axis=1)
    q[np.abs(q) < 1e-15] = 0.0
    q.setflags(write=False)
    return q
