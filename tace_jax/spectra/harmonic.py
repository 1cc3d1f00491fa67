"""Harmonic IR intensities and Raman activities from a potential's response properties.

``docs/theory.md §3`` (TACE paper, arXiv 2509.14961): the Born effective charges
``Z*_{i,ab} = ∂P_a/∂x_{ib}`` and the conservative polarizability ``α_ab = ∂P_a/∂ℰ_b`` of a field
model, projected on the normal modes (:mod:`tace_jax.spectra.normal_modes`,
``Q_k`` in Å·√amu):

* IR: ``∂μ_a/∂Q_k = Σ_{i,b} Z*_{i,ab} e_{k,ib} / √m_i`` and ``I_k = Σ_a (∂μ_a/∂Q_k)²`` in
  e²/amu (``units="km/mol"``: times ``N_A / (12 ε₀ c²)`` · e²/amu, ≈ 974.9 km/mol per e²/amu);
* Raman: ``α'_k = ∂α/∂Q_k`` (central differences along the mode or from given Cartesian
  derivatives), ``a' = tr α'/3``, ``γ'² = ½[(α'_xx−α'_yy)² + (α'_yy−α'_zz)² + (α'_zz−α'_xx)²]
  + 3(α'_xy² + α'_yz² + α'_zx²)`` (of the symmetrised ``α'``), and the activity
  ``S_k = 45 a'² + 7 γ'²`` in (α unit)²/(Å²·amu); ``units="A4/amu"`` first converts α from
  e·Å²/V to the polarizability volume Å³ (factor ``e / (4π ε₀)`` = 14.40 Å³·V/(e·Å²)).

Both return a stick spectrum ``(mode wavenumbers, intensities)`` (``stick=True``; imaginary modes
as negative wavenumbers) or a Lorentzian-broadened one on a grid
(:func:`~tace_jax.spectra.broadening.lorentzian_broaden`, real modes only, (unit)/cm⁻¹).

The potential needs ``hessian(atoms)`` → ``[n,3,n,3]`` eV/Å² and
``predict(atoms, properties=(name,), electric_field=ℰ)[name]`` with ``born_effective_charges``
``[n, 3(pol), 3(pos)]`` (e) and ``conservative_polarizability`` ``[3, 3]`` (e·Å²/V).
"""

from __future__ import annotations

import numpy as np
from ase import units as ase_units

from tace_jax.properties.normal_modes import NormalModes, normal_modes

from .broadening import default_grid, lorentzian_broaden

__all__ = [
    "harmonic_ir",
    "harmonic_raman",
    "ir_intensities",
    "raman_activities",
    "KM_PER_MOL_PER_E2_AMU",
    "A3_PER_E_A2_PER_V",
]

#: IR intensity of ``|∂μ/∂Q|² = 1 e²/amu`` in km/mol: ``N_A e² / (12 ε₀ c² amu)`` / 1000.
KM_PER_MOL_PER_E2_AMU = (
    ase_units._Nav * ase_units._e**2 / (12.0 * ase_units._eps0 * ase_units._c**2 * ase_units._amu)
) / 1e3
#: polarizability volume (Å³) of α = 1 e·Å²/V: ``e / (4π ε₀)`` in V·Å.
A3_PER_E_A2_PER_V = ase_units._e / (4.0 * np.pi * ase_units._eps0) * 1e10


def _modes_for(potential, atoms, modes, hessian, project: bool):
    if modes is not None:
        if not hasattr(modes, "frequencies") or not hasattr(modes, "mass_weighted_modes"):
            raise ValueError("modes must have .frequencies and .mass_weighted_modes")
        f = np.asarray(modes.frequencies, np.float64)
        e = np.asarray(modes.mass_weighted_modes, np.float64)
        if f.ndim != 1 or e.shape != (len(f), 3 * len(atoms)):
            raise ValueError(
                f"modes: frequencies [K] and mass_weighted_modes [K, {3 * len(atoms)}] expected, "
                f"got {f.shape} and {e.shape}"
            )
        return NormalModes(f, e, np.asarray(atoms.get_masses(), np.float64))
    h = potential.hessian(atoms) if hessian is None else hessian
    return normal_modes(
        h,
        atoms.get_masses(),
        atoms.get_positions(),
        periodic=bool(np.any(atoms.pbc)),
        project=project,
    )


def _with_field(atoms, electric_field):
    """``(atoms, ℰ)``: an explicit field is also written to a copy's ``info`` so that the
    Hessian and the displaced structures are evaluated at the same field."""
    f = atoms.info.get("electric_field", np.zeros(3)) if electric_field is None else electric_field
    f = np.asarray(f, np.float64)
    if f.shape != (3,):
        raise ValueError(f"electric_field must be [3] V/Å, got shape {f.shape}")
    if electric_field is not None:
        atoms = atoms.copy()
        atoms.info["electric_field"] = f
    return atoms, f


