"""Neighbour lists computed once per structure and cutoff, cached in memory and optionally on disk.

The on-disk cache is one ``.npz`` per (set of structures, cutoff), named by a SHA-256 of the
cutoff and of every structure's numbers, positions, cell and pbc, so a changed file or cutoff never
reuses a stale list.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Sequence

import numpy as np

from .neighbors import neighbor_list
from .structure import Structure

__all__ = ["NeighborCache", "geometry_hash"]

Edges = tuple[np.ndarray, np.ndarray, np.ndarray]


def geometry_hash(structures: Sequence[Structure], cutoff: float) -> str:
    """SHA-256 (hex) of the cutoff and the geometry of all structures."""
    h = hashlib.sha256()
    h.update(np.float64(cutoff).tobytes())
    h.update(np.int64(len(structures)).tobytes())
    for s in structures:
        for a in (s.numbers, s.positions, s.cell, s.pbc):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class NeighborCache:
    """Neighbour lists ``(senders, receivers, shifts)`` per structure for one cutoff.

    Args:
        cutoff: Å.
        directory: where to keep ``nl_<sha>.npz`` files; ``None`` keeps lists in memory only.
        min_distance: atoms closer than this raise (overlap check, see
            :func:`~tace_jax.data.neighbors.neighbor_list`).
    """

    def __init__(
        self, cutoff: float, directory: str | os.PathLike | None = None, min_distance: float = 1e-3
    ):
        self.cutoff = float(cutoff)
        self.directory = None if directory is None else os.fspath(directory)
        self.min_distance = float(min_distance)
        self._mem: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return len(self._mem)

    def _compute_one(self, s: Structure) -> Edges:
        snd, rcv, sh = neighbor_list(
            s.positions, s.cell, s.pbc, self.cutoff, min_distance=self.min_distance, where=s.where
        )
        return (
            snd.astype(np.int32),
            rcv.astype(np.int32),
            sh.astype(np.int8 if _small(sh) else np.int32),
        )

    def get(self, s: Structure) -> Edges:
        """The neighbour list of ``s`` (computed on first use)."""
        edges = self._mem.get(s)
        if edges is None:
            edges = self._compute_one(s)
            self._mem[s] = edges
        return edges

    def compute(self, structures: Sequence[Structure]) -> list[Edges]:
        """Neighbour lists of all ``structures``, using and filling the disk cache if enabled."""
        missing = [s for s in structures if s not in self._mem]
        if missing and self.directory is not None:
            path = os.path.join(self.directory, f"nl_{geometry_hash(missing, self.cutoff)}.npz")
            if os.path.exists(path):
                self._load(path, missing)
            else:
                lists = [self.get(s) for s in missing]
                self._save(path, lists)
        return [self.get(s) for s in structures]

    def _save(self, path: str, lists: list[Edges]) -> None:
        os.makedirs(self.directory, exist_ok=True)
        counts = np.array([len(e[0]) for e in lists], np.int64)
        cat = lambda k, dt: (
            np.concatenate([e[k] for e in lists]).astype(dt) if lists else np.zeros(0, dt)
        )
        tmp = path + ".tmp.npz"
        np.savez(
            tmp,
            counts=counts,
            senders=cat(0, np.int32),
            receivers=cat(1, np.int32),
            shifts=np.concatenate([e[2] for e in lists]).astype(np.int32).reshape(-1, 3),
            cutoff=np.float64(self.cutoff),
        )
        os.replace(tmp, path)

    def _load(self, path: str, structures: Sequence[Structure]) -> None:
        with np.load(path) as d:
            counts, snd, rcv, sh = d["counts"], d["senders"], d["receivers"], d["shifts"]
        if len(counts) != len(structures):  # hash collision or foreign file: recompute
            for s in structures:
                self.get(s)
            return
        offsets = np.concatenate([[0], np.cumsum(counts)])
        for s, a, b in zip(structures, offsets[:-1], offsets[1:]):
            shifts = sh[a:b]
            self._mem[s] = (
                snd[a:b],
                rcv[a:b],
                shifts.astype(np.int8 if _small(shifts) else np.int32),
            )


def _small(shifts: np.ndarray) -> bool:
    return shifts.size == 0 or np.abs(shifts).max() < 127
