"""Writing the on-disk shards of :mod:`tace_jax.data.shards` (``tace-jax preprocess``).

The layout, the format version and the reader are in :mod:`tace_jax.data.shards`
(docs/theory.md §5).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import DataError
from .fields import INPUTS
from .neighbor_cache import NeighborCache
from .shards import _FIELDS, _OPTS, FORMAT, FORMAT_VERSION, MANIFEST, _h5py
from .structure import Structure

__all__ = ["ShardWriter", "write_shards"]


class ShardWriter:
    """Write structures into shards of ``shard_size`` structures (``tace-jax preprocess``).

    Args:
        directory: output directory (created; existing shards there are an error).
        cutoff: neighbour cutoff, Å (the model's ``cutoff``).
        shard_size: structures per shard.
    """

    def __init__(self, directory, cutoff: float, shard_size: int = 1024):
        self.directory = Path(directory)
        if (self.directory / MANIFEST).exists() or list(self.directory.glob("shard_*.h5")):
            raise DataError(f"{self.directory}: already holds shards; choose an empty --out")
        self.directory.mkdir(parents=True, exist_ok=True)
        if int(shard_size) < 1:
            raise DataError(f"shard_size must be >= 1, got {shard_size}")
        self.cutoff, self.shard_size = float(cutoff), int(shard_size)
        self._cache = NeighborCache(self.cutoff)
        self._buf: list[Structure] = []
        self._shards: list[dict] = []
        self._sources: dict[str, int] = {}

    def add(self, structures: Iterable[Structure]) -> None:
        """Queue ``structures``; full shards are written at once."""
        for s in structures:
            self._buf.append(s)
            if len(self._buf) >= self.shard_size:
                self._flush()

    def close(self) -> dict:
        """Write the last shard and ``manifest.json``; returns the manifest."""
        if self._buf:
            self._flush()
        if not self._shards:
            raise DataError(f"{self.directory}: no structures to preprocess")
        zs = sorted({z for sh in self._shards for z in sh["elements"]})
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "cutoff": self.cutoff,
            "num_structures": sum(sh["num_structures"] for sh in self._shards),
            "num_atoms": sum(sh["num_atoms"] for sh in self._shards),
            "num_edges": sum(sh["num_edges"] for sh in self._shards),
            "elements": zs,
            "max_level": max(sh["max_level"] for sh in self._shards),
            "labels": sorted({x for sh in self._shards for x in sh["labels"]}),
            "inputs": sorted({x for sh in self._shards for x in sh["inputs"]}),
            "sources": list(self._sources),
            "shards": self._shards,
        }
        tmp = self.directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.directory / MANIFEST)
        return manifest

    def _flush(self) -> None:
        ss, self._buf = self._buf, []
        name = f"shard_{len(self._shards):05d}.h5"
        edges = self._cache.compute(ss)
        info = _write_shard(self.directory / name, ss, edges, self.cutoff, self._sources)
        self._shards.append({"file": name, **info})


def _write_shard(path: Path, ss: list[Structure], edges, cutoff: float, sources) -> dict:
    h5py = _h5py()
    n_atoms = np.array([s.n_atoms for s in ss], np.int32)
    n_edges = np.array([len(e[0]) for e in edges], np.int32)
    zs = sorted({int(z) for s in ss for z in np.unique(s.numbers)})
    col = {z: j for j, z in enumerate(zs)}
    counts = np.zeros((len(ss), len(zs)), np.int32)
    fsq, fn = np.zeros((len(ss), len(zs))), np.zeros((len(ss), len(zs)), np.int32)
    for i, s in enumerate(ss):
        idx = np.array([col[int(z)] for z in s.numbers], np.int64)
        np.add.at(counts[i], idx, 1)
        if s.forces is not None:
            np.add.at(fsq[i], idx, np.sum(s.forces**2, axis=1))
            np.add.at(fn[i], idx, 1)
    labels = [k for k in _FIELDS if any(getattr(s, k) is not None for s in ss)]
    inputs = sorted({k for s in ss for k in s.inputs})
    src = np.array([sources.setdefault(s.source[0], len(sources)) for s in ss], np.int32)
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            cutoff=float(cutoff),
            num_structures=len(ss),
            elements=np.array(zs, np.int32),
            sources=json.dumps(list(sources)),
        )
        put = lambda k, a: f.create_dataset(k, data=a, **(_OPTS if np.size(a) else {}))
        put("n_atoms", n_atoms)
        put("n_edges", n_edges)
        put("numbers", np.concatenate([s.numbers for s in ss]).astype(np.int16))
        put("positions", np.concatenate([s.positions for s in ss]).reshape(-1, 3))
        put("cell", np.stack([s.cell for s in ss]))
        put("pbc", np.stack([s.pbc for s in ss]))
        put("senders", np.concatenate([e[0] for e in edges]).astype(np.int32))
        put("receivers", np.concatenate([e[1] for e in edges]).astype(np.int32))
        put("shifts", np.concatenate([e[2] for e in edges]).astype(np.int32).reshape(-1, 3))
        put("level", np.array([s.level for s in ss], np.int32))
        put("weight", np.array([s.weight for s in ss], np.float64))
        put("source_file", src)
        put("source_frame", np.array([s.source[1] for s in ss], np.int64))
        put("stats/counts", counts)
        put("stats/fsq", fsq)
        put("stats/fn", fn)
        for k in labels:
            shape, per_node = _FIELDS[k]
            if k == "hessian":
                flat = [
                    np.zeros(9 * s.n_atoms**2) if s.hessian is None else np.ravel(s.hessian)
                    for s in ss
                ]
                put("label/hessian", np.concatenate(flat))
            else:
                put(f"label/{k}", _gather(ss, lambda s, k=k: getattr(s, k), shape, per_node))
            put(f"has/{k}", np.array([getattr(s, k) is not None for s in ss]))
        for k in inputs:
            spec = INPUTS[k]
            get = lambda s, k=k: s.inputs.get(k)
            put(f"input/{k}", _gather(ss, get, spec.shape, spec.per_node, spec.np_dtype))
            put(f"has/input:{k}", np.array([k in s.inputs for s in ss]))
    os.replace(tmp, path)
    return {
        "num_structures": len(ss),
        "num_atoms": int(n_atoms.sum()),
        "num_edges": int(n_edges.sum()),
        "elements": zs,
        "max_level": int(max(s.level for s in ss)),
        "labels": labels,
        "inputs": inputs,
    }


def _gather(ss, get, shape, per_node, dtype=np.float64) -> np.ndarray:
    """One array of a field over the structures (zeros where absent)."""
    parts = []
    for s in ss:
        v = get(s)
        rows = s.n_atoms if per_node else 1
        parts.append(
            np.zeros((rows, *shape), dtype) if v is None else np.reshape(v, (rows, *shape))
        )
    return np.concatenate(parts).astype(dtype)


def write_shards(structures: Iterable[Structure], directory, cutoff: float, shard_size=1024):
    """Write ``structures`` into shards under ``directory``; returns the manifest."""
    w = ShardWriter(directory, cutoff, shard_size)
    w.add(structures)
    return w.close()
