"""ASE calculator for TACE potentials.

Example:
    >>> from tace_jax import TACECalculator  # doctest: +SKIP
    >>> atoms.calc = TACECalculator(potential, dtype="float64")  # doctest: +SKIP
    >>> atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()  # doctest: +SKIP

Works with ``ase.optimize`` (BFGS, FIRE, …), ``ase.md`` (VelocityVerlet, Langevin, …),
``ase.vibrations`` and ``ase.mep.NEB``. Energies in eV, forces in eV/Å, stress in eV/Å³ as a
Voigt 6-vector ``(xx, yy, zz, yz, xz, xy)`` with ASE's sign (``σ = (1/V)·∂E/∂ε``). Stress is
only available for periodic structures (ASE raises ``PropertyNotImplementedError`` otherwise).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from tace_jax.data.fields import INPUTS

#: Debye per e·Å (the unit of the direct dipole head's ionic term).
DEBYE_PER_E_ANGSTROM = 4.8032047

__all__ = ["TACECalculator", "full_3x3_to_voigt"]


def full_3x3_to_voigt(s) -> np.ndarray:
    """``[3, 3]`` → ASE Voigt ``[xx, yy, zz, yz, xz, xy]``."""
    s = np.asarray(s, np.float64).reshape(3, 3)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def _with_dtype(potential, dtype):
    if dtype is None:
        return potential
    dtype = np.dtype(dtype)
    if np.dtype(getattr(potential, "dtype", "float32")) == dtype:
        return potential
    for name in ("astype", "with_dtype"):
        fn = getattr(potential, name, None)
        if callable(fn):
            return fn(dtype)
    raise TypeError(f"{type(potential).__name__} cannot be converted to {dtype}")


class TACECalculator(Calculator):
    """ASE calculator wrapping a :class:`tace_jax.Potential`.

    Args:
        potential: the potential (or any object following
            :class:`tace_jax.inference.protocol.PotentialLike`: ``predict(atoms, properties,
            **inputs)`` returning ``energy``, ``forces`` and ``stress`` like
            :meth:`Potential.predict`).
        dtype: ``"float32"`` or ``"float64"`` to compute in (default: the potential's);
            float64 needs ``jax.config.update("jax_enable_x64", True)``.
        **kwargs: model inputs (``electric_field=``, ``level=``, ``total_charge=`` … see
            :data:`tace_jax.data.fields.INPUTS`), which override ``atoms.info`` /
            ``atoms.arrays``; the rest is passed to
            :class:`ase.calculators.calculator.Calculator`.

    Besides energy, forces and stress it reports ``dipole`` (e·Å: the polarization
    ``P = −∂E/∂ℰ`` for a model with an electric-field input, else the direct dipole head
    converted from Debye),
    ``charges`` (a model with a charge head) and ``magmoms`` (a model with a magnetic-moment
    head), where the model has them.

    Attributes:
        potential: the (possibly dtype-converted) potential.
        inputs: the model-input overrides.
        calls: number of model evaluations.
    """

    def __init__(self, potential, dtype=None, **kwargs):
        inputs = {k: kwargs.pop(k) for k in list(kwargs) if k in INPUTS}
        super().__init__(**kwargs)
        self.potential = _with_dtype(potential, dtype)
        self.inputs = inputs
        self.calls = 0
        names = set(getattr(self.potential, "input_names", ()))
        heads = set(getattr(self.potential, "config_heads", lambda: ())())
        self._dipole = (
            "polarization"
            if "electric_field" in names
            else ("direct_dipole" if "direct_dipole" in heads else None)
        )
        self._extra = [p for p in ("charges", "magmoms") if p in heads]
        self.implemented_properties = [
            "energy",
            "free_energy",
            "forces",
            "stress",
            "energies",
            *(["dipole"] if self._dipole else []),
            *self._extra,
        ]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(np.any(atoms.pbc))
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError("stress is only defined for periodic structures")
        want = ["energy", "forces"]
        if periodic:
            want.append("stress")
        if "energies" in properties:
            want.append("node_energy")
        if "dipole" in properties and self._dipole:
            want.append(self._dipole)
        res = self.potential.predict(atoms, properties=tuple(want), **self.inputs)
        self.calls += 1
        energy = float(res["energy"])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(res["forces"], np.float64).reshape(len(atoms), 3),
        }
        if periodic:
            self.results["stress"] = full_3x3_to_voigt(res["stress"])
        if "node_energy" in res:
            self.results["energies"] = np.asarray(res["node_energy"], np.float64)
        if self._dipole and self._dipole in res:
            dipole = np.asarray(res[self._dipole], np.float64).reshape(3)
            if self._dipole == "direct_dipole":  # the head is in Debye (docs/theory.md §2.10)
                dipole = dipole / DEBYE_PER_E_ANGSTROM
            self.results["dipole"] = dipole
        for name in self._extra:
            if name in res:
                self.results[name] = np.asarray(res[name], np.float64)
