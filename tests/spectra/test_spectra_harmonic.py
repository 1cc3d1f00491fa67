"""Harmonic IR intensities and Raman activities against an analytic harmonic test double.

The double's energy is ``E(x, ℰ) = ½ uᵀKu − ℰ·(μ₀ + Σ_i Z_i u_i) − ½ ℰᵀ(α₀ + Σ_ic A_ic u_ic)ℰ``
(``u = x − x₀``, ``K`` from central springs at their rest length), so ``∂²E/∂x² = K``,
``Z*_i = Z_i`` and ``α = α₀ + Σ A u`` exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.vibrations import VibrationsData

from tace_jax.spectra import (
    harmonic_ir,
    harmonic_raman,
    ir_from_dipoles,
    lorentzian_broaden,
    normal_modes,
)

C_CM_PER_S = 2.99792458e10
E_SI, AMU_SI = 1.602176634e-19, 1.66053906660e-27


def _spring_hessian(pos, springs):
    n = len(pos)
    k = np.zeros((n, 3, n, 3))
    for i, j, kij in springs:
        r = pos[j] - pos[i]
        b = kij * np.outer(r, r) / (r @ r)
        k[i, :, i, :] += b
        k[j, :, j, :] += b
        k[i, :, j, :] -= b
        k[j, :, i, :] -= b
    return k


class HarmonicDouble:
    """``hessian`` and ``predict`` of the analytic model above (records its calls)."""

    def __init__(self, atoms, springs, z, dalpha, alpha0):
        self.x0 = atoms.get_positions().copy()
        self.k = _spring_hessian(self.x0, springs)
        self.z, self.dalpha, self.alpha0 = z, dalpha, alpha0
        self.fields, self.hessian_calls, self.hessian_fields = [], 0, []

    def hessian(self, atoms):
        self.hessian_calls += 1
        self.hessian_fields.append(atoms.info.get("electric_field"))
        return self.k.copy()

    def predict(self, atoms, properties=("energy",), electric_field=None):
        self.fields.append(np.asarray(electric_field))
        u = atoms.get_positions() - self.x0
        out = {"energy": float(0.5 * u.ravel() @ self.k.reshape(u.size, -1) @ u.ravel())}
        if "born_effective_charges" in properties:
            out["born_effective_charges"] = self.z.copy()
        if "conservative_polarizability" in properties:
            out["conservative_polarizability"] = self.alpha0 + np.einsum(
                "ic,icab->ab", u, self.dalpha
            )
        return out


def _triatomic():
    atoms = Atoms("OH2", positions=[[0, 0, 0.1], [0.76, 0.0, -0.45], [-0.72, 0.05, -0.5]])
    springs = [(0, 1, 32.0), (0, 2, 30.0), (1, 2, 4.0)]
    rng = np.random.default_rng(3)
    z = rng.normal(size=(3, 3, 3))
    dalpha = rng.normal(size=(3, 3, 3, 3))
    dalpha = 0.5 * (dalpha + np.swapaxes(dalpha, 2, 3))  # α symmetric
    alpha0 = np.diag([1.2, 1.0, 0.9])
    return atoms, HarmonicDouble(atoms, springs, z, dalpha, alpha0)


def _independent_modes(hessian, masses):
    """Nonzero modes of the mass-weighted Hessian: (ν̃ cm⁻¹ ascending, e [K, n, 3]/√m)."""
    n = len(masses)
    msq = np.sqrt(np.repeat(masses, 3))
    hm = hessian.reshape(3 * n, 3 * n) / np.outer(msq, msq)
    lam, vec = np.linalg.eigh(hm)
    keep = lam > 1e-8 * lam.max()
    omega = np.sqrt(lam[keep] * E_SI / (1e-20 * AMU_SI))  # rad/s
    return omega / (2 * np.pi * C_CM_PER_S), (vec[:, keep].T / msq).reshape(-1, n, 3)


def test_harmonic_ir_equals_independent_numpy():
    atoms, pot = _triatomic()
    freqs, inten = harmonic_ir(pot, atoms, stick=True)
    nu, disp = _independent_modes(pot.k, atoms.get_masses())
    expect = [np.sum(np.einsum("iab,ib->a", pot.z, d) ** 2) for d in disp]
    np.testing.assert_allclose(freqs, nu, rtol=1e-6)
    np.testing.assert_allclose(inten, expect, rtol=1e-6)
    np.testing.assert_allclose(pot.fields[-1], np.zeros(3))
    # km/mol: N_A e² / (12 ε₀ c² amu)
    _, km = harmonic_ir(pot, atoms, stick=True, units="km/mol")
    factor = 6.02214076e23 * E_SI**2 / (12 * 8.8541878128e-12 * 2.99792458e8**2 * AMU_SI) / 1e3
    np.testing.assert_allclose(km, np.asarray(expect) * factor, rtol=1e-5)
    assert factor == pytest.approx(974.9, rel=1e-3)


def test_harmonic_ir_broadened_and_field_from_info():
    atoms, pot = _triatomic()
    atoms.info["electric_field"] = np.array([0.0, 0.0, 0.01])
    f, s = harmonic_ir(pot, atoms, stick=True)
    grid, spec = harmonic_ir(pot, atoms, broadening_cm=20.0, grid_step_cm=0.5)
    np.testing.assert_allclose(pot.fields[-1], [0.0, 0.0, 0.01])
    assert grid[0] == 0.0 and grid[1] == 0.5 and grid[-1] >= f.max() + 190.0
    np.testing.assert_allclose(spec, lorentzian_broaden(f, s, grid, 20.0))
    for fk, sk in zip(f, s):  # at each mode at least that mode's own peak height
        j = np.argmin(abs(grid - fk))
        assert spec[j] >= 0.999 * 2 * sk / (np.pi * 20.0)
    grid2, _ = harmonic_ir(pot, atoms, grid_cm=np.linspace(0, 5000, 11))
    assert len(grid2) == 11
    # an explicit field reaches predict and the Hessian (via a copy's info), not the input
    harmonic_raman(pot, atoms, stick=True, electric_field=[0.02, 0.0, 0.0])
    np.testing.assert_allclose(pot.hessian_fields[-1], [0.02, 0.0, 0.0])
    np.testing.assert_allclose(pot.fields[-1], [0.02, 0.0, 0.0])
    np.testing.assert_allclose(atoms.info["electric_field"], [0.0, 0.0, 0.01])


def test_diatomic_frequency_matches_analytic_and_ase():
    k_spring = 25.0  # eV/Å²
    atoms = Atoms("CO", positions=[[0, 0, 0], [1.13, 0, 0]])
    pot = HarmonicDouble(
        atoms, [(0, 1, k_spring)], np.zeros((2, 3, 3)), np.zeros((2, 3, 3, 3)), np.eye(3)
    )
    m = atoms.get_masses()
    mu = m[0] * m[1] / (m[0] + m[1])
    nu = np.sqrt(k_spring * E_SI / (1e-20 * mu * AMU_SI)) / (2 * np.pi * C_CM_PER_S)
    freqs, _ = harmonic_ir(pot, atoms, stick=True)
    assert freqs.shape == (1,)  # 3n - 5 for a linear molecule
    assert freqs[0] == pytest.approx(nu, rel=1e-6)
    ase_freqs = VibrationsData.from_2d(atoms, pot.k.reshape(6, 6)).get_frequencies()
    assert freqs[0] == pytest.approx(ase_freqs.real.max(), rel=1e-9)
    # periodic cells project translations only (3n - 3 modes)
    cell = atoms.copy()
    cell.cell, cell.pbc = np.eye(3) * 6.0, True
    assert len(normal_modes(pot.k, m, cell.positions, periodic=True).frequencies) == 3


def test_triatomic_frequencies_match_ase():
    atoms, pot = _triatomic()
    freqs, _ = harmonic_ir(pot, atoms, stick=True)
    ase_freqs = VibrationsData.from_2d(atoms, pot.k.reshape(9, 9)).get_frequencies()
    np.testing.assert_allclose(freqs, np.sort(ase_freqs.real)[-3:], rtol=1e-7)


def _independent_activity(dadq):
    """45 a'² + 7 γ'², with γ'² = (3/2) Σ_ab β'_ab² of the traceless part β'."""
    a = np.trace(dadq) / 3
    beta = dadq - a * np.eye(3)
    return 45 * a**2 + 7 * 1.5 * np.sum(beta**2)


