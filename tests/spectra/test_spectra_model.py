"""Spectra of a real (tiny) TACE field model: harmonic IR intensities against an independent
numpy computation, and MD IR peaks (NVE from the minimum, recorded with ``ResponseRecorder``)
against the harmonic frequencies (issue 10, must-show; ``docs/theory.md §3``).

The model is a random float64 TACE model with an ``electric_field`` embedding on a water
molecule; its energy is scaled by 4 (``Statistics.scale``) so that the relaxed geometry sits in
a basin deep enough for the low-energy MD, with three well separated IR-active modes.
"""

from __future__ import annotations

import ase
import jax
import numpy as np
import pytest
from ase.optimize import BFGS

from tace_jax.calculator import TACECalculator
from tace_jax.inference import Potential
from tace_jax.md import Simulation
from tace_jax.md.recording import ResponseRecorder
from tace_jax.models import Statistics, TACEConfig
from tace_jax.spectra import harmonic_ir, ir_from_dipoles, normal_modes

pytestmark = pytest.mark.slow  # relaxation + Hessian + Z* + a 12k-step MD: ~1 min of CPU

C_CM_PER_S = 2.99792458e10
E_SI, AMU_SI = 1.602176634e-19, 1.66053906660e-27
FIELD = {"electric_field": np.zeros(3)}


@pytest.fixture(scope="module")
def system():
    """``(potential, relaxed water, Hessian [3,3,3,3])``."""
    cfg = TACEConfig(
        atomic_numbers=(1, 8),
        cutoff=3.0,
        num_layers=1,
        correlation=2,
        num_channel=8,
        lmax_node=1,
        lmax_edge=1,
        radial_hidden=(8,),
        zbl=False,
        targets=("energy",),
        equivariant_embeddings=("electric_field",),
    )
    stats = Statistics(np.zeros((1, 2)), np.full((1, 2), 4.0), np.zeros((1, 2)), 1.0)
    pot = Potential.init(cfg, stats, jax.random.key(3), dtype="float64")
    atoms = ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.0]])
    atoms.info["electric_field"] = np.zeros(3)
    atoms.calc = TACECalculator(pot)
    BFGS(atoms, logfile=None).run(fmax=1e-6, steps=2000)
    atoms.calc = None
    return pot, atoms, pot.hessian(atoms, **FIELD)


def test_harmonic_ir_intensities_equal_numpy_with_finite_difference_born_charges(system):
    pot, atoms, hess = system
    freqs, inten = harmonic_ir(pot, atoms, stick=True)
    # Z*_i,ab = ∂P_a/∂x_ib by central differences of the predicted polarization
    x0, eps = atoms.get_positions(), 1e-4
    z = np.zeros((3, 3, 3))
    for i in range(3):
        for b in range(3):
            p = []
            for s in (1.0, -1.0):
                d = atoms.copy()
                x = x0.copy()
                x[i, b] += s * eps
                d.set_positions(x)
                p.append(pot.predict(d, ("polarization",), **FIELD)["polarization"])
            z[i, :, b] = (p[0] - p[1]) / (2 * eps)
    # normal modes: numpy eigh of the mass-weighted Hessian, the 3 stiffest (6 are rigid-body)
    m = np.repeat(atoms.get_masses(), 3)
    lam, vec = np.linalg.eigh(hess.reshape(9, 9) / np.sqrt(np.outer(m, m)))
    lam, vec = lam[-3:], vec[:, -3:]
    nu = np.sqrt(lam * E_SI / (1e-20 * AMU_SI)) / (2 * np.pi * C_CM_PER_S)
    disp = (vec.T / np.sqrt(m)).reshape(3, 3, 3)  # [k, atom, xyz] = e_k,i / √m_i
    expect = [np.sum(np.einsum("iab,ib->a", z, d) ** 2) for d in disp]
    np.testing.assert_allclose(freqs, nu, rtol=1e-6)
    np.testing.assert_allclose(inten, expect, rtol=1e-5)
    assert min(expect) > 1e-3 * max(expect)  # all three modes IR-active


def test_md_ir_peaks_agree_with_the_harmonic_frequencies(system):
    pot, atoms, hess = system
    harm, _ = harmonic_ir(pot, atoms, stick=True, hessian=hess)
    assert len(harm) == 3 and np.all(np.diff(harm) > 0.3 * harm[:-1])  # well separated
    # start at the minimum with 2 µeV of kinetic energy in each internal mode (no rotation)
    modes = normal_modes(hess, atoms.get_masses(), atoms.get_positions())
    v_mw = modes.mass_weighted_modes.T @ np.sqrt(2 * 2e-6 * np.ones(3))
    start = atoms.copy()
    start.set_velocities((v_mw / np.sqrt(np.repeat(atoms.get_masses(), 3))).reshape(3, 3))
    rec = ResponseRecorder(pot, "dipole", every=8, batch_size=250, inputs=FIELD)
    sim = Simulation(pot, start, ensemble="nve", temperature=0.0, timestep=0.25, inputs=FIELD)
    obs = sim.run(12000, log_interval=2000, progress=False, recorder=rec)
    assert abs(obs[-1]["conserved"] - obs[0]["conserved"]) < 0.05 * 6e-6  # Verlet: ≲ 1 %
    dip = rec.compute()["dipole"]
    freqs, spec = ir_from_dipoles(dip, rec.dt_fs, max_frequency_cm=1.5 * harm.max())
    inner = np.flatnonzero((spec[1:-1] > spec[:-2]) & (spec[1:-1] >= spec[2:])) + 1
    peaks = np.sort(freqs[inner[np.argsort(spec[inner])[::-1][:3]]])
    np.testing.assert_allclose(peaks, harm, rtol=0.02, err_msg=f"MD {peaks} harmonic {harm}")
