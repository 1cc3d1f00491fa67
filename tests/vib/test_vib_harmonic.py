"""Harmonic analysis: analytic cases, projections, Hessian vs finite differences, agreement
with ase.vibrations, Γ-point phonons and the spectrum plot."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.optimize import BFGS
from ase.vibrations import Vibrations

from tace_jax.calculator import TACECalculator
from tace_jax.testing import MorsePotential
from tace_jax.vib import (
    harmonic_analysis,
    ir_intensities,
    lorentzian_spectrum,
    plot_spectrum,
    rigid_body_vectors,
    vibrational_analysis,
)
from tace_jax.vib.harmonic import EV_PER_SQRT_LAMBDA


@pytest.fixture(scope="module")
def pot():
    return MorsePotential(atomic_numbers=(1, 6, 8, 14), cutoff=4.0, dtype="float64", r0=1.2)


@pytest.fixture(scope="module")
def relaxed(pot):
    m = molecule("H2CO")
    m.rattle(0.1, seed=3)  # break the planar symmetry (the planar geometry is a saddle here)
    m.calc = TACECalculator(pot)
    BFGS(m, logfile=None).run(fmax=1e-6, steps=500)
    m.calc = None
    return m


def test_diatomic_spring_analytic():
    k, m1, m2 = 30.0, 1.0, 16.0  # eV/Å², amu
    u = np.array([0.0, 0.0, 1.0])
    block = k * np.outer(u, u)
    h = np.block([[block, -block], [-block, block]])
    res = harmonic_analysis(h, [m1, m2], [[0, 0, 0], [0, 0, 1.0]])
    assert res.num_projected == 5 and len(res.frequencies) == 1
    mu = m1 * m2 / (m1 + m2)
    expect = EV_PER_SQRT_LAMBDA * np.sqrt(k / mu) / units.invcm
    assert res.frequencies[0] == pytest.approx(expect, rel=1e-12)
    assert res.zpe == pytest.approx(0.5 * EV_PER_SQRT_LAMBDA * np.sqrt(k / mu), rel=1e-12)
    d = res.modes[0]  # Cartesian displacements: opposite, inversely proportional to the mass
    assert np.linalg.norm(d) == pytest.approx(1.0)
    assert d[0, 2] / d[1, 2] == pytest.approx(-m2 / m1, rel=1e-10)
    # IR: charges ±q moving along the bond; dμ/dQ = q·(1/m1 + 1/m2)·sqrt(μ)
    q = 0.7
    born = np.stack([q * np.eye(3), -q * np.eye(3)])
    inten = ir_intensities(born, res, [m1, m2])
    expect_ir = (q * (1 / m1 + 1 / m2) * np.sqrt(mu)) ** 2
    assert inten[0] == pytest.approx(expect_ir, rel=1e-10)


def test_rigid_body_ranks():
    bent = molecule("H2O")
    assert rigid_body_vectors(bent.positions, bent.get_masses(), False).shape[1] == 6
    lin = molecule("CO2")
    assert rigid_body_vectors(lin.positions, lin.get_masses(), False).shape[1] == 5
    assert rigid_body_vectors(bent.positions, bent.get_masses(), True).shape[1] == 3


def test_hessian_symmetric_and_matches_fd(pot, relaxed):
    m = relaxed.copy()
    m.rattle(0.02, seed=0)
    h = pot.hessian(m).reshape(3 * len(m), 3 * len(m))
    np.testing.assert_allclose(h, h.T, atol=1e-10)
    step, fd = 2e-3, np.zeros_like(h)  # 5-point stencil: truncation O(step⁴)
    for k in range(3 * len(m)):
        f = []
        for mult in (2, 1, -1, -2):
            b = m.copy()
            b.positions[k // 3, k % 3] += mult * step
            f.append(pot.predict(b)["forces"].reshape(-1))
        fd[k] = -(-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * step)
    assert np.abs(h - fd).max() < 1e-6


def test_frequencies_match_ase_vibrations(pot, relaxed, tmp_path):
    m = relaxed.copy()
    res, _ = vibrational_analysis(pot, m)
    full, _ = vibrational_analysis(pot, m, project=False)
    m.calc = TACECalculator(pot)
    vib = Vibrations(m, name=str(tmp_path / "vib"), delta=0.002, nfree=4)
    vib.run()
    raw = np.asarray(vib.get_frequencies(), complex)
    ase_f = np.where(np.abs(raw.imag) > 0, -np.abs(raw.imag), raw.real)
    np.testing.assert_allclose(np.sort(full.frequencies), np.sort(ase_f), atol=1.0)
    np.testing.assert_allclose(res.frequencies, np.sort(ase_f)[-len(res.frequencies) :], atol=1.0)
    assert len(res.frequencies) == 3 * len(m) - 6 and res.num_imaginary == 0
    assert res.zpe == pytest.approx(0.5 * np.sum(np.real(res.energies)), rel=1e-12)
    assert "Zero-point energy" in res.summary()


def test_gamma_phonons(pot, tmp_path):
    si = MorsePotential(atomic_numbers=(14,), cutoff=4.0, dtype="float64", depth=1.0, r0=2.35)
    a = bulk("Si", "diamond", 5.43, cubic=True)
    res, h = vibrational_analysis(si, a)
    assert res.periodic and res.num_projected == 3 and len(res.frequencies) == 21
    full = harmonic_analysis(h, a.get_masses(), periodic=True, project=False)
    assert np.sum(np.abs(full.frequencies) < 1e-3) >= 3  # acoustic modes at Γ
    a.calc = TACECalculator(si)
    vib = Vibrations(a, name=str(tmp_path / "ph"), delta=0.002, nfree=4)
    vib.run()
    ase_f = np.sort(np.real(vib.get_frequencies()))
    np.testing.assert_allclose(res.frequencies, ase_f[3:], atol=1.0)


def test_spectrum(tmp_path, relaxed, pot):
    res, _ = vibrational_analysis(pot, relaxed)
    grid = np.linspace(0, 20000, 200001)
    dos = lorentzian_spectrum(res.frequencies, grid, width=5.0)
    assert np.trapezoid(dos, grid) == pytest.approx(len(res.frequencies), rel=2e-3)
    path = plot_spectrum(res, tmp_path / "spec.png", width=20.0)
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs():
    with pytest.raises(ValueError, match="hessian must be"):
        harmonic_analysis(np.zeros((4, 4)), [1.0])
    with pytest.raises(ValueError, match="masses"):
        harmonic_analysis(np.zeros((6, 6)), [1.0], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="positions"):
        harmonic_analysis(np.zeros((6, 6)), [1.0, 1.0])
    Atoms()  # keep the import used