def test_harmonic_raman_equals_independent_numpy():
    atoms, pot = _triatomic()
    freqs, act = harmonic_raman(pot, atoms, stick=True)
    nu, disp = _independent_modes(pot.k, atoms.get_masses())
    expect = [_independent_activity(np.einsum("icab,ic->ab", pot.dalpha, d)) for d in disp]
    np.testing.assert_allclose(freqs, nu, rtol=1e-6)
    np.testing.assert_allclose(act, expect, rtol=1e-6)
    assert len(pot.fields) == 2 * 3  # central differences: 2 predicts per mode
    # caller-provided Cartesian derivatives give the same activities without predict
    n_calls = len(pot.fields)
    _, act2 = harmonic_raman(pot, atoms, stick=True, polarizability_derivatives=pot.dalpha)
    np.testing.assert_allclose(act2, expect, rtol=1e-9)
    assert len(pot.fields) == n_calls
    # Å⁴/amu: α scaled by e/(4π ε₀) = 14.3996 Å³ per e·Å²/V
    _, act3 = harmonic_raman(pot, atoms, stick=True, units="A4/amu")
    np.testing.assert_allclose(act3, np.asarray(expect) * 14.399645**2, rtol=1e-5)
    grid, spec = harmonic_raman(pot, atoms, broadening_cm=15.0)
    np.testing.assert_allclose(spec, lorentzian_broaden(freqs, act, grid, 15.0), rtol=1e-6)


