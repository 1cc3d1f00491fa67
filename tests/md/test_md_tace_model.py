"""Dynamics and vibrations with real TACE models.

Default: the tiny reference fixture (``tests/fixtures/tace_tiny_l2``) through jax-md equals
``Potential.predict``. Slow (``-m slow``, run by hand; numbers printed with ``-s``): a model
trained on rMD17 ethanol (``$TACE_JAX_MD_MODEL``, else ``runs/quickstart/model``, else a
300 s quick training with the quickstart config) for energy conservation over 10 ps, jax-md vs
ASE, Hessian vs finite differences, frequencies vs ``ase.vibrations``, neighbour overflow under
compression, and a parameter gradient of a trajectory.
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from ase.vibrations import Vibrations

from tace_jax.calculator import TACECalculator
from tace_jax.md import Simulation, initial_momenta, md_system, nve_rollout, stress_fn
from tace_jax.vib import vibrational_analysis

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


def _tiny():
    from tace_jax.inference import Potential

    npz, js = FIXTURES / "tace_tiny_l2.npz", FIXTURES / "tace_tiny_l2.json"
    return Potential.from_reference(npz, js, dtype="float64")


def _check_against_predict(pot, atoms, expect):
    s = md_system(pot, atoms)
    nbrs = s.neighbor_fn.allocate(s.positions)
    assert type(nbrs).__name__ == expect
    e, g = jax.jit(jax.value_and_grad(s.energy_fn))(s.positions, nbrs)
    ref = pot.predict(atoms)
    assert float(e) == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(-np.asarray(g), ref["forces"], atol=1e-10)
    if atoms.pbc.all():
        st = jax.jit(lambda r, nb: stress_fn(s.energy_fn, r, nb, s.box))(s.positions, nbrs)
        np.testing.assert_allclose(st, ref["stress"], atol=1e-10)


def test_tiny_model_molecule_matches_predict():
    m = molecule("HCOOH")
    m.rattle(0.05, seed=0)
    _check_against_predict(_tiny(), m, "NeighborList")


def test_tiny_model_small_cell_matches_predict():
    si = bulk("Si", "diamond", 5.43, cubic=True)
    si.rattle(0.1, seed=1)
    _check_against_predict(_tiny(), si, "ImageNeighborList")


# ----------------------------------------------------------------------- trained model (slow)
@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    from tace_jax.cli.md import load_potential

    path = os.environ.get("TACE_JAX_MD_MODEL", "runs/quickstart/model")
    if not pathlib.Path(path).exists():
        from tace_jax.main_job import quickstart_config_path
        from tace_jax.train import fit, load_config

        out = tmp_path_factory.mktemp("quick")
        cfg = load_config(quickstart_config_path(), [f"output_dir={out}", "max_time=300"])
        path = fit(cfg).model_path
    print(f"\ntrained model: {path}")
    return load_potential(path, "float64")


def _ethanol():
    m = molecule("CH3CH2OH")
    m.rattle(0.02, seed=0)
    return m


def _ethanol_box(n=2, side=12.0, seed=0):
    """``n³`` ethanol molecules, random orientations, on a grid in a cubic box."""
    rng = np.random.default_rng(seed)
    base = molecule("CH3CH2OH")
    base.positions -= base.get_center_of_mass()
    box = Atoms(cell=np.eye(3) * side, pbc=True)
    for idx in np.ndindex(n, n, n):
        m = base.copy()
        m.rotate(rng.uniform(0, 360), rng.normal(size=3), center=(0, 0, 0))
        m.positions += (np.asarray(idx) + 0.5) * side / n
        box += m
    return box


def _relaxed(pot, atoms, fmax=1e-4):
    a = atoms.copy()
    a.calc = TACECalculator(pot)
    BFGS(a, logfile=None).run(fmax=fmax, steps=2000)
    a.calc = None
    return a


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["molecule", "box"])
def test_trained_nve_drift_10ps(trained, kind):
    atoms = _relaxed(trained, _ethanol() if kind == "molecule" else _ethanol_box(), fmax=0.05)
    sim = Simulation(trained, atoms, ensemble="nve", timestep=0.5, temperature=300.0, seed=0)
    obs = sim.run(20000, log_interval=200, progress=False)  # 10 ps
    etot = np.array([o["etot"] for o in obs])
    t = np.array([o["time_ps"] for o in obs])
    n = len(atoms)
    # drift: change of the mean total energy between the first and the last 0.5 ps (Verlet's
    # bounded O(dt²) fluctuations around the shadow energy are reported separately)
    first, last = etot[(t > 0) & (t <= 0.5)], etot[t >= t[-1] - 0.5]
    drift = abs(last.mean() - first.mean()) / n
    slope = np.polyfit(t[1:], etot[1:], 1)[0] / n
    fluct = np.max(np.abs(etot - etot[0])) / n
    temps = np.array([o["temperature"] for o in obs])
    print(
        f"\n{kind}: {n} atoms, 10 ps NVE float64 dt=0.5 fs: drift {drift:.2e} eV/atom, "
        f"linear trend {slope:.2e} eV/atom/ps, max|E(t)-E(0)|/N {fluct:.2e} eV/atom, "
        f"mean T {temps.mean():.0f} K, {sim.reallocations} reallocations, "
        f"list {type(sim.nbrs).__name__}"
    )
    assert drift < 1e-4 and abs(slope) * 10 < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["molecule", "box"])
def test_trained_jax_md_vs_ase(trained, kind):
    atoms = _ethanol() if kind == "molecule" else _ethanol_box()
    atoms.set_momenta(initial_momenta(atoms, 300.0, seed=1))
    sim = Simulation(trained, atoms, ensemble="nve", timestep=0.5)
    sim.run(100, log_interval=100, progress=False)
    ref = atoms.copy()
    ref.calc = TACECalculator(trained)
    VelocityVerlet(ref, timestep=0.5 * units.fs).run(100)
    d = sim.get_atoms().get_positions() - ref.get_positions()
    if atoms.pbc.any():
        f = d @ np.linalg.inv(atoms.cell.array)
        d = (f - np.round(f)) @ atoms.cell.array
    dv = sim.get_atoms().get_velocities() - ref.get_velocities()
    print(
        f"\n{kind}: 100 steps jax-md vs ASE: max |dx| = {np.abs(d).max():.1e} Å, "
        f"max |dv| = {np.abs(dv).max():.1e}"
    )
    assert np.abs(d).max() < 1e-8 and np.abs(dv).max() < 1e-8


@pytest.mark.slow
def test_trained_hessian_and_frequencies(trained, tmp_path):
    m = _relaxed(trained, _ethanol(), fmax=1e-5)
    res, h = vibrational_analysis(trained, m)
    asym = np.abs(h - h.T).max()
    step, fd = 2e-3, np.zeros_like(h)  # 5-point stencil: truncation O(step⁴)
    for k in range(3 * len(m)):
        f = []
        for mult in (2, 1, -1, -2):
            b = m.copy()
            b.positions[k // 3, k % 3] += mult * step
            f.append(trained.predict(b)["forces"].reshape(-1))
        fd[k] = -(-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * step)
    err = np.abs(h - fd).max()
    m.calc = TACECalculator(trained)
    vib = Vibrations(m, name=str(tmp_path / "vib"), delta=0.002, nfree=4)
    vib.run()
    raw = np.asarray(vib.get_frequencies(), complex)
    ase_f = np.sort(np.where(np.abs(raw.imag) > 0, -np.abs(raw.imag), raw.real))
    dfreq = np.abs(res.frequencies - ase_f[-len(res.frequencies) :]).max()
    print(
        f"\nethanol: Hessian asym {asym:.1e}, |H - FD| max {err:.1e} eV/Å², "
        f"max |ν - ν_ase| {dfreq:.3f} cm^-1, ZPE {res.zpe:.4f} eV, "
        f"ν = {np.round(res.frequencies, 1).tolist()}"
    )
    assert asym < 1e-8 and err < 1e-6 and dfreq < 1.0


@pytest.mark.slow
def test_trained_overflow_under_compression(trained):
    box = _ethanol_box(side=12.0)
    sim = Simulation(
        trained,
        box,
        ensemble="npt",
        pressure=5.0,
        tau_p=50.0,
        tau_t=20.0,
        timestep=0.5,
        capacity_multiplier=1.05,
    )
    start = type(sim.nbrs).__name__
    obs = sim.run(600, log_interval=100, progress=False)
    final = sim.get_atoms()
    ref = trained.predict(final)
    de = abs(final.get_potential_energy() - ref["energy"])
    df = np.abs(final.get_forces() - ref["forces"]).max()
    print(
        f"\ncompression: V {obs[0]['volume']:.0f} -> {obs[-1]['volume']:.0f} Å^3, "
        f"{sim.reallocations} reallocations ({start} -> {type(sim.nbrs).__name__}), "
        f"|E - predict| {de:.1e} eV, |F - predict| {df:.1e} eV/Å"
    )
    assert sim.reallocations >= 1 and de < 1e-8 and df < 1e-8


@pytest.mark.slow
def test_trained_parameter_gradient_of_trajectory(trained):
    m = _ethanol()
    s = md_system(trained, m)
    nbrs = s.neighbor_fn.allocate(s.positions)
    p0 = jnp.asarray(initial_momenta(m, 300.0, seed=2))
    v = s.parts.variables
    rng = np.random.default_rng(0)
    direction = jax.tree_util.tree_map(
        lambda x: (
            jnp.asarray(rng.normal(size=np.shape(x)), x.dtype)
            if jnp.issubdtype(x.dtype, jnp.floating)
            else jnp.zeros_like(x)
        ),
        v,
    )
    f = jax.jit(lambda vv: nve_rollout(s, nbrs, s.positions, p0, 20, variables=vv)["final_ekin"])
    g = jax.grad(f)(v)
    dot = sum(
        jnp.vdot(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(direction))
    )
    h = 1e-6
    shift = lambda e: jax.tree_util.tree_map(lambda a, b: a + e * b, v, direction)
    fd = (f(shift(h)) - f(shift(-h))) / (2 * h)
    print(f"\nd KE(20 steps)/dθ·δ: autodiff {float(dot):.8e}, FD {float(fd):.8e}")
    np.testing.assert_allclose(dot, fd, rtol=1e-5)
