"""Quantum correction factors for classical (MD) lineshapes.

A classical time-correlation function is even in time, so its spectrum ``S_cl(ω)`` obeys no
detailed balance. A quantum correction factor ``Q(ω)`` approximates the quantum lineshape as
``S_qm(ω) ≈ Q(ω) S_cl(ω)``. With ``x = βħω = ħω / (k_B T)``:

* ``None``: ``Q = 1`` (the classical lineshape);
* ``"harmonic"``: ``Q = x / (1 − e^{−x})`` (exact for a harmonic system);
* ``"standard"``: ``Q = 2 / (1 + e^{−x})``;
* ``"schofield"``: ``Q = e^{x/2}``.

All tend to 1 for ``ħω ≪ k_B T``. The MD spectra multiply ``ν̃² S_cl(ν̃)`` by ``Q``.

``ħω`` is evaluated from the wavenumber ``ν̃`` (cm⁻¹) with the ``ase.units`` conversion
(``ħω = ν̃ · units.invcm`` eV) and ``k_B T`` with ``units.kB`` (eV/K).
"""

from __future__ import annotations

import numpy as np
from ase import units

__all__ = ["QUANTUM_CORRECTIONS", "quantum_correction_factor"]

QUANTUM_CORRECTIONS = (None, "harmonic", "standard", "schofield")


def quantum_correction_factor(frequencies_cm, kind, temperature) -> np.ndarray:
    """``Q(ω)`` of the table above on a wavenumber grid.

    Args:
        frequencies_cm: ``[F]`` wavenumbers, cm⁻¹ (≥ 0).
        kind: ``None``, ``"harmonic"``, ``"standard"`` or ``"schofield"``.
        temperature: K, required (> 0) unless ``kind`` is ``None``.

    Returns:
        ``[F]`` float64 factors (1 at ``ν̃ = 0``).

    Raises:
        ValueError: unknown ``kind`` or missing/non-positive ``temperature``.
    """
    nu = np.asarray(frequencies_cm, np.float64)
    if kind not in QUANTUM_CORRECTIONS:
        raise ValueError(f"quantum_correction must be one of {QUANTUM_CORRECTIONS}, got {kind!r}")
    if kind is None:
        return np.ones_like(nu)
    if temperature is None or not np.isfinite(temperature) or float(temperature) <= 0:
        raise ValueError(
            f"quantum_correction={kind!r} needs a temperature > 0 (K), got {temperature!r}"
        )
    x = nu * units.invcm / (units.kB * float(temperature))
    if kind == "harmonic":
        small = np.abs(x) < 1e-8
        safe = np.where(small, 1.0, x)
        return np.where(small, 1.0 + 0.5 * x, safe / -np.expm1(-safe))
    if kind == "standard":
        return 2.0 / (1.0 + np.exp(-x))
    return np.exp(0.5 * x)
