"""On-disk shards of preprocessed structures, for data sets larger than memory.

``tace-jax preprocess`` writes a directory of HDF5 shards (``shard_00000.h5``, …) and a
``manifest.json``. Each shard holds, for a block of structures, everything training needs
(docs/theory.md §5: the neighbour lists within the model cutoff, the labels, the model inputs
and the per-structure sums behind the dataset statistics of §2.9), concatenated over the
structures with per-structure counts:

* ``n_atoms [S]``, ``n_edges [S]``; ``numbers [A]``, ``positions [A,3]`` (float64, Å),
  ``cell [S,3,3]``, ``pbc [S,3]``; ``senders``, ``receivers [E]`` (structure-local) and
  ``shifts [E,3]`` — the neighbour list at the shard's ``cutoff`` attribute;
* ``level``, ``weight``; ``source_file`` (index into the ``sources`` attribute) and
  ``source_frame``: the origin of each structure, for error messages;
* ``label/<name>`` with ``has/<name> [S]`` for each label or own input field present
  (energy, forces, stress, …, charges, total_charge, electric_field) and ``input/<name>``
  with ``has/input:<name>`` for the other model inputs (``Structure.inputs``);
* ``stats/counts [S,Z]``, ``stats/fsq [S,Z]``, ``stats/fn [S,Z]``: per-element atom counts,
  squared-force sums and force counts over the shard's ``elements`` attribute, so that
  :func:`shard_statistics` gives the statistics of :func:`~.statistics.compute_statistics`
  from a few small arrays, without reading the structures.

Why HDF5 (h5py): one self-describing file per shard, with its cutoff, format version and
sources stored as attributes next to the arrays; Fletcher-32 checksums on every dataset turn
a corrupted or truncated shard into a read error instead of silent garbage; slicing reads only
the requested rows. A numpy memmap would need a side-car for all of that.

This module reads (:class:`ShardSet`); :mod:`tace_jax.data.shard_writer` writes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import DataError
from .fields import INPUTS
from .structure import Structure

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ShardSet",
]

FORMAT = "tace_jax.shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_INDEX_KEYS = ("n_atoms", "n_edges", "level", "source_file", "source_frame")

#: Structure fields stored under ``label/``: (trailing shape, per node). The ``hessian``
#: ``[n, 3, n, 3]`` of a structure is stored flat (9 n² values, zeros where absent), see
#: :func:`_hessian_offsets`.
_FIELDS: dict[str, tuple[tuple[int, ...], bool]] = {
    "energy": ((), False),
    "forces": ((3,), True),
    "stress": ((3, 3), False),
    "virials": ((3, 3), False),
    "dipole": ((3,), False),
    "polarizability": ((3, 3), False),
    "born_charges": ((3, 3), True),
    "charges": ((), True),
    "total_charge": ((), False),
    "electric_field": ((3,), False),
    "polarization": ((3,), False),
    "hessian": ((), False),
}
_OPTS = {"compression": "lzf", "fletcher32": True}


def _h5py():
    try:
        import h5py
    except ModuleNotFoundError:  # pragma: no cover - a dependency of tace_jax
        raise DataError("preprocessed shards need h5py: pip install h5py") from None
    return h5py


def _hessian_offsets(n_nodes: np.ndarray) -> np.ndarray:
    """Start of each structure's flat Hessian (9 n² values) in ``label/hessian``."""
    return np.concatenate([[0], np.cumsum(9 * np.asarray(n_nodes, np.int64) ** 2)])


# ------------------------------------------------------------------------------------ reading
Edges = tuple[np.ndarray, np.ndarray, np.ndarray]