def ir_intensities(born_effective_charges, modes: NormalModes) -> np.ndarray:
    """``I_k = Σ_a (Σ_{i,b} Z*_{i,ab} e_{k,ib}/√m_i)²`` (e²/amu); ``Z*`` ``[n, 3(pol), 3(pos)]``."""
    z = np.asarray(born_effective_charges, np.float64)
    n = len(modes.masses)
    if z.shape != (n, 3, 3):
        raise ValueError(
            f"born_effective_charges must be [{n}, 3, 3] (atom, polarization, position), "
            f"got shape {z.shape}"
        )
    dmu = np.einsum("iab,kib->ka", z, modes.displacements)
    return np.sum(dmu**2, axis=1)


def raman_activities(dalpha_dq) -> np.ndarray:
    """``45 a'² + 7 γ'²`` per mode from ``∂α/∂Q`` ``[K, 3, 3]`` (symmetrised first)."""
    d = np.asarray(dalpha_dq, np.float64)
    if d.ndim != 3 or d.shape[1:] != (3, 3):
        raise ValueError(f"dalpha_dq must be [K, 3, 3], got shape {d.shape}")
    d = 0.5 * (d + np.swapaxes(d, 1, 2))
    xx, yy, zz = d[:, 0, 0], d[:, 1, 1], d[:, 2, 2]
    a = (xx + yy + zz) / 3.0
    g2 = 0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3.0 * (
        d[:, 0, 1] ** 2 + d[:, 1, 2] ** 2 + d[:, 2, 0] ** 2
    )
    return 45.0 * a**2 + 7.0 * g2


def _spectrum(modes, sticks, stick, broadening_cm, grid_cm, grid_step_cm, grid_max_cm):
    freqs = modes.frequencies
    if stick:
        return freqs.copy(), sticks
    real = freqs > 0
    if grid_cm is None:
        grid_cm = default_grid(freqs[real], broadening_cm, grid_step_cm, grid_max_cm)
    grid = np.asarray(grid_cm, np.float64)
    return grid, lorentzian_broaden(freqs[real], sticks[real], grid, broadening_cm)


