"""Neighbour lists (vesin) in the TACE edge convention.

Edges are directed and full (both directions present), self pairs with zero shift removed.
For a pair returned by vesin as ``(i, j, S)`` with ``D = x_j − x_i + S·L`` we store
``sender = i``, ``receiver = j``, ``shift = S`` so that ``r_e = x[receiver] − x[sender] + S·L = D``
(docs/theory.md §2.1). Cells smaller than twice the cutoff, triclinic cells and mixed
periodicity are handled by vesin.
"""

from __future__ import annotations

import numpy as np
import vesin

from .errors import DataError

__all__ = ["neighbor_list", "NeighborListError"]


class NeighborListError(DataError):
    """Raised for inputs a neighbour list cannot be built from (NaN, overlapping atoms, …)."""


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc,
    cutoff: float,
    min_distance: float = 1e-3,
    where: str = "structure",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(senders, receivers, shifts)`` for all pairs closer than ``cutoff``.

    Args:
        positions: ``[N, 3]`` Å.
        cell: ``[3, 3]`` with lattice vectors as rows (ignored where ``pbc`` is False).
        pbc: bool or three bools.
        cutoff: Å.
        min_distance: pairs closer than this raise :class:`NeighborListError` (overlapping atoms).
        where: a description of the structure (file and frame) used in error messages.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise NeighborListError(f"{where}: positions must be [N, 3], got {positions.shape}")
    if not np.all(np.isfinite(positions)):
        bad = np.where(~np.isfinite(positions).all(axis=1))[0]
        raise NeighborListError(
            f"{where}: field 'positions' has non-finite values at atoms {bad[:10].tolist()}"
        )
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(cell)):
        raise NeighborListError(f"{where}: field 'cell' has non-finite values")
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-8:
        raise NeighborListError(
            f"{where}: periodic structure with a degenerate cell {cell.tolist()}"
        )
    if len(positions) == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros((0, 3))
    box = cell if pbc.any() else np.zeros((3, 3))
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s, d = nl.compute(points=positions, box=box, periodic=pbc.tolist(), quantities="ijSd")
    if len(d) and d.min() < min_distance:
        k = int(np.argmin(d))
        raise NeighborListError(
            f"{where}: atoms {int(i[k])} and {int(j[k])} overlap (distance {d[k]:.2e} Å "
            f"< {min_distance} Å) in field 'positions'"
        )
    order = np.lexsort((j, i))  # deterministic: by sender then receiver
    return (
        i[order].astype(np.int64),
        j[order].astype(np.int64),
        s[order].astype(np.float64),
    )
