"""Training from preprocessed shards (config key ``train_dir``): statistics and data sets.

:func:`shard_statistics` gives the dataset statistics of docs/theory.md §2.9 (the values of
:func:`~tace_jax.data.statistics.compute_statistics`) from the per-structure sums stored in the
shards, and :class:`StreamingData` stands in for the training set-up's in-memory structures:
model defaults, level checks, statistics, label report and :class:`StreamingLoader` s, all
from small index arrays, so no step of the set-up reads every structure.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import DataError
from .shards import ShardSet
from .statistics import (
    _given_e0,
    _scale,
    _shift,
    _underdetermined_note,
    e0_span,
    fit_atomic_energies,
)
from .streaming import StreamingLoader

__all__ = ["STREAM_OPTIONS", "ShardSubset", "StreamingData", "shard_statistics"]


def shard_statistics(
    shards: ShardSet,
    atomic_numbers: Sequence[int],
    indices=None,
    *,
    atomic_energies="least_squares",
    scale_type="rms_forces_by_element",
    shift_type=None,
    num_levels: int | None = None,
) -> dict:
    """:func:`~tace_jax.data.statistics.compute_statistics` of the structures ``indices``
    (global; default all) from the per-structure sums stored in the shards (docs/theory.md
    §2.9), without reading the structures. Same keys and values (up to summation order)."""
    zs = [int(z) for z in atomic_numbers]
    if zs != sorted(set(zs)):
        raise DataError(f"atomic_numbers must be sorted and unique, got {zs}")
    sm = shards.summary(indices)
    if len(sm["levels"]) == 0:
        raise DataError(f"{shards.directory}: no structures for the statistics")
    col = [zs.index(z) if z in zs else -1 for z in shards.elements]
    for j, c in enumerate(col):
        rows = np.where(sm["counts"][:, j] > 0)[0]
        if c < 0 and len(rows):
            raise DataError(
                f"{sm['where'](rows[0])}: field 'numbers' has element {shards.elements[j]} not "
                f"in the model's atomic_numbers {zs}"
            )
    take = lambda a: np.stack(
        [a[:, col.index(j)] if j in col else np.zeros(len(a)) for j in range(len(zs))], 1
    )
    counts, fsq, fn = take(sm["counts"]), take(sm["fsq"]), take(sm["fn"])
    levels = sm["levels"]
    m_count = int(levels.max()) + 1 if num_levels is None else int(num_levels)
    if levels.max() >= m_count:
        raise DataError(f"shard_statistics: level {levels.max()} >= num_levels {m_count}")
    keys = ("atomic_energies", "scale", "shift", "rms_forces", "rms_forces_by_element")
    out: dict = {k: [] for k in (*keys, "mean_delta_energy_per_atom", "num_structures")}
    out["e0_span"], out["e0_undetermined"], out["e0_isolated"], notes = [], [], [], []
    for m in range(m_count):
        sel = np.where(levels == m)[0]
        with_e = sel[sm["has_energy"][sel]]
        energies = sm["energy"][with_e]
        span, bad, iso = None, [], {}
        if isinstance(atomic_energies, str):
            if atomic_energies != "least_squares":
                raise DataError(f"atomic_energies: unknown option {atomic_energies!r}")
            for i in with_e[(sm["n_atoms"][with_e] == 1) & ~sm["pbc_any"][with_e]]:
                j = int(np.argmax(counts[i]))
                e = float(sm["energy"][i])
                if j in iso and abs(iso[j] - e) > 1e-8:
                    raise DataError(
                        f"{shards.directory}: isolated-atom energies of element {zs[j]} differ: "
                        f"{iso[j]} eV and {e} eV ({sm['where'](i)})"
                    )
                iso[j] = e
            e0 = fit_atomic_energies(counts[with_e], energies, iso)
            span, bad = e0_span(_compact_rows(counts[with_e]), sorted(iso))
        else:
            e0 = _given_e0(atomic_energies, m, zs, counts[sel])
        present = counts[sel].sum(axis=0) > 0
        bad_z = [zs[j] for j in bad if present[j]]
        if bad_z:
            notes.append(_underdetermined_note(bad_z, m, len(with_e)))
        out["e0_span"].append(None if span is None else span.tolist())
        out["e0_undetermined"].append(bad_z)
        out["e0_isolated"].append({str(zs[j]): e for j, e in sorted(iso.items())})
        delta = (energies - counts[with_e] @ e0) / np.maximum(counts[with_e].sum(axis=1), 1)
        mean_delta = float(delta.mean()) if len(delta) else 0.0
        sq_sum, n_sum = fsq[sel].sum(axis=0), fn[sel].sum(axis=0)
        rms = float(np.sqrt(sq_sum.sum() / n_sum.sum())) if n_sum.sum() else float("nan")
        rms_el = np.where(n_sum > 0, np.sqrt(sq_sum / np.maximum(n_sum, 1)), np.nan)
        out["atomic_energies"].append(e0.tolist())
        out["scale"].append(_scale(scale_type, rms, rms_el).tolist())
        out["shift"].append(_shift(shift_type, mean_delta, len(zs)).tolist())
        out["rms_forces"].append(rms)
        out["rms_forces_by_element"].append(rms_el.tolist())
        out["mean_delta_energy_per_atom"].append(mean_delta)
        out["num_structures"].append(int(len(sel)))
    out["avg_num_neighbors"] = float(sm["n_edges"].sum() / max(int(sm["n_atoms"].sum()), 1))
    out["atomic_numbers"] = zs
    out["num_atoms"] = int(counts.sum())
    out["scale_type"], out["shift_type"], out["warnings"] = scale_type, shift_type, notes
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return out


def _compact_rows(counts: np.ndarray) -> np.ndarray:
    """``counts`` itself up to 2048 rows; above, its distinct rows scaled by √(multiplicity):
    the same Gram matrix (row space, singular values) in ``[#compositions, Z]`` instead of
    ``[S, Z]``, since the SVD of :func:`e0_span` allocates ``S × S``."""
    if len(counts) <= 2048:  # small: the matrix itself (the in-memory basis, bit for bit)
        return counts
    rows, mult = np.unique(counts, axis=0, return_counts=True)
    return rows * np.sqrt(mult)[:, None]


# ------------------------------------------------------------------ training from train_dir
class ShardSubset(Sequence):
    """Structures ``indices`` of a :class:`ShardSet`, read on access (``len`` is free)."""

    def __init__(self, shards: ShardSet, indices=None):
        self.shards = shards
        self.indices = np.arange(len(shards)) if indices is None else np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ShardSubset(self.shards, self.indices[i])
        return self.shards.read_items([self.indices[i]])[0][1]

    def __iter__(self):
        for k in range(len(self.indices)):
            yield self[k]


#: ``stream_options`` keys and their defaults (config key of ``train_dir`` runs).
STREAM_OPTIONS = {"shuffle": "buffer", "buffer_size": 1024, "edge_budget": None, "prefetch": 2}


class StreamingData:
    """The train / valid / test sets of a ``train_dir`` run (preprocessed shards).

    Stands in for ``tace_jax.train.prepare.TrainingData``: the training set-up asks it for the
    model defaults, the level check, the statistics, the label report and the loaders, so that
    nothing reads every structure (docs/theory.md §5).
    """

    streaming = True

    def __init__(self, train_dir, valid_dir=None, test_dir=None, valid_fraction=0.05, seed=0):
        from .splits import random_split

        shards = ShardSet(train_dir)
        if valid_dir:
            self.train, self.valid = ShardSubset(shards), ShardSubset(ShardSet(valid_dir))
        else:
            tr, va = random_split(len(shards), valid_fraction, seed)
            self.train, self.valid = ShardSubset(shards, tr), ShardSubset(shards, va)
        self.tests = {}
        if test_dir:
            self.tests[os.path.basename(os.path.normpath(test_dir))] = ShardSubset(
                ShardSet(test_dir)
            )
        self.log: list[str] = []

    def _sets(self, with_tests=True):
        sets = [("train", self.train), ("valid", self.valid)]
        return sets + (list(self.tests.items()) if with_tests else [])

    def fill_model(self, m: dict) -> dict:
        """``atomic_numbers`` (train + valid elements) and ``num_levels`` where not given."""
        if m.get("les"):
            raise DataError(
                "train_dir: LES models (model.les) need every structure for their k-grid; "
                "train them from train_file"
            )
        if not m.get("atomic_numbers"):
            zs = {z for _, s in self._sets(False) if len(s) for z in s.shards.elements}
            m["atomic_numbers"] = sorted(zs)
        if m.get("num_levels") is None:
            lv = [int(s.shards.levels[s.indices].max()) for _, s in self._sets() if len(s)]
            m["num_levels"] = max(lv, default=0) + 1
        return m

    def check_levels(self, num_levels: int) -> None:
        """Raise naming the first structure whose level is not below ``num_levels``."""
        for name, s in self._sets():
            bad = np.where(s.shards.levels[s.indices] >= num_levels)[0]
            if len(bad):
                i = int(s.indices[bad[0]])
                raise DataError(
                    f"{s.shards.where(i)}: field 'level' is {s.shards.levels[i]} but the model "
                    f"has model.num_levels = {num_levels} ({name} set)"
                )

    def compute_statistics(self, structures, atomic_numbers, cutoff, *, neighbors=None, **kw):
        """:func:`shard_statistics` of ``structures`` (a :class:`ShardSubset`), with the
        signature of :func:`~tace_jax.data.statistics.compute_statistics`."""
        structures.shards.check_cutoff(cutoff)
        stats = shard_statistics(structures.shards, atomic_numbers, structures.indices, **kw)
        stats["streaming"] = self.log  # filled by make_loaders, logged by the run files
        return stats

    def label_report(self, weights: Mapping[str, float], always=("energy", "forces")) -> list[str]:
        """Counts of train/valid structures without each weighted label (``always``: also
        when no structure has it)."""
        lines = []
        for name, s in self._sets(False):
            for label, w in weights.items():
                if not len(s) or w <= 0:
                    continue
                has = s.shards.label_mask(label, s.indices)
                missing = int((~has).sum())
                if 0 < missing and (missing < len(s) or label in always):
                    first = s.shards.where(int(s.indices[np.argmin(has)]))
                    lines.append(
                        f"labels: {missing} of {len(s)} {name} frames have no {label!r} "
                        f"(first: {first}); they are left out of the {label} loss"
                    )
        return lines

    def make_loaders(self, cfg, bs: int, vbs: int, common: Mapping):
        """``(train, valid | None, {name: test})`` :class:`StreamingLoader` s."""
        opts = {**STREAM_OPTIONS, **dict(getattr(cfg, "stream_options", None) or {})}
        bad = sorted(set(opts) - set(STREAM_OPTIONS))
        if bad:
            raise DataError(f"stream_options: unknown keys {bad}; known: {list(STREAM_OPTIONS)}")
        kw = {k: v for k, v in common.items() if k != "neighbor_cache"}
        train = StreamingLoader(
            self.train.shards, batch_size=bs, indices=self.train.indices, seed=cfg.seed,
            **opts, **kw,
        )  # fmt: skip
        self.log.append(train.describe())

        def evaluator(s):
            if not len(s):
                return None
            n = min(vbs, len(s))
            loader = StreamingLoader(
                s.shards, batch_size=n, indices=s.indices, shuffle="none",
                prefetch=opts["prefetch"], **kw,
            )  # fmt: skip
            return loader

        tests = {k: evaluator(v) for k, v in self.tests.items() if len(v)}
        return train, evaluator(self.valid), tests