class ShardSet:
    """A preprocessed directory: small per-structure index arrays in memory, the structures on
    disk (read shard by shard, or item by item).

    Args:
        directory: what ``tace-jax preprocess --out`` wrote.
        cutoff: the model's cutoff, Å; a different preprocessing cutoff is an error.

    Attributes:
        n_nodes, n_edges, levels: ``[S]`` per structure (global index over the shards).
        offsets: ``[num_shards + 1]`` first global index of each shard.

    Raises:
        DataError: naming the file of a missing manifest or shard, a foreign format or version,
            a cutoff mismatch, or a shard that does not match the manifest.
    """

    def __init__(self, directory, cutoff: float | None = None):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise DataError(
                f"{path}: not found; is {self.directory} a 'tace-jax preprocess' output?"
            )
        try:
            self.manifest = m = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(
                f"{path}: unreadable manifest ({e}); run tace-jax preprocess again"
            ) from None
        _check_header(path, m.get("format"), m.get("format_version"))
        self.cutoff = float(m["cutoff"])
        if cutoff is not None:
            self.check_cutoff(cutoff, path)
        self.files = [self.directory / sh["file"] for sh in m["shards"]]
        self.sources: list[str] = list(m["sources"])
        self.elements = [int(z) for z in m["elements"]]
        self.labels, self.inputs = tuple(m["labels"]), tuple(m["inputs"])
        n, e, lv, sf, fr = [], [], [], [], []
        for sh, f in zip(m["shards"], self.files):
            try:
                with self._open(f) as h:
                    self._check_shard(f, h, sh, cutoff)
                    for out, key in zip((n, e, lv, sf, fr), _INDEX_KEYS):
                        out.append(self._read(f, h, key))
            except (OSError, KeyError, RuntimeError) as exc:  # h5py: a damaged header
                raise DataError(
                    f"{f}: cannot read shard ({exc}); corrupted? run tace-jax preprocess again"
                ) from None
        self.n_nodes = np.concatenate(n).astype(np.int64)
        self.n_edges = np.concatenate(e).astype(np.int64)
        self.levels = np.concatenate(lv).astype(np.int64)
        self._src, self._frame = np.concatenate(sf), np.concatenate(fr)
        self.offsets = np.concatenate(
            [[0], np.cumsum([sh["num_structures"] for sh in m["shards"]])]
        )
        self._handles: dict[int, object] = {}
        self._lock = threading.RLock()  # h5py handles shared with prefetch threads

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _check_shard(self, f, h, sh: dict, cutoff) -> None:
        _check_header(f, h.attrs.get("format"), h.attrs.get("format_version"))
        self.check_cutoff(cutoff if cutoff is not None else self.cutoff, f, h.attrs)
        if int(h.attrs["num_structures"]) != sh["num_structures"]:
            raise DataError(
                f"{f}: holds {int(h.attrs['num_structures'])} structures but "
                f"{MANIFEST} says {sh['num_structures']}; run tace-jax preprocess again"
            )

    @property
    def num_shards(self) -> int:
        return len(self.files)

    def check_cutoff(self, cutoff: float, where=None, attrs=None) -> None:
        """Raise unless the shards were made with ``cutoff`` (Å); the message names ``where``
        (default: the manifest)."""
        where = self.directory / MANIFEST if where is None else where
        have = float(attrs["cutoff"]) if attrs is not None else self.cutoff
        if abs(have - float(cutoff)) > 1e-9:
            raise DataError(
                f"{where}: preprocessed with cutoff {have} Å but the model's cutoff is "
                f"{float(cutoff)} Å; run 'tace-jax preprocess ... --cutoff {float(cutoff)}' again"
            )

    def where(self, i: int) -> str:
        """``"<file>, frame <k>"`` of global structure ``i``."""
        return f"{self.sources[int(self._src[i])]}, frame {int(self._frame[i])}"

    def shard_of(self, i) -> np.ndarray:
        """Shard index of global structure index(es) ``i``."""
        return np.searchsorted(self.offsets, i, side="right") - 1

    # -------------------------------------------------------------- file access
    def _open(self, f: Path):
        h5py = _h5py()
        try:
            return h5py.File(f, "r")
        except (OSError, ValueError) as e:
            raise DataError(
                f"{f}: cannot open shard ({e}); corrupted or missing? run tace-jax preprocess again"
            ) from None

    @staticmethod
    def _read(f, h, key: str, sl=slice(None)) -> np.ndarray:
        try:
            return h[key][sl]
        except KeyError:
            raise DataError(
                f"{f}: shard has no dataset {key!r}; run tace-jax preprocess again"
            ) from None
        except (OSError, ValueError) as e:
            raise DataError(
                f"{f}: dataset {key!r} is corrupted ({e}); run tace-jax preprocess again"
            ) from None

    def _handle(self, k: int):
        with self._lock:
            return self._handle_unlocked(k)

    def _handle_unlocked(self, k: int):
        if k not in self._handles:
            if len(self._handles) >= 16:
                self._close_unlocked()
            self._handles[k] = self._open(self.files[k])
        return self._handles[k]

    def close(self) -> None:
        """Close the open shard files."""
        with self._lock:
            self._close_unlocked()

    def _close_unlocked(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()

    def summary(self, indices=None) -> dict:
        """Per-structure sums for :func:`shard_statistics` (``indices``: global, default all):
        ``counts``/``fsq``/``fn [S,Z]`` over :attr:`elements`, ``energy``, ``has_energy``,
        ``pbc_any``, ``n_atoms``, ``n_edges``, ``levels``."""
        col = {z: j for j, z in enumerate(self.elements)}
        parts: dict[str, list] = {k: [] for k in ("counts", "fsq", "fn", "energy", "has", "pbc")}
        for k, f in enumerate(self.files):
            h = self._handle(k)
            zs = [col[int(z)] for z in h.attrs["elements"]]
            s = int(self.offsets[k + 1] - self.offsets[k])
            for key in ("counts", "fsq", "fn"):
                full = np.zeros((s, len(self.elements)))
                full[:, zs] = self._read(f, h, f"stats/{key}")
                parts[key].append(full)
            has_e = "label/energy" in h
            parts["energy"].append(self._read(f, h, "label/energy") if has_e else np.zeros(s))
            parts["has"].append(self._read(f, h, "has/energy") if has_e else np.zeros(s, bool))
            parts["pbc"].append(self._read(f, h, "pbc").any(axis=1))
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)
        out = {k: np.concatenate(v)[idx] for k, v in parts.items()}
        out["has_energy"], out["pbc_any"] = out.pop("has"), out.pop("pbc")
        out.update(n_atoms=self.n_nodes[idx], n_edges=self.n_edges[idx], levels=self.levels[idx])
        out["where"] = lambda j: self.where(int(idx[j]))
        return out

    def label_mask(self, name: str, indices=None) -> np.ndarray:
        """``[S]`` bool: which structures (``indices``: global, default all) have label
        ``name`` (a :class:`~tace_jax.data.structure.Structure` label field)."""
        parts = []
        for k, f in enumerate(self.files):
            h, s = self._handle(k), int(self.offsets[k + 1] - self.offsets[k])
            key = f"has/{name}"
            parts.append(self._read(f, h, key) if key in h else np.zeros(s, bool))
        mask = np.concatenate(parts)
        return mask if indices is None else mask[np.asarray(indices, np.int64)]

    def read(self, k: int, local=None) -> list[tuple[int, Structure, Edges]]:
        """``(global index, Structure, edges)`` of shard ``k``'s structures ``local`` (positions
        within the shard, sorted; default all), reading contiguous blocks (gaps of more than
        8 structures split a block, so a sparse selection reads only what it needs)."""
        if local is None:
            local = np.arange(int(self.offsets[k + 1] - self.offsets[k]))
        local = np.asarray(local, np.int64)
        runs = np.split(local, np.where(np.diff(local) > 8)[0] + 1) if len(local) else []
        with self._lock:
            return [item for run in runs for item in self._read_block(k, run)]

    def _read_block(self, k: int, local) -> list[tuple[int, Structure, Edges]]:
        f, h = self.files[k], self._handle(k)
        s_total = int(self.offsets[k + 1] - self.offsets[k])
        local = np.arange(s_total) if local is None else np.asarray(local, np.int64)
        if len(local) == 0:
            return []
        lo, hi = int(local.min()), int(local.max()) + 1
        rows = slice(int(self.offsets[k]), int(self.offsets[k + 1]))
        ao = np.concatenate([[0], np.cumsum(self.n_nodes[rows])])
        eo = np.concatenate([[0], np.cumsum(self.n_edges[rows])])
        ho = _hessian_offsets(self.n_nodes[rows])
        a_sl, e_sl, s_sl = slice(ao[lo], ao[hi]), slice(eo[lo], eo[hi]), slice(lo, hi)
        sl_of = {name: a_sl if per_node else s_sl for name, (_, per_node) in _FIELDS.items()}
        sl_of["hessian"] = slice(ho[lo], ho[hi])
        g = lambda key, sl: self._read(f, h, key, sl)
        block = {
            "numbers": g("numbers", a_sl),
            "positions": g("positions", a_sl),
            "senders": g("senders", e_sl),
            "receivers": g("receivers", e_sl),
            "shifts": g("shifts", e_sl),
            **{key: g(key, s_sl) for key in ("cell", "pbc", "level", "weight")},
            **{key: g(key, s_sl) for key in ("source_file", "source_frame")},
        }
        fields = {}
        for name in self.labels:
            if f"label/{name}" in h:
                fields[name] = (g(f"label/{name}", sl_of[name]), g(f"has/{name}", s_sl))
        extra = {}
        for name in self.inputs:
            if f"input/{name}" in h:
                sl = a_sl if INPUTS[name].per_node else s_sl
                extra[name] = (g(f"input/{name}", sl), g(f"has/input:{name}", s_sl))
        out = []
        for i in local:
            r = i - lo
            a0, a1 = ao[i] - ao[lo], ao[i + 1] - ao[lo]
            e0, e1 = eo[i] - eo[lo], eo[i + 1] - eo[lo]
            kw = {n: v[a0:a1] if _FIELDS[n][1] else v[r] for n, (v, ok) in fields.items() if ok[r]}
            if "hessian" in kw:
                n_i = a1 - a0
                h0 = ho[i] - ho[lo]
                kw["hessian"] = fields["hessian"][0][h0 : h0 + 9 * n_i * n_i]
            inputs = {
                n: v[a0:a1] if INPUTS[n].per_node else v[r] for n, (v, ok) in extra.items() if ok[r]
            }
            source = (self.sources[int(block["source_file"][r])], int(block["source_frame"][r]))
            s = Structure(
                numbers=block["numbers"][a0:a1],
                positions=block["positions"][a0:a1],
                cell=block["cell"][r],
                pbc=block["pbc"][r],
                level=int(block["level"][r]),
                weight=float(block["weight"][r]),
                source=source,
                inputs=inputs or None,
                **kw,
            )
            sh = block["shifts"][e0:e1]
            edges = (
                block["senders"][e0:e1],
                block["receivers"][e0:e1],
                sh.astype(np.int8 if sh.size == 0 or np.abs(sh).max() < 127 else np.int32),
            )
            out.append((int(self.offsets[k] + i), s, edges))
        return out

    def read_items(self, indices: Sequence[int]) -> list[tuple[int, Structure, Edges]]:
        """``(global index, Structure, edges)`` of the global ``indices``, in that order."""
        out = []
        for i in indices:
            if not 0 <= int(i) < len(self):
                raise IndexError(f"{self.directory}: structure {i} out of range 0..{len(self) - 1}")
            k = int(self.shard_of(int(i)))
            out.extend(self.read(k, [int(i) - int(self.offsets[k])]))
        return out


def _check_header(where, fmt, version) -> None:
    if fmt != FORMAT:
        raise DataError(f"{where}: not a tace_jax shard file (format {fmt!r}, expected {FORMAT!r})")
    if version is None or int(version) != FORMAT_VERSION:
        raise DataError(
            f"{where}: shard format version {version} is not the supported {FORMAT_VERSION}; "
            "run tace-jax preprocess again with this tace_jax"
        )
