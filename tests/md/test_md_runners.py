"""MD runners (stand-in Morse potential, float64): conservation, thermostats, NPT with
neighbour-list reallocation, agreement with ASE, batched replicas, outputs."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import units
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from tace_jax.calculator import TACECalculator
from tace_jax.md import Simulation, TrajectoryWriter, initial_momenta, run_md
from tace_jax.testing import MorsePotential


@pytest.fixture(scope="module")
def pot():
    return MorsePotential(atomic_numbers=(1, 6, 8), cutoff=4.0, dtype="float64", r0=1.1)


@pytest.fixture(scope="module")
def si_pot():
    return MorsePotential(
        atomic_numbers=(14,), cutoff=4.0, dtype="float64", depth=1.0, r0=2.35, alpha=1.2
    )


@pytest.fixture(scope="module")
def water(pot):
    m = molecule("H2O")
    m.calc = TACECalculator(pot)
    BFGS(m, logfile=None).run(fmax=1e-5, steps=300)
    m.calc = None
    return m


def test_nve_conserves_energy(pot, water):
    sim = Simulation(pot, water, ensemble="nve", timestep=0.5, temperature=300.0, seed=1)
    obs = sim.run(400, log_interval=50, progress=False)
    etot = np.array([o["etot"] for o in obs])
    assert len(obs) == 9 and obs[-1]["step"] == 400
    assert np.ptp(etot) / len(water) < 1e-4
    assert obs[0]["temperature"] == pytest.approx(300.0, rel=1e-6)


def _mic(d, cell):
    f = d @ np.linalg.inv(cell)
    return (f - np.round(f)) @ cell


@pytest.mark.parametrize("system", ["molecule", "periodic"])
def test_matches_ase_velocity_verlet(pot, si_pot, water, system):
    """Same start, 100 steps: jax-md runner and ASE VelocityVerlet with our calculator."""
    if system == "molecule":
        atoms, p = water.copy(), pot
    else:
        atoms, p = bulk("Si", "diamond", 5.43, cubic=True), si_pot
        atoms.rattle(0.05, seed=4)
    atoms.set_momenta(initial_momenta(atoms, 500.0, seed=3))
    sim = Simulation(p, atoms, ensemble="nve", timestep=1.0, seed=3)
    sim.run(100, log_interval=100, progress=False)
    jx = sim.get_atoms()
    ref = atoms.copy()
    ref.calc = TACECalculator(p)
    VelocityVerlet(ref, timestep=1.0 * units.fs).run(100)
    d = jx.get_positions() - ref.get_positions()
    if system == "periodic":
        d = _mic(d, atoms.cell.array)
    assert np.abs(d).max() < 1e-8
    np.testing.assert_allclose(jx.get_velocities(), ref.get_velocities(), rtol=0, atol=1e-8)
    assert np.abs(ref.get_positions() - atoms.get_positions()).max() > 1e-2  # atoms moved


@pytest.mark.parametrize("ensemble", ["nvt", "langevin"])
def test_thermostats(pot, water, ensemble):
    sim = Simulation(pot, water, ensemble=ensemble, temperature=300.0, tau_t=10.0, friction=0.05)
    obs = sim.run(200, log_interval=100, progress=False)
    temps = np.array([o["temperature"] for o in obs])
    assert np.all(np.isfinite(temps)) and temps.max() < 3000
    if ensemble == "nvt":  # the extended Hamiltonian is conserved
        h = np.array([o["conserved"] for o in obs])
        assert np.ptp(h) < 1e-3


def test_overflow_redoes_chunk(si_pot):
    """A tight list overflows in a hot crystal: the chunk is redone from its start with a
    reallocated list, so the trajectory equals one run with ample capacity from the start."""
    a = bulk("Si", "diamond", 5.43, cubic=True)
    kw = dict(ensemble="nve", temperature=3000.0, timestep=1.0, seed=0)
    tight = Simulation(si_pot, a, capacity_multiplier=1.0, **kw)
    tight.run(20, log_interval=20, progress=False)
    ample = Simulation(si_pot, a, capacity_multiplier=3.0, **kw)
    ample.run(20, log_interval=20, progress=False)
    assert tight.reallocations >= 1 and ample.reallocations == 0
    np.testing.assert_allclose(
        tight.get_atoms().get_positions(), ample.get_atoms().get_positions(), atol=1e-12
    )
    final = tight.get_atoms()
    assert final.get_potential_energy() == pytest.approx(si_pot.predict(final)["energy"], abs=1e-9)


@pytest.mark.slow
def test_npt_compression_reallocates(si_pot):
    """High pressure shrinks the cell below 2·(cutoff + skin): the list overflows, is
    reallocated with the image back end, and the energies stay exact."""
    a = bulk("Si", "diamond", 5.43, cubic=True).repeat(2)
    sim = Simulation(si_pot, a, ensemble="npt", pressure=30.0, tau_p=20.0, tau_t=20.0, timestep=1)
    assert type(sim.nbrs).__name__ == "NeighborList"
    obs = sim.run(150, log_interval=75, progress=False)
    assert obs[-1]["volume"] < 0.8 * obs[0]["volume"]
    assert sim.reallocations >= 1
    assert type(sim.nbrs).__name__ == "ImageNeighborList"
    final = sim.get_atoms()
    ref = si_pot.predict(final)
    assert final.get_potential_energy() == pytest.approx(ref["energy"], abs=1e-8)
    assert obs[-1]["epot"] == pytest.approx(ref["energy"], abs=1e-8)
    np.testing.assert_allclose(final.get_forces(), ref["forces"], atol=1e-8)


def test_replicas_match_single_runs(pot, water):
    reps = Simulation(pot, [water, water], ensemble="nve", temperature=300.0, seed=5)
    reps.run(50, log_interval=50, progress=False)
    one = Simulation(pot, water, ensemble="nve", temperature=300.0, seed=6)
    one.run(50, log_interval=50, progress=False)
    np.testing.assert_allclose(
        reps.get_atoms(1).get_positions(), one.get_atoms().get_positions(), atol=1e-10
    )
    assert reps.history[-1][1]["etot"] == pytest.approx(one.history[-1]["etot"], abs=1e-10)
    assert not np.allclose(reps.get_atoms(0).get_positions(), reps.get_atoms(1).get_positions())
    with pytest.raises(ValueError, match="replica 1 differs"):
        Simulation(pot, [water, molecule("CO")])


def test_outputs(pot, water, tmp_path):
    traj = tmp_path / "md.extxyz"
    log = tmp_path / "md.log"
    sim = Simulation(pot, water, ensemble="nvt", temperature=200.0)
    sim.run(40, log_interval=10, traj_interval=20, trajectory=traj, logfile=log, progress=True)
    frames = ase.io.read(traj, index=":")
    assert len(frames) == 3  # steps 0, 20, 40
    assert frames[-1].get_potential_energy() == pytest.approx(sim.history[-1]["epot"])
    lines = [ln for ln in log.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 5 and len(lines[0].split()) == 9
    with TrajectoryWriter(tmp_path / "md.traj") as w:  # ASE .traj output
        w.write(sim.get_atoms())
    back = ase.io.read(tmp_path / "md.traj")
    np.testing.assert_allclose(back.get_velocities(), sim.get_atoms().get_velocities())


def test_md_demo_metrics(pot, water):
    out = run_md(pot, water, 60, ensemble="nve", temperature=300.0, log_interval=3)
    assert out["stable"] and out["steps"] == 60 and out["num_atoms"] == 3
    assert out["conserved_drift_ev_per_atom"] < 1e-3
    assert out["atom_steps_per_s"] > 0
