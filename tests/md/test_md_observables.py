"""Differentiable observables: RDF peak and normalisation, MSD with unwrapping, pressure against
the runner's, weighted time averages, dipole autocorrelation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import units
from ase.build import bulk

from tace_jax.md import Simulation, md_system
from tace_jax.md.observables import (
    autocorrelation,
    dipole,
    dipole_autocorrelation,
    msd,
    pressure,
    rdf,
    time_average,
    unwrap,
)
from tace_jax.testing import MorsePotential, assert_equivariant


def test_rdf_peak_normalisation_and_gradient():
    atoms = bulk("Si", "diamond", 5.43, cubic=True).repeat(2)
    box = jnp.asarray(atoms.cell.array.T)
    r, g = rdf(jnp.asarray(atoms.get_positions()), box, r_max=5.0, bins=200, sigma=0.05)
    first = jnp.argmax(jnp.where(r < 3.0, g, 0.0))
    assert abs(float(r[first]) - 5.43 * np.sqrt(3) / 4) < 0.03  # first shell 2.35 Å
    # ∫ ρ g 4πr² dr over the first shell = 4 neighbours (ρ = (N−1)/V: g → 1 far away)
    rho = (len(atoms) - 1) / atoms.get_volume()
    shell = (r > 2.0) & (r < 3.0)
    count = jnp.sum(jnp.where(shell, rho * g * 4 * jnp.pi * r**2, 0.0)) * (r[1] - r[0])
    np.testing.assert_allclose(count, 4.0, rtol=1e-3)
    # smooth binning: a finite, non-zero derivative w.r.t. the positions
    grad = jax.grad(lambda x: rdf(x, box, 5.0, 50)[1][20])(
        jnp.asarray(atoms.rattle(0.05) or atoms.get_positions())
    )
    assert np.all(np.isfinite(grad)) and float(jnp.max(jnp.abs(grad))) > 0


def test_msd_unwraps_and_time_average():
    box = 4.0 * jnp.eye(3)
    t = jnp.arange(30.0)
    v = jnp.array([[0.3, 0.0, 0.0], [0.0, -0.2, 0.1]])
    free = t[:, None, None] * v[None]  # ballistic, crosses the cell
    wrapped = jnp.mod(free, 4.0)
    np.testing.assert_allclose(unwrap(wrapped, box) - wrapped[:1], free - free[:1], atol=1e-12)
    expect = t**2 * jnp.mean(jnp.sum(v**2, -1))
    np.testing.assert_allclose(msd(wrapped, box), expect, rtol=1e-12, atol=1e-12)
    x = jnp.arange(10.0)
    assert float(time_average(x, discard=4)) == pytest.approx(6.5)
    w = jnp.where(x > 7, 1.0, 0.0)
    assert float(time_average(x, weights=w)) == pytest.approx(8.5)


@pytest.mark.slow
def test_pressure_matches_runner():
    pot = MorsePotential(atomic_numbers=(14,), cutoff=4.0, dtype="float64", r0=2.3)
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.03, seed=2)
    sim = Simulation(pot, atoms, temperature=300.0)
    s = md_system(pot, atoms)
    nbrs = s.neighbor_fn.allocate(s.positions)
    st = sim.state
    p = pressure(s.energy_fn, st.position, nbrs, s.box, st.momentum, st.mass)
    np.testing.assert_allclose(p / units.GPa, sim.observe()["pressure_gpa"], rtol=1e-10)
    with pytest.raises(ValueError, match="box"):
        pressure(s.energy_fn, st.position, nbrs, None)


def test_dipole_autocorrelation_direct_sum_unwrap_gradient_equivariance(key):
    """FFT autocorrelation = the direct sum over origins; wrapping does not change the dipole
    autocorrelation (unwrapped first); its position gradient = FD; dipole is a vector."""
    rng = np.random.default_rng(0)
    box = 5.0 * jnp.eye(3)
    steps = jnp.asarray(rng.normal(0.0, 0.3, (40, 4, 3)))
    free = 2.5 + jnp.cumsum(steps, axis=0)  # a random walk that leaves the cell
    q = jnp.array([0.8, -0.8, 0.4, -0.4])
    m = np.asarray(dipole(free, q))
    dm = m - m.mean(0)
    direct = np.array([np.mean(np.sum(dm[: 40 - k] * dm[k:], -1)) for k in range(15)])
    c = dipole_autocorrelation(jnp.mod(free, 5.0), q, box, max_lag=15)
    np.testing.assert_allclose(c, direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(autocorrelation(m, 15, subtract_mean=True), direct, rtol=1e-12)
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(m, 41)
    f = lambda x: dipole_autocorrelation(x, q, max_lag=5, unwrapped=True)[3]
    g = jax.grad(f)(free)
    e = jnp.zeros_like(free).at[7, 2, 1].set(1.0)
    fd = (f(free + 1e-6 * e) - f(free - 1e-6 * e)) / 2e-6
    np.testing.assert_allclose(g[7, 2, 1], fd, rtol=1e-6)
    assert abs(float(g[7, 2, 1])) > 1e-4
    assert_equivariant(lambda x: dipole(x, q), key, (free[0],), (1,), 1)
    # the autocorrelation of a vector is invariant
    assert_equivariant(lambda x: autocorrelation(x, 5), key, (m,), (1,), 0)