def harmonic_ir(
    potential,
    atoms,
    *,
    electric_field=None,
    stick: bool = False,
    broadening_cm: float = 10.0,
    grid_cm=None,
    grid_step_cm: float = 1.0,
    grid_max_cm: float | None = None,
    units: str = "e2/amu",
    modes=None,
    hessian=None,
    born_effective_charges=None,
    project: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic IR spectrum ``I_k ∝ |Σ_i Z*_i e_{k,i}/√m_i|²`` (module docstring).

    Args:
        potential: has ``hessian(atoms)`` and ``predict(atoms, properties, electric_field)``.
        atoms: an ``ase.Atoms`` at (or near) a minimum; periodic cells give Γ-point modes.
        electric_field: ``[3]`` V/Å at which the Hessian and ``Z*`` are evaluated (default
            ``atoms.info["electric_field"]`` or 0; an explicit one is also set in the
            ``info`` of a copy of ``atoms`` passed to ``potential.hessian``).
        stick: return the modes and their intensities instead of a broadened spectrum.
        broadening_cm: Lorentzian FWHM, cm⁻¹.
        grid_cm: wavenumber grid (default ``0 … grid_max_cm`` by ``grid_step_cm``).
        grid_step_cm: default-grid spacing, cm⁻¹.
        grid_max_cm: default-grid end (default: highest mode + 10 widths).
        units: ``"e2/amu"`` or ``"km/mol"``.
        modes: precomputed modes (``.frequencies`` cm⁻¹, ``.mass_weighted_modes`` ``[K, 3n]``,
            e.g. :func:`~tace_jax.spectra.normal_modes.normal_modes`); skips the Hessian.
        hessian: precomputed ``[n,3,n,3]`` eV/Å² (skips ``potential.hessian``).
        born_effective_charges: precomputed ``[n, 3, 3]`` (skips ``potential.predict``).
        project: remove rigid-body motions from the Hessian.

    Returns:
        ``(frequencies_cm, intensities)``: ``[K]`` modes and intensities (``stick``), or the
        ``[F]`` grid and the broadened spectrum (unit/cm⁻¹).

    Raises:
        ValueError: bad shapes (naming the array) or an unknown unit.
    """
    if units not in ("e2/amu", "km/mol"):
        raise ValueError(f"units must be 'e2/amu' or 'km/mol', got {units!r}")
    atoms, field = _with_field(atoms, electric_field)
    m = _modes_for(potential, atoms, modes, hessian, project)
    z = born_effective_charges
    if z is None:
        out = potential.predict(
            atoms,
            properties=("born_effective_charges",),
            electric_field=field,
        )
        z = out["born_effective_charges"]
    sticks = ir_intensities(z, m)
    if units == "km/mol":
        sticks = sticks * KM_PER_MOL_PER_E2_AMU
    return _spectrum(m, sticks, stick, broadening_cm, grid_cm, grid_step_cm, grid_max_cm)


def _polarizability(potential, atoms, field) -> np.ndarray:
    out = potential.predict(
        atoms, properties=("conservative_polarizability",), electric_field=field
    )
    a = np.asarray(out["conservative_polarizability"], np.float64)
    if a.shape != (3, 3):
        raise ValueError(f"conservative_polarizability must be [3, 3], got shape {a.shape}")
    return a


def _fd_dalpha_dq(potential, atoms, modes: NormalModes, field, delta: float) -> np.ndarray:
    """Central differences of α along each mode; the largest atomic step is ``delta`` Å."""
    disp = modes.displacements  # [K, n, 3]
    x0 = atoms.get_positions()
    out = np.zeros((len(disp), 3, 3))
    for k, d in enumerate(disp):
        s = delta / max(float(np.linalg.norm(d, axis=1).max()), 1e-300)  # Å·√amu
        alpha = []
        for sign in (1.0, -1.0):
            a = atoms.copy()
            a.set_positions(x0 + sign * s * d)
            alpha.append(_polarizability(potential, a, field))
        out[k] = (alpha[0] - alpha[1]) / (2.0 * s)
    return out


def harmonic_raman(
    potential,
    atoms,
    *,
    electric_field=None,
    stick: bool = False,
    broadening_cm: float = 10.0,
    grid_cm=None,
    grid_step_cm: float = 1.0,
    grid_max_cm: float | None = None,
    units: str = "native",
    delta: float = 0.01,
    polarizability_derivatives=None,
    modes=None,
    hessian=None,
    project: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic Raman activities ``S_k = 45 a'² + 7 γ'²`` from ``∂α/∂Q_k`` (module docstring).

    Args:
        potential: has ``hessian(atoms)`` and ``predict(atoms, properties, electric_field)``.
        atoms: an ``ase.Atoms`` at (or near) a minimum.
        electric_field: ``[3]`` V/Å (default ``atoms.info["electric_field"]`` or 0).
        stick, broadening_cm, grid_cm, grid_step_cm, grid_max_cm: as in :func:`harmonic_ir`.
        units: ``"native"`` ((α unit)²/(Å²·amu), e.g. (e·Å²/V)²/(Å²·amu)) or ``"A4/amu"``
            (α converted from e·Å²/V to Å³).
        delta: largest atomic displacement (Å) of the central finite difference along each
            mode (2 ``predict`` calls per mode).
        polarizability_derivatives: ``[n, 3, 3, 3]`` with ``[i, c, a, b] = ∂α_ab/∂x_ic``
            (Å⁻¹ · α unit); replaces the finite differences.
        modes, hessian, project: as in :func:`harmonic_ir`.

    Returns:
        ``(frequencies_cm, activities)`` (stick) or ``(grid_cm, broadened spectrum)``.

    Raises:
        ValueError: bad shapes (naming the array), ``delta <= 0`` or an unknown unit.
    """
    if units not in ("native", "A4/amu"):
        raise ValueError(f"units must be 'native' or 'A4/amu', got {units!r}")
    if not delta > 0:
        raise ValueError(f"delta must be > 0 Å, got {delta!r}")
    atoms, field = _with_field(atoms, electric_field)
    m = _modes_for(potential, atoms, modes, hessian, project)
    if polarizability_derivatives is not None:
        n = len(m.masses)
        dadx = np.asarray(polarizability_derivatives, np.float64)
        if dadx.shape != (n, 3, 3, 3):
            raise ValueError(
                f"polarizability_derivatives must be [{n}, 3, 3, 3] (atom, position, α, α), "
                f"got shape {dadx.shape}"
            )
        dadq = np.einsum("icab,kic->kab", dadx, m.displacements)
    else:
        dadq = _fd_dalpha_dq(potential, atoms, m, field, float(delta))
    if units == "A4/amu":
        dadq = dadq * A3_PER_E_A2_PER_V
    sticks = raman_activities(dadq)
    return _spectrum(m, sticks, stick, broadening_cm, grid_cm, grid_step_cm, grid_max_cm)
