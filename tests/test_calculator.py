"""ASE calculator: values, Voigt stress sign, and use with ASE optimisers, MD, vibrations, NEB."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from ase.mep import NEB
from ase.optimize import BFGS
from ase.vibrations import Vibrations

from tace_jax.calculator import TACECalculator, full_3x3_to_voigt
from tace_jax.testing import MorsePotential


@pytest.fixture(scope="module")
def pot():
    return MorsePotential(atomic_numbers=(1, 6, 8, 14), cutoff=4.0, dtype="float64", r0=1.2)


def test_values_and_dtype(pot):
    m = molecule("CH3OH")
    m.rattle(0.05, seed=0)
    m.calc = TACECalculator(pot)
    ref = pot.predict(m)
    assert m.get_potential_energy() == pytest.approx(ref["energy"], abs=1e-12)
    assert m.get_potential_energy(force_consistent=True) == pytest.approx(ref["energy"])
    np.testing.assert_allclose(m.get_forces(), ref["forces"], atol=1e-12)
    assert m.get_potential_energies().sum() == pytest.approx(ref["energy"], abs=1e-10)
    with pytest.raises(PropertyNotImplementedError):
        m.get_stress()
    calc32 = TACECalculator(pot, dtype="float32")
    assert calc32.potential.dtype == "float32" and pot.dtype == "float64"
    m.calc = calc32
    assert m.get_potential_energy() == pytest.approx(ref["energy"], abs=1e-4)


def test_stress_voigt_ase_sign(pot):
    a = bulk("Si", "diamond", 5.43, cubic=True)
    a.rattle(0.05, seed=1)
    a.calc = TACECalculator(pot)
    s = a.get_stress()
    assert s.shape == (6,)
    np.testing.assert_allclose(s, full_3x3_to_voigt(pot.predict(a)["stress"]), atol=1e-14)
    # σ = (1/V) ∂E/∂ε: finite differences of the energy under symmetric strain
    h, fd = 1e-5, np.zeros((3, 3))
    cell, pos, vol = a.cell.array.copy(), a.get_positions(), a.get_volume()
    for i in range(3):
        for j in range(3):
            eps = np.zeros((3, 3))
            eps[i, j] = eps[j, i] = h / (1 if i == j else 2)
            e = []
            for sign in (1, -1):
                b = a.copy()
                b.set_cell(cell @ (np.eye(3) + sign * eps), scale_atoms=False)
                b.set_positions(pos @ (np.eye(3) + sign * eps))
                e.append(pot.predict(b)["energy"])
            fd[i, j] = (e[0] - e[1]) / (2 * h) / vol
    np.testing.assert_allclose(s, full_3x3_to_voigt(fd), atol=1e-7)


def test_bfgs_and_md(pot):
    m = molecule("H2O")
    m.calc = TACECalculator(pot)
    opt = BFGS(m, logfile=None)
    assert opt.run(fmax=1e-4, steps=200)
    assert np.abs(m.get_forces()).max() < 1e-4
    m.set_velocities(np.random.default_rng(0).normal(scale=0.01, size=(3, 3)))
    e0 = m.get_total_energy()
    VelocityVerlet(m, timestep=0.25 * units.fs).run(40)
    assert abs(m.get_total_energy() - e0) < 1e-3
    Langevin(m, 0.5 * units.fs, temperature_K=300, friction=0.02, rng=np.random.default_rng(1)).run(
        20
    )
    assert np.isfinite(m.get_potential_energy())


def test_vibrations_and_neb(pot, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = molecule("H2O")
    m.calc = TACECalculator(pot)
    BFGS(m, logfile=None).run(fmax=1e-5, steps=200)
    vib = Vibrations(m, name=str(tmp_path / "vib"), delta=0.005, nfree=4)
    vib.run()
    freqs = np.real(vib.get_frequencies())
    assert np.sum(freqs > 100) == 3
    # NEB between two mirror images of a bent molecule (flip through the linear geometry)
    a = m.copy()
    b = m.copy()
    b.positions[:, 2] *= -1
    images = [a] + [a.copy() for _ in range(3)] + [b]
    for im in images:
        im.calc = TACECalculator(pot)
    neb = NEB(images, method="improvedtangent")
    neb.interpolate()
    BFGS(neb, logfile=None).run(fmax=0.05, steps=30)
    energies = [im.get_potential_energy() for im in images]
    assert max(energies) > energies[0]
