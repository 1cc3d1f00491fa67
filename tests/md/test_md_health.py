"""MD health checks (stand-in Morse potential, float64): each check fires on a crafted case
and can be switched off, a healthy run is bit-for-bit the same with the checks on or off, and
float32 MD prints no float64-truncation warnings."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from ase import units
from ase.build import bulk, molecule

from tace_jax.md import MDConfig, Simulation, SimulationUnstable
from tace_jax.testing import MorsePotential


@pytest.fixture(scope="module")
def pot():
    return MorsePotential(atomic_numbers=(1, 6, 8), cutoff=4.0, dtype="float64", r0=1.1)


@pytest.fixture
def allow_nans():
    """The NaN case must reach the health check (tests run with ``jax_debug_nans``)."""
    old = jax.config.jax_debug_nans, jax.config.jax_debug_infs
    jax.config.update("jax_debug_nans", False)
    jax.config.update("jax_debug_infs", False)
    yield
    jax.config.update("jax_debug_nans", old[0])
    jax.config.update("jax_debug_infs", old[1])


@pytest.fixture(scope="module")
def relaxed(pot):
    from ase.optimize import BFGS

    from tace_jax.calculator import TACECalculator

    m = molecule("CH3CH2OH")
    m.calc = TACECalculator(pot)
    BFGS(m, logfile=None).run(fmax=1e-4, steps=300)
    m.calc = None
    return m


def _ethanol(fast_atom=None, speed=0.6):
    """Ethanol; ``fast_atom`` gets ``speed`` Å/fs along x (NaN for ``speed=nan``)."""
    a = molecule("CH3CH2OH")
    if fast_atom is not None:
        v = np.zeros((len(a), 3))
        v[fast_atom, 0] = speed / units.fs
        a.set_velocities(v)
    return a


CASES = {  # name: (structure, options, expected message, options that switch it off)
    "non-finite": (
        lambda: _ethanol(3, np.nan),
        dict(ensemble="nve"),
        "non-finite position check failed at step 1: atom 3 has a non-finite value",
        dict(check_finite=False),
    ),
    "displacement": (
        lambda: _ethanol(4),
        dict(ensemble="nve", timestep=0.5),
        "displacement check failed at step 1: one-step displacement = 0.3 Å exceeds the "
        "limit 0.25 Å (worst: atom 4)",
        dict(max_displacement=None, max_temperature=None),
    ),
    "temperature": (
        _ethanol,
        dict(ensemble="nvt", temperature=300.0, init_temperature=5000.0),
        "temperature check failed at step 1: temperature = ",
        dict(max_temperature=None),
    ),
    "energy drift": (
        _ethanol,
        dict(ensemble="nve", temperature=300.0, max_energy_drift=1e-12),
        "energy drift check failed at step 1: |H - H(start)|/N = ",
        dict(max_energy_drift=None),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_fires_and_can_be_disabled(pot, case, allow_nans):
    build, opts, message, off = CASES[case]
    sim = Simulation(pot, build(), log_interval=5, seed=2, **opts)
    with pytest.raises(SimulationUnstable) as info:
        sim.run(10, progress=False)
    err = info.value
    assert message in str(err) and "last healthy step 0" in str(err)
    assert err.check.startswith(case) and err.step == 1 and sim.step == 0
    assert err.atoms.info["md_step"] == 0 and np.all(np.isfinite(err.atoms.positions))
    np.testing.assert_array_equal(err.atoms.positions, build().positions)  # the start frame
    quiet = Simulation(pot, build(), log_interval=5, seed=2, **(opts | off))
    quiet.run(10, progress=False)
    assert quiet.step == 10


@pytest.mark.slow
def test_npt_volume_check():
    si = MorsePotential(
        atomic_numbers=(14,), cutoff=4.0, dtype="float64", depth=1.0, r0=2.35, alpha=1.2
    )
    a = bulk("Si", "diamond", 5.43, cubic=True)
    opts = dict(ensemble="npt", pressure=50.0, tau_p=20.0, tau_t=20.0, timestep=1.0)
    sim = Simulation(si, a, max_volume_change=1.001, **opts)
    with pytest.raises(SimulationUnstable, match=r"volume change check failed at step \d+: V/V"):
        sim.run(40, log_interval=20, progress=False)
    assert 0 < sim.step < 40
    Simulation(si, a, max_volume_change=None, **opts).run(40, log_interval=20, progress=False)


def test_replica_named(pot):
    sim = Simulation(pot, [_ethanol(), _ethanol(4)], ensemble="nve", timestep=0.5)
    with pytest.raises(SimulationUnstable, match="worst: atom 4 of replica 1"):
        sim.run(5, log_interval=5, progress=False)


@pytest.mark.parametrize("ensemble", ["nve", "langevin"])
def test_healthy_run_bit_for_bit(pot, relaxed, ensemble):
    runs = []
    for on in (True, False):
        cfg = MDConfig(ensemble=ensemble, temperature=300.0, timestep=0.5, health_checks=on)
        sim = Simulation(pot, relaxed, cfg, seed=4)
        obs = sim.run(30, log_interval=10, progress=False)
        runs.append((sim.get_atoms(), obs))
    (a, obs_a), (b, obs_b) = runs
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.get_velocities(), b.get_velocities())
    table = lambda obs: np.array([[o[k] for k in sorted(o)] for o in obs])
    np.testing.assert_array_equal(table(obs_a), table(obs_b))  # NaN == NaN here


def test_config_keys():
    with pytest.raises(ValueError, match="'max_temperature' must be > 0, 'auto' or null"):
        MDConfig(max_temperature=-1.0).validate()
    with pytest.raises(ValueError, match="'max_volume_change' must be > 1"):
        MDConfig(max_volume_change=0.5).validate()


_FLOAT32_MD = """
import warnings
warnings.filterwarnings("error", message=".*Explicitly requested dtype float64.*")
import jax
assert not jax.config.jax_enable_x64
from ase.build import bulk, molecule
from tace_jax.md import Simulation
from tace_jax.testing import MorsePotential
pot = MorsePotential(atomic_numbers=(1, 6, 8), cutoff=4.0, dtype="float32", r0=1.1)
for ens in ("nve", "nvt", "langevin"):
    sim = Simulation(pot, molecule("CH3CH2OH"), ensemble=ens, temperature=300.0)
    sim.run(4, log_interval=2, progress=False)
    sim.get_atoms()
si = MorsePotential(atomic_numbers=(14,), cutoff=4.0, dtype="float32", r0=2.35, alpha=1.2)
sim = Simulation(si, bulk("Si", "diamond", 5.43, cubic=True), ensemble="npt")
sim.run(4, log_interval=2, progress=False)
print("clean")
"""


@pytest.mark.slow  # a fresh subprocess compiling four ensembles (~60-110 s on 2 cores)
def test_float32_md_has_no_float64_warnings():
    """float32 MD without 64-bit JAX (tests enable it, hence a subprocess)."""
    env = dict(os.environ, JAX_ENABLE_X64="0", JAX_PLATFORMS="cpu")
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FLOAT32_MD)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "clean" in res.stdout and "truncated" not in res.stderr
