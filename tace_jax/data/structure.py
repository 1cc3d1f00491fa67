"""`Structure`: one atomic configuration with optional labels, validated on construction.

Internal units are eV, Å and e. Stress follows the ASE sign convention
``σ = (1/V) ∂E/∂ε`` and virials are ``W = −∂E/∂ε = −V σ``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import DataError, where
from .fields import INPUTS

__all__ = [
    "LABELS",
    "Structure",
    "stress_to_virials",
    "virials_to_stress",
    "to_3x3",
]

#: Names of the optional label fields of :class:`Structure`.
LABELS = (
    "energy",
    "forces",
    "stress",
    "virials",
    "dipole",
    "polarizability",
    "born_charges",
    "charges",
    "total_charge",
    "electric_field",
    "polarization",
    "hessian",
)

# per-atom labels: trailing shape; per-structure labels: full shape
_PER_ATOM = {"forces": (3,), "born_charges": (3, 3), "charges": ()}
_PER_STRUCTURE = {
    "energy": (),
    "stress": (3, 3),
    "virials": (3, 3),
    "dipole": (3,),
    "polarizability": (3, 3),
    "total_charge": (),
    "electric_field": (3,),
    "polarization": (3,),
}


def to_3x3(value, name: str, loc: str) -> np.ndarray:
    """A 3x3 matrix from Voigt-6 ``(xx, yy, zz, yz, xz, xy)``, 9 values or a 3x3 array."""
    a = np.asarray(value, dtype=np.float64)
    if a.size == 6 and a.ndim == 1:
        xx, yy, zz, yz, xz, xy = a
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if a.size == 9:
        return a.reshape(3, 3)
    raise DataError(f"{loc}: field {name!r} must have 6 (Voigt), 9 or 3x3 values, got {a.shape}")


def _volume(cell: np.ndarray, pbc: np.ndarray) -> float:
    return float(abs(np.linalg.det(cell))) if pbc.all() else 0.0


def stress_to_virials(stress, cell) -> np.ndarray:
    """``W = −V σ`` (V from ``cell``)."""
    return -abs(np.linalg.det(np.asarray(cell))) * np.asarray(stress)


def virials_to_stress(virials, cell) -> np.ndarray:
    """``σ = −W / V`` (V from ``cell``; raises for a zero volume)."""
    vol = abs(np.linalg.det(np.asarray(cell)))
    if vol < 1e-8:
        raise DataError("virials_to_stress: the cell has zero volume")
    return -np.asarray(virials) / vol


#: Model inputs that are :class:`Structure` fields of their own.
_OWN_FIELDS = frozenset({"charges", "total_charge", "electric_field", "level"})


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a)  # own copy
    a.flags.writeable = False
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class Structure:
    """An atomic configuration and its labels (``None`` where absent).

    Attributes:
        numbers: ``[n]`` atomic numbers.
        positions: ``[n, 3]`` Å.
        cell: ``[3, 3]`` lattice vectors as rows (zeros for molecules).
        pbc: ``[3]`` bool.
        energy: total energy, eV.
        forces: ``[n, 3]`` eV/Å.
        stress: ``[3, 3]`` eV/Å³ (ASE sign); Voigt-6 or 9 values are accepted.
        virials: ``[3, 3]`` eV; derived from the stress (and vice versa) when the cell has a
            volume and only one of them is given.
        dipole: ``[3]`` e·Å.
        polarizability: ``[3, 3]``.
        born_charges: ``[n, 3, 3]`` e (``[n, 9]`` accepted).
        charges: ``[n]`` e.
        total_charge: e.
        electric_field: ``[3]`` V/Å.
        level: fidelity level (multi-head index), ``≥ 0``.
        weight: per-structure loss weight, ``≥ 0``.
        source: ``(file, frame)`` for error messages.
        inputs: further model inputs by registry name (:data:`tace_jax.data.fields.INPUTS`,
            e.g. ``magnetic_field``, ``spin_multiplicity``), checked when batched.
        polarization: ``[3]`` e·Å, periodic cell dipole (defined modulo ``e·R``).
        hessian: ``[n, 3, n, 3]`` eV/Å² (``[3n, 3n]`` or ``9n²`` values accepted).

    Raises:
        DataError: on wrong shapes, non-finite values, negative weights or levels.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray | None = None
    pbc: np.ndarray | None = None
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    virials: np.ndarray | None = None
    dipole: np.ndarray | None = None
    polarizability: np.ndarray | None = None
    born_charges: np.ndarray | None = None
    charges: np.ndarray | None = None
    total_charge: float | None = None
    electric_field: np.ndarray | None = None
    level: int = 0
    weight: float = 1.0
    source: tuple[str, int] = ("<memory>", 0)
    inputs: Mapping[str, Any] | None = None
    polarization: np.ndarray | None = None
    hessian: np.ndarray | None = None

    def __post_init__(self):
        loc = where(self.source)
        put = lambda k, v: object.__setattr__(self, k, v)
        put("source", (str(self.source[0]), int(self.source[1])))
        numbers = np.asarray(self.numbers)
        if numbers.ndim != 1:
            raise DataError(f"{loc}: field 'numbers' must be 1-D, got shape {numbers.shape}")
        if numbers.size and (
            numbers.dtype.kind not in "iu" and not np.all(np.mod(numbers, 1) == 0)
        ):
            raise DataError(f"{loc}: field 'numbers' must hold integers, got {numbers[:5]}")
        numbers = numbers.astype(np.int64)
        if numbers.size and (numbers.min() < 1 or numbers.max() > 118):
            bad = sorted(set(numbers[(numbers < 1) | (numbers > 118)].tolist()))
            raise DataError(f"{loc}: field 'numbers' has invalid atomic numbers {bad}")
        n = len(numbers)
        put("numbers", _frozen(numbers))
        put("positions", _frozen(self._array("positions", self.positions, (n, 3), loc)))
        cell = np.zeros((3, 3)) if self.cell is None else self.cell
        put("cell", _frozen(self._array("cell", cell, (3, 3), loc)))
        pbc = np.zeros(3, bool) if self.pbc is None else self.pbc
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
        put("pbc", _frozen(pbc))
        for name, shape in _PER_STRUCTURE.items():
            value = getattr(self, name)
            if value is None:
                continue
            if shape == (3, 3):
                value = to_3x3(value, name, loc)
            value = self._array(name, value, shape, loc)
            put(name, float(value) if shape == () else _frozen(value))
        for name, shape in _PER_ATOM.items():
            value = getattr(self, name)
            if value is not None:
                if name == "born_charges":
                    value = np.asarray(value, dtype=np.float64)
                    if value.shape == (n, 9):
                        value = value.reshape(n, 3, 3)
                put(name, _frozen(self._array(name, value, (n, *shape), loc)))
        if self.hessian is not None:  # [n, 3, n, 3] (any layout of 9n² values)
            h = np.asarray(self.hessian, dtype=np.float64)
            h = h.reshape(n, 3, n, 3) if h.size == 9 * n * n else h
            put("hessian", _frozen(self._array("hessian", h, (n, 3, n, 3), loc)))
        vol = _volume(self.cell, self.pbc)
        if self.stress is not None and self.virials is None and vol > 1e-8:
            put("virials", _frozen(-vol * self.stress))
        elif self.virials is not None and self.stress is None and vol > 1e-8:
            put("stress", _frozen(-self.virials / vol))
        try:
            level = int(self.level)
            weight = float(self.weight)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{loc}: field 'level'/'weight' is not a number ({exc})") from exc
        if level < 0 or level != self.level:
            raise DataError(
                f"{loc}: field 'level' must be a non-negative integer, got {self.level}"
            )
        if not np.isfinite(weight) or weight < 0:
            raise DataError(f"{loc}: field 'weight' must be finite and >= 0, got {self.weight}")
        put("level", level)
        put("weight", weight)
        extra = dict(self.inputs or {})
        bad = sorted(k for k in extra if k not in INPUTS or k in _OWN_FIELDS)
        if bad:
            raise DataError(
                f"{loc}: field 'inputs' has {bad}; it takes model inputs other than "
                f"{sorted(_OWN_FIELDS)}: {sorted(set(INPUTS) - _OWN_FIELDS)}"
            )
        put("inputs", {k: _frozen(np.asarray(v)) for k, v in extra.items()})

    @staticmethod
    def _array(name: str, value, shape: tuple, loc: str) -> np.ndarray:
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{loc}: field {name!r} is not numeric ({exc})") from exc
        if a.shape != shape:
            squeeze = lambda t: tuple(d for d in t if d != 1)
            if a.size == int(np.prod(shape)) and (
                name == "cell" or squeeze(a.shape) == squeeze(shape)
            ):
                a = a.reshape(shape)  # e.g. a dipole stored as [1, 3]
            else:
                raise DataError(f"{loc}: field {name!r} has shape {a.shape}, expected {shape}")
        if not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))
            at = f" at index {tuple(bad[0].tolist())}" if a.ndim else ""
            raise DataError(f"{loc}: field {name!r} has non-finite values (NaN/inf){at}")
        return a

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.numbers)

    @property
    def where(self) -> str:
        """``"<file>, frame <k>"`` for error messages."""
        return where(self.source)

    @property
    def volume(self) -> float:
        """Cell volume in Å³ (0 unless fully periodic)."""
        return _volume(self.cell, self.pbc)

    def has(self, name: str) -> bool:
        """Whether label ``name`` is present."""
        if name not in LABELS:
            raise KeyError(f"unknown label {name!r}; known: {LABELS}")
        return getattr(self, name) is not None

    def labels(self) -> dict[str, object]:
        """The present labels as a dict."""
        return {k: getattr(self, k) for k in LABELS if getattr(self, k) is not None}

    def replace(self, **changes) -> Structure:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: Mapping, source: tuple[str, int] = ("<memory>", 0)) -> Structure:
        """Build from a mapping with the field names (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise DataError(f"{where(source)}: unknown fields {sorted(unknown)}")
        return cls(**{"source": source, **dict(d)})
