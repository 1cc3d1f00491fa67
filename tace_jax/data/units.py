"""Unit conversion of labels to the internal units eV, Å, e (and V/Å for fields).

A ``units`` mapping names the units of a file, e.g. ``{"energy": "kcal/mol", "length": "Bohr"}``.
Derived units follow from energy and length (forces = energy/length, stress = energy/length³,
virials = energy, dipole = e·length, electric field = energy/(e·length)); any property can be
overridden with a unit name or a plain multiplicative factor, e.g. ``{"dipole": "Debye"}`` or
``{"polarizability": 0.5}``. Polarizabilities, Born charges and charges are not converted unless
asked for (their units vary too much between codes to guess).
"""

from __future__ import annotations

from collections.abc import Mapping

import ase.units

from .errors import DataError
from .structure import LABELS

__all__ = ["ENERGY_UNITS", "LENGTH_UNITS", "DIPOLE_UNITS", "resolve_units", "RMD17_UNITS"]

ENERGY_UNITS: dict[str, float] = {
    "ev": 1.0,
    "mev": 1e-3,
    "kcal/mol": ase.units.kcal / ase.units.mol,
    "kj/mol": ase.units.kJ / ase.units.mol,
    "hartree": ase.units.Hartree,
    "ha": ase.units.Hartree,
    "ry": ase.units.Rydberg,
    "rydberg": ase.units.Rydberg,
}
LENGTH_UNITS: dict[str, float] = {
    "å": 1.0,
    "a": 1.0,
    "ang": 1.0,
    "angstrom": 1.0,
    "bohr": ase.units.Bohr,
    "nm": 10.0,
    "pm": 0.01,
}
DIPOLE_UNITS: dict[str, float] = {"e*å": 1.0, "eå": 1.0, "e*a": 1.0, "debye": ase.units.Debye}

#: Units of the rMD17 npz files (kcal/mol and Å).
RMD17_UNITS = {"energy": "kcal/mol", "length": "Å"}

_PROPERTIES = ("energy", "length") + LABELS


def _factor(name: str, value, table: Mapping[str, float] | None) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and table is not None:
        key = value.strip().lower().replace(" ", "")
        if key in table:
            return table[key]
    known = sorted(table) if table is not None else []
    raise DataError(
        f"units: unknown unit {value!r} for {name!r} (known: {known}, or give a number factor)"
    )


def resolve_units(units: Mapping[str, object] | None = None) -> dict[str, float]:
    """Multiplicative factors that bring each property to eV / Å / e.

    Args:
        units: ``{"energy": ..., "length": ..., <property>: ...}``; missing entries mean eV, Å
            and no conversion.

    Returns:
        ``{property: factor}`` for energy, length, forces, stress, virials, dipole,
        polarizability, born_charges, charges, total_charge and electric_field.

    Raises:
        DataError: for an unknown unit name or property.
    """
    units = dict(units or {})
    unknown = set(units) - set(_PROPERTIES)
    if unknown:
        raise DataError(f"units: unknown properties {sorted(unknown)} (known: {list(_PROPERTIES)})")
    fe = _factor("energy", units.get("energy", 1.0), ENERGY_UNITS)
    fl = _factor("length", units.get("length", 1.0), LENGTH_UNITS)
    out = {
        "energy": fe,
        "length": fl,
        "forces": fe / fl,
        "stress": fe / fl**3,
        "virials": fe,
        "dipole": fl,
        "polarization": fl,
        "hessian": fe / fl**2,
        "polarizability": 1.0,
        "born_charges": 1.0,
        "charges": 1.0,
        "total_charge": 1.0,
        "electric_field": fe / fl,
    }
    tables = {
        "energy": ENERGY_UNITS,
        "virials": ENERGY_UNITS,
        "dipole": DIPOLE_UNITS,
        "polarization": DIPOLE_UNITS,
    }
    for key, value in units.items():
        if key not in ("energy", "length"):
            out[key] = _factor(key, value, tables.get(key))
    return out
