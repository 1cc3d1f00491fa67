"""NumPy ``.npz`` readers: rMD17 and a generic layout.

rMD17 (detected by the keys ``nuclear_charges``, ``coords``, ``energies``, ``forces``) stores
energies in kcal/mol and forces in kcal/mol/Å; they are converted to eV automatically unless
``units`` is given.

Generic layout (``F`` frames, ``N`` atoms per frame):

* ``numbers`` (or ``atomic_numbers``, ``Z``, ``z``, ``nuclear_charges``): ``[N]`` or ``[F, N]``;
* ``positions`` (or ``R``, ``coords``, ``pos``): ``[F, N, 3]`` (``[N, 3]`` for one frame);
* optional ``cell`` ``[3, 3]``/``[F, 3, 3]``, ``pbc`` ``[3]``/``[F, 3]``;
* labels under the configured keys (also ``energies``/``E`` and ``F`` for energy and forces):
  per-frame ``[F, ...]``, per-atom ``[F, N, ...]``.

Frames of different sizes: add ``n_atoms`` ``[F]`` and concatenate the per-atom arrays along the
first axis (``numbers [ΣN]``, ``positions [ΣN, 3]``, ``forces [ΣN, 3]`` …).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping

import numpy as np

from .errors import DataError
from .structure import LABELS, Structure
from .units import RMD17_UNITS, resolve_units

__all__ = ["read_npz", "RMD17_KEYS"]

RMD17_KEYS = ("nuclear_charges", "coords", "energies", "forces")
_PER_ATOM = {"forces", "born_charges", "charges"}
_ALIASES = {
    "numbers": ("numbers", "atomic_numbers", "Z", "z", "nuclear_charges"),
    "positions": ("positions", "R", "coords", "pos"),
    "energy": ("energies", "E"),
    "forces": ("F",),
}


def _load(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(
            f"{path}, frame 0: malformed npz file ({type(exc).__name__}: {exc})"
        ) from exc


def _find(data: Mapping, names, path: str, field: str, required: bool = True):
    for name in names:
        if name is not None and name in data:
            return data[name]
    if required:
        raise DataError(
            f"{path}, frame 0: field {field!r} not found (looked for keys {list(names)}; "
            f"file has {sorted(data)})"
        )
    return None


def _per_frame(value, num: int, path: str, field: str) -> list:
    a = np.asarray(value)
    if a.shape[:1] != (num,):
        raise DataError(
            f"{path}, frame 0: field {field!r} has shape {a.shape}; expected {num} frames first"
        )
    return list(a)


def read_npz(
    path: str,
    keys=None,
    units: Mapping | None = None,
    levels: Mapping[str, int] | None = None,
) -> list[Structure]:
    """Read an rMD17 or generic npz file (see the module docstring)."""
    from .readers import DataKeys, _level

    keys = DataKeys.make(keys)
    data = _load(path)
    rmd17 = all(k in data for k in RMD17_KEYS)
    f = resolve_units(RMD17_UNITS if (rmd17 and units is None) else units)
    numbers = np.asarray(_find(data, _ALIASES["numbers"], path, "numbers"))
    positions = np.asarray(_find(data, _ALIASES["positions"], path, "positions"))
    if positions.size == 0:
        raise DataError(f"{path}: empty file (no frames)")
    n_atoms = data.get("n_atoms")
    if n_atoms is not None:  # ragged: concatenated along atoms
        n_atoms = np.asarray(n_atoms, dtype=np.int64).reshape(-1)
        total = int(n_atoms.sum())
        if len(positions) != total or len(numbers) != total:
            raise DataError(
                f"{path}, frame 0: field 'positions'/'numbers' has {len(positions)}/"
                f"{len(numbers)} rows but n_atoms sums to {total}"
            )
        splits = np.cumsum(n_atoms)[:-1]
        num, single = len(n_atoms), False
        split_atoms = lambda a: np.split(np.asarray(a), splits)
        numbers_f, positions_f = split_atoms(numbers), split_atoms(positions)
    else:
        single = positions.ndim == 2
        if single:
            positions = positions[None]
        if positions.ndim != 3:
            raise DataError(
                f"{path}, frame 0: field 'positions' has shape {positions.shape}, "
                "expected [F, N, 3]"
            )
        num = len(positions)
        positions_f = list(positions)
        numbers_f = (
            [numbers] * num if numbers.ndim == 1 else _per_frame(numbers, num, path, "numbers")
        )
        split_atoms = None

    def frames_of(value, label):
        if split_atoms is not None and label in _PER_ATOM:
            return split_atoms(value)
        if single:
            value = np.asarray(value)[None]
        return _per_frame(value, num, path, label)

    per_frame: dict[str, list] = {}
    for label in LABELS:
        names = (keys.key(label), *_ALIASES.get(label, ()))
        value = _find(data, names, path, label, required=False)
        if value is not None:
            per_frame[label] = frames_of(value, label)
    cell = data.get("cell")
    if cell is None or np.ndim(cell) == 2:
        cells = [cell] * num
    else:
        cells = _per_frame(cell, num, path, "cell")
    pbc = data.get("pbc")
    pbcs = [pbc] * num if pbc is None or np.ndim(pbc) <= 1 else _per_frame(pbc, num, path, "pbc")
    extra = {}
    for name, key in (("level", keys.level_key), ("weight", keys.weight_key)):
        if key is not None and key in data:
            extra[name] = _per_frame(np.reshape(data[key], (num, -1))[:, 0], num, path, name)
    out = []
    for k in range(num):
        fields = {
            label: np.asarray(v[k], dtype=np.float64) * f[label] for label, v in per_frame.items()
        }
        loc = f"{path}, frame {k}"
        out.append(
            Structure(
                numbers=numbers_f[k],
                positions=np.asarray(positions_f[k], dtype=np.float64) * f["length"],
                cell=None if cells[k] is None else np.asarray(cells[k], np.float64) * f["length"],
                pbc=pbcs[k],
                level=_level(extra["level"][k], levels, loc) if "level" in extra else 0,
                weight=float(extra["weight"][k]) if "weight" in extra else 1.0,
                source=(path, k),
                **fields,
            )
        )
    return out