def test_precomputed_modes_and_hessian_skip_the_potential():
    atoms, pot = _triatomic()
    modes = normal_modes(pot.k, atoms.get_masses(), atoms.get_positions())
    f1, i1 = harmonic_ir(pot, atoms, stick=True, modes=modes)
    f2, i2 = harmonic_ir(pot, atoms, stick=True, hessian=pot.k, born_effective_charges=pot.z)
    assert pot.hessian_calls == 0
    np.testing.assert_allclose(f1, f2)
    np.testing.assert_allclose(i1, i2)


def test_lorentzian_broaden_area_height_and_channels():
    grid = np.linspace(0, 4000, 40001)
    spec = lorentzian_broaden([1000.0, 2500.0], [2.0, 3.0], grid, 10.0)
    j = np.argmin(abs(grid - 1000.0))
    assert spec[j] == pytest.approx(2 * 2.0 / (np.pi * 10.0), rel=1e-3)
    assert np.trapezoid(spec, grid) == pytest.approx(5.0, rel=5e-3)
    two = lorentzian_broaden([1000.0], [[1.0, 2.0]], grid, 10.0)
    assert two.shape == (len(grid), 2)
    np.testing.assert_allclose(two[:, 1], 2 * two[:, 0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"born_effective_charges": np.zeros((2, 3, 3))}, "born_effective_charges must be"),
        ({"hessian": np.zeros((6, 6))}, "hessian must be"),
        ({"hessian": np.zeros((3, 3, 3, 2))}, "hessian must be"),
        ({"units": "D2/A2"}, "units"),
        ({"modes": normal_modes(np.eye(6), [1.0, 1.0], np.eye(2, 3))}, "modes: frequencies"),
        ({"electric_field": [0.0, 1.0]}, "electric_field must be"),
    ],
)
def test_harmonic_ir_bad_input(kwargs, match):
    atoms, pot = _triatomic()
    with pytest.raises(ValueError, match=match):
        harmonic_ir(pot, atoms, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delta": 0.0}, "delta must be"),
        ({"polarizability_derivatives": np.zeros((3, 3, 3))}, "polarizability_derivatives"),
        ({"units": "x"}, "units"),
    ],
)
def test_harmonic_raman_bad_input(kwargs, match):
    atoms, pot = _triatomic()
    with pytest.raises(ValueError, match=match):
        harmonic_raman(pot, atoms, **kwargs)


def test_lorentzian_broaden_bad_input():
    with pytest.raises(ValueError, match="width_cm"):
        lorentzian_broaden([1.0], [1.0], [0.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="intensities must be"):
        lorentzian_broaden([1.0, 2.0], [1.0], [0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="masses"):
        normal_modes(np.zeros((6, 6)), [1.0, -1.0], np.zeros((2, 3)))


def test_md_ir_of_the_harmonic_double_peaks_at_the_harmonic_frequencies():
    """Velocity-Verlet NVE on the double (internal modes excited), IR of μ(t) = Σ Z u(t)."""
    atoms, pot = _triatomic()
    harm, inten = harmonic_ir(pot, atoms, stick=True)
    modes = normal_modes(pot.k, atoms.get_masses(), atoms.get_positions())
    m = np.repeat(atoms.get_masses(), 3)
    kmat = pot.k.reshape(9, 9)
    # equal kinetic energy (0.01 eV) in each internal mode, as mass-weighted velocities
    v_mw = modes.mass_weighted_modes.T @ np.sqrt(2 * 0.01 * np.ones(3))
    conv = E_SI / AMU_SI * 1e-10  # eV/(Å·amu) → Å/fs²
    v = v_mw / np.sqrt(m) * np.sqrt(E_SI / AMU_SI) * 1e-5  # √(eV/amu) → Å/fs
    u = np.zeros(9)
    dt, steps = 0.25, 8000
    dip = np.empty((steps, 3))
    acc = -kmat @ u / m * conv
    for s in range(steps):
        dip[s] = np.einsum("iab,ib->a", pot.z, u.reshape(3, 3))
        v = v + 0.5 * dt * acc
        u = u + dt * v
        acc = -kmat @ u / m * conv
        v = v + 0.5 * dt * acc
    freqs, spec = ir_from_dipoles(dip, dt, max_frequency_cm=6000.0)
    inner = np.flatnonzero((spec[1:-1] > spec[:-2]) & (spec[1:-1] >= spec[2:])) + 1
    peaks = np.sort(freqs[inner[np.argsort(spec[inner])[::-1][:3]]])
    np.testing.assert_allclose(peaks, harm, rtol=0.02)
    assert np.all(abs(peaks - harm) <= freqs[1] - freqs[0])
