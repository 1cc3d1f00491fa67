"""Train / validation / test splits: separate files, a seeded random fraction, or index files."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import DataError
from .readers import read_structures
from .structure import Structure

__all__ = ["DataSplits", "load_splits", "random_split", "read_indices", "select"]


def random_split(n: int, valid_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train, valid) index arrays, both sorted.

    ``round(valid_fraction * n)`` indices (at least one when ``valid_fraction > 0`` and ``n > 1``)
    are drawn without replacement with ``numpy.random.default_rng(seed)``; the result depends only
    on ``(n, valid_fraction, seed)``.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    k = int(round(valid_fraction * n))
    if valid_fraction > 0 and n > 1:
        k = min(max(k, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def read_indices(path: str | os.PathLike) -> np.ndarray:
    """Integer indices from a ``.npy`` file or a text file (whitespace/comma separated, ``#``
    comments allowed)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: index file not found")
    try:
        if path.endswith(".npy"):
            a = np.load(path, allow_pickle=False)
        else:
            with open(path) as fh:
                text = " ".join(line.split("#", 1)[0] for line in fh)
            tokens = text.replace(",", " ").split()
            a = np.array([float(t) for t in tokens])
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: malformed index file ({type(exc).__name__}: {exc})") from exc
    a = np.asarray(a).reshape(-1)
    if a.size and (a.dtype.kind not in "iuf" or not np.all(np.mod(a, 1) == 0)):
        raise DataError(f"{path}: index file must hold integers")
    return a.astype(np.int64)


def select(structures: Sequence[Structure], indices, what: str = "indices") -> list[Structure]:
    """``[structures[i] for i in indices]`` with bounds and duplicate checks."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    n = len(structures)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise DataError(f"{what}: indices {bad[:10].tolist()} out of range for {n} structures")
    if len(np.unique(idx)) != len(idx):
        raise DataError(f"{what}: duplicate indices")
    return [structures[i] for i in idx]


@dataclasses.dataclass
class DataSplits:
    """Structures of each split; ``tests`` maps a name to a test set."""

    train: list[Structure]
    valid: list[Structure]
    tests: dict[str, list[Structure]] = dataclasses.field(default_factory=dict)


def _read_many(paths, read_kwargs) -> list[Structure]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Structure] = []
    for p in paths:
        out.extend(read_structures(p, **read_kwargs))
    return out


def _indices(value, what: str):
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return read_indices(value)
    return np.asarray(value, dtype=np.int64)


def load_splits(
    train,
    valid=None,
    test=None,
    *,
    valid_fraction: float = 0.05,
    seed: int = 0,
    train_indices=None,
    valid_indices=None,
    test_indices=None,
    **read_kwargs,
) -> DataSplits:
    """Read and split the data.

    Args:
        train: path or list of paths (pooled in order).
        valid: path(s) of a separate validation set. Without it the validation set comes from
            ``valid_indices`` or, failing that, a random ``valid_fraction`` of the (selected)
            training pool with ``seed``.
        test: path, list of paths (named by file stem) or ``{name: path}``.
        train_indices, valid_indices: index files (or arrays) into the pooled training files.
        test_indices: index file (or array) applied to every test set.
        **read_kwargs: passed to :func:`~tace_jax.data.readers.read_structures`.

    Raises:
        DataError: for overlapping train/valid index files, bad indices or bad data.
    """
    pool = _read_many(train, read_kwargs)
    ti = _indices(train_indices, "train_indices")
    vi = _indices(valid_indices, "valid_indices")
    if valid is not None:
        train_set = select(pool, ti, "train_indices") if ti is not None else pool
        valid_set = _read_many(valid, read_kwargs)
        if vi is not None:
            valid_set = select(valid_set, vi, "valid_indices")
    elif vi is not None:
        if ti is None:
            ti = np.setdiff1d(np.arange(len(pool)), vi)
        common = np.intersect1d(ti, vi)
        if common.size:
            raise DataError(f"train_indices and valid_indices share indices {common[:10].tolist()}")
        train_set = select(pool, ti, "train_indices")
        valid_set = select(pool, vi, "valid_indices")
    else:
        base = select(pool, ti, "train_indices") if ti is not None else pool
        tr, va = random_split(len(base), valid_fraction, seed)
        train_set, valid_set = [base[i] for i in tr], [base[i] for i in va]
    tests: dict[str, list[Structure]] = {}
    if test is not None:
        if isinstance(test, (str, os.PathLike)):
            test = [test]
        if not isinstance(test, Mapping):
            test = {_stem(p): p for p in test}
        xi = _indices(test_indices, "test_indices")
        for name, p in test.items():
            tests[name] = _read_many(p, read_kwargs)
            if xi is not None:
                tests[name] = select(tests[name], xi, "test_indices")
    return DataSplits(train=train_set, valid=valid_set, tests=tests)


def _stem(path) -> str:
    name = os.path.basename(os.fspath(path))
    for suffix in (".xz", ".gz", ".bz2", ".npz", ".extxyz", ".xyz", ".db"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name
