"""MD at fixed model inputs: a constant external electric field through ``graph.extras``
(charged Morse test double, float64), the protocol, and the one MD configuration."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import molecule

from tace_jax.cli.md import MDRunConfig
from tace_jax.inference._adapter import model_parts
from tace_jax.md import MDConfig, PotentialProtocol, Simulation, make_integrator, md_system
from tace_jax.testing import MorsePotential

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"
FIELD = np.array([0.02, -0.01, 0.03])  # V/Å
CHARGES = {1: 0.4, 6: 0.1, 8: -0.8}  # e per element


@pytest.fixture(scope="module")
def charged():
    zs = (1, 6, 8)
    return MorsePotential(zs, cutoff=4.0, dtype="float64", r0=1.1, charges=[CHARGES[z] for z in zs])


def _forces(system, R=None, **kw):
    R = system.positions if R is None else R
    nbrs = system.neighbor_fn.allocate(R)
    return -np.asarray(jax.grad(lambda x: system.energy_fn(x, neighbor=nbrs, **kw))(R))


def test_field_adds_q_times_field_to_forces(charged):
    atoms = molecule("H2O")
    q = np.array([CHARGES[z] for z in atoms.numbers])
    f0 = _forces(md_system(charged, atoms))
    field = md_system(charged, atoms, electric_field=FIELD)
    f1 = _forces(field)
    np.testing.assert_allclose(f1 - f0, q[:, None] * FIELD[None, :], rtol=0, atol=1e-12)
    # same as the potential's own prediction at that field, and from atoms.info
    np.testing.assert_allclose(
        f1, charged.predict(atoms, electric_field=FIELD)["forces"], atol=1e-12
    )
    atoms.info["electric_field"] = FIELD
    np.testing.assert_allclose(_forces(md_system(charged, atoms)), f1, atol=1e-12)
    assert field.inputs["electric_field"].shape == (1, 3)


def test_field_is_differentiable_input(charged):
    """``energy_fn(..., inputs=...)`` takes traced inputs: −∂E/∂ℰ = Σ q_i x_i (the dipole)."""
    atoms = molecule("H2O")
    s = md_system(charged, atoms)
    nbrs = s.neighbor_fn.allocate(s.positions)
    energy = lambda e: s.energy_fn(s.positions, neighbor=nbrs, inputs={"electric_field": e})
    dip = -jax.grad(energy)(jnp.asarray(FIELD))
    q = np.array([CHARGES[z] for z in atoms.numbers])
    np.testing.assert_allclose(dip, q @ atoms.get_positions(), atol=1e-12)


def test_constant_field_md_drifts_a_charged_molecule(charged):
    """NVE under a constant field: a charged molecule at rest gains the momentum Q·ℰ·t and its
    centre of mass moves by Q·ℰ·t²/(2M) (internal forces cancel; velocity Verlet is exact for
    a constant force)."""
    atoms = molecule("CO")
    q_total = CHARGES[6] + CHARGES[8]
    kw = dict(ensemble="nve", timestep=0.5, init_temperature=0.0, log_interval=20)
    sim = Simulation(charged, atoms, inputs={"electric_field": FIELD}, **kw)
    sim.run(40, progress=False)
    t = 40 * 0.5 * units.fs
    p = np.asarray(sim.state.momentum).sum(axis=0)
    np.testing.assert_allclose(p, q_total * FIELD * t, rtol=1e-9, atol=1e-12)
    moved = sim.get_atoms().get_center_of_mass() - atoms.get_center_of_mass()
    mass = atoms.get_masses().sum()
    np.testing.assert_allclose(moved, q_total * FIELD * t**2 / (2 * mass), rtol=1e-7, atol=1e-12)


def test_inputs_errors_and_warnings(charged):
    atoms = molecule("H2O")
    with pytest.raises(ValueError, match="electric_field"):
        md_system(charged, atoms, electric_field=[0.0, 1.0])
    with pytest.raises(ValueError, match="electric_field"):
        md_system(charged, atoms, electric_field=[0.0, np.nan, 0.0])
    with pytest.raises(TypeError, match="skim"):
        md_system(charged, atoms, skim=0.3)
    plain = MorsePotential((1, 6, 8), cutoff=4.0, dtype="float64")
    with pytest.warns(UserWarning, match="ignored"):
        md_system(plain, atoms, electric_field=FIELD)


def test_protocol_and_triple(charged):
    assert isinstance(charged, PotentialProtocol)
    with pytest.raises(TypeError, match="apply_fn"):
        model_parts(object())
    energy_fn, neighbor_fn, shift_fn = charged.jax_md(molecule("H2O"), electric_field=FIELD)
    assert callable(energy_fn) and callable(shift_fn) and hasattr(neighbor_fn, "allocate")


def test_one_md_config(charged):
    cfg = MDConfig(ensemble="nvt", temperature=200.0, tau_t=20.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.temperature = 1.0
    sim = Simulation(charged, molecule("H2O"), cfg, seed=3)
    assert sim.config == dataclasses.replace(cfg, seed=3)
    integ = make_integrator(sim.system, cfg)
    assert integ.ensemble == "nvt_nose_hoover" and integ.kT == pytest.approx(200.0 * units.kB)
    with pytest.raises(TypeError, match="unknown MD option"):
        Simulation(charged, molecule("H2O"), tau=1.0)
    with pytest.raises(ValueError, match="'timestep' must be > 0"):
        Simulation(charged, molecule("H2O"), timestep=0.0)
    run = MDRunConfig(model="m.tace", structure="s.xyz", temperature=250.0)
    assert isinstance(run, MDConfig) and run.md_config().temperature == 250.0
    assert run.md_config().ensemble == "nvt"


@pytest.mark.parametrize("system", ["hcooh", pytest.param("si8", marks=pytest.mark.slow)])
def test_field_model_energy_function_matches_fixture(system):
    """The real field-embedding model (fixture ``tace_field_dev``) through ``Potential.jax_md``
    at the system's field: energy ≤ 1e-10 and forces ≤ 1e-9 from the reference."""
    from tace_jax.inference import Potential

    pot = Potential.from_reference(
        FIXTURES / "tace_field_dev.npz", FIXTURES / "tace_field_dev.json", dtype="float64"
    )
    assert "electric_field" in pot.input_names
    ref = np.load(FIXTURES / "tace_field_dev.npz")
    get = lambda k: ref[f"{system}/{k}"]
    atoms = Atoms(get("numbers"), positions=get("positions"), cell=get("cell"), pbc=get("pbc"))
    field = get("electric_field")[0]
    assert np.abs(field).max() > 0
    inputs = {"electric_field": field, "charges": get("charges")}  # charges: direct dipole
    energy_fn, neighbor_fn, _ = pot.jax_md(atoms, **inputs)
    R = jnp.asarray(atoms.get_positions())
    nbrs = neighbor_fn.allocate(R)
    e, g = jax.jit(jax.value_and_grad(lambda x: energy_fn(x, neighbor=nbrs)))(R)
    assert abs(float(e) - float(np.ravel(get("energy"))[0])) <= 1e-10
    np.testing.assert_allclose(-np.asarray(g), get("forces"), rtol=0, atol=1e-9)
    e0 = pot.jax_md(atoms, charges=get("charges"))[0](R, neighbor=nbrs)  # zero field (default)
    assert abs(float(e0) - float(e)) > 1e-8
