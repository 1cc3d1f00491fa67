"""NPT with a Latent Ewald Summation potential (docs/theory.md §4): the static k-grid of the MD
runner.

* a cell that moves within the grid (NPT, 10 % headroom) never recompiles the chunk: the
  energy function is not traced again and the grid stays;
* a cell that outgrows the grid regrows it (an INFO log line "reallocating"), recompiles once,
  redoes the chunk, and the energies afterwards equal an eager evaluation on the grid the final
  cell needs (no k-vector was dropped);
* NVT with a fixed cell and molecules bind the grid once (``()`` for molecules).

The stand-in potential is the Morse test double plus the LES energy of fixed per-element
charges, so compilation is cheap; a slow test runs a real TACE model with ``les=True``.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk, molecule

from tace_jax.md import Simulation
from tace_jax.ops import ewald_kgrid, latent_ewald_graph
from tace_jax.testing import MorsePotential
from tace_jax.testing.morse import morse_apply


class LESMorse(MorsePotential):
    """Morse + LES of fixed charges per element; counts how often its energy is traced."""

    def __init__(self, charges, dl: float = 2.0, **kw):
        super().__init__(**kw)
        self.config = SimpleNamespace(les=True, les_dl=float(dl))
        q_table = jnp.asarray(charges, self.dtype)
        self.traces = 0
        self.grids: list = []

        def apply_fn(variables, graph, edge_vecs=None, les_kgrid=None, les_molecules=True):
            self.traces += 1  # one trace per compilation of a function that calls it
            self.grids.append(les_kgrid)
            if les_kgrid is None:
                raise ValueError("LESMorse: the k-grid must be bound (static)")
            out = morse_apply(variables, graph, edge_vecs)
            q = jnp.where(graph.node_mask, q_table[graph.species], 0.0)
            pbc = graph.pbc if les_kgrid else np.zeros((graph.num_graphs, 3), bool)  # host
            e = latent_ewald_graph(
                q, graph.positions, graph.cell, pbc, graph.node_graph, graph.node_mask,
                graph.num_graphs, les_kgrid or None, dl=self.config.les_dl,
                molecules=les_molecules,
            )  # fmt: skip
            return {**out, "energy": out["energy"] + e}

        self.apply_fn = apply_fn


def _pot(dl: float = 2.0) -> LESMorse:
    return LESMorse(
        charges=[-0.3, 0.3], dl=dl, atomic_numbers=(6, 14), cutoff=4.0, dtype="float64",
        depth=1.0, r0=2.35, alpha=1.2,
    )  # fmt: skip


def _crystal():
    return bulk("SiC", "zincblende", a=5.43, cubic=True)  # 8 atoms, the Si lattice


def _eager_energy(pot, atoms) -> float:
    """Energy of ``atoms`` on the grid its own cell needs (no headroom), eagerly."""
    g = pot.graph(atoms)
    grid = ewald_kgrid(atoms.cell.array, pot.config.les_dl)
    return float(pot.apply_fn(pot.variables, g, les_kgrid=grid, les_molecules=False)["energy"][0])


@pytest.mark.slow  # ~25 s CPU: compiles a chunk and the NPT observables (pressure)
def test_npt_within_grid_does_not_recompile():
    pot, atoms = _pot(), _crystal()
    # near the double's own pressure at a = 5.43 Å (about -6.6 GPa), a slow barostat
    sim = Simulation(pot, atoms, ensemble="npt", temperature=300.0, pressure=-6.6, tau_p=400.0,
                     tau_t=20.0, timestep=1.0, seed=3)  # fmt: skip
    grid = sim.les_kgrid
    assert grid == ewald_kgrid(atoms.cell.array, 2.0, headroom=0.1) == (2, 2, 2)
    obs = sim.run(40, log_interval=20, progress=False)
    traced = pot.traces
    assert all(g == grid for g in pot.grids)  # every trace used the bound grid
    more = sim.run(40, log_interval=20, progress=False)
    vols = [o["volume"] for o in obs + more]
    assert np.ptp(vols) > 1e-3 * vols[0]  # the cell did move ...
    assert pot.traces == traced  # ... without a new trace (no recompilation)
    assert sim.les_kgrid == grid and sim.les_reallocations == 0
    final = sim.get_atoms()
    assert more[-1]["epot"] == pytest.approx(_eager_energy(pot, final), abs=1e-9)


@pytest.mark.slow  # ~55 s CPU: compiles twice (before and after the regrowth)
def test_npt_outgrown_grid_reallocates(caplog):
    # dl just above L/3: the initial cell needs 2 k-points per axis, 0.05 % growth needs 3
    atoms = _crystal()
    pot = _pot(dl=5.43 / 2.9985)
    sim = Simulation(pot, atoms, ensemble="npt", temperature=300.0, pressure=-9.0, tau_p=400.0,
                     tau_t=20.0, timestep=1.0, seed=1, les_headroom=0.0)  # fmt: skip
    assert sim.les_kgrid == (2, 2, 2)
    with caplog.at_level(logging.INFO, logger="tace_jax"):
        obs = sim.run(60, log_interval=20, progress=False)
    assert obs[-1]["volume"] > obs[0]["volume"] * 1.002  # the tension expands the cell
    assert sim.les_reallocations >= 1
    assert all(g >= 3 for g in sim.les_kgrid)
    assert "reallocating" in caplog.text and "(2, 2, 2)" in caplog.text
    final = sim.get_atoms()
    assert ewald_kgrid(final.cell.array, pot.config.les_dl) <= sim.les_kgrid
    assert obs[-1]["epot"] == pytest.approx(_eager_energy(pot, final), abs=1e-9)
    assert sim.les_reallocations == sum(g == sim.les_kgrid for g in set(pot.grids)) == 1


@pytest.mark.slow  # ~30 s CPU: two simulations
def test_fixed_cell_and_molecule_bind_grid_once():
    pot = _pot()
    sim = Simulation(pot, _crystal(), ensemble="nvt", temperature=300.0, seed=0)
    sim.run(20, log_interval=10, progress=False)
    traced = pot.traces
    sim.run(20, log_interval=10, progress=False)
    assert pot.traces == traced and set(pot.grids) == {(2, 2, 2)}
    mol_pot = _pot()
    m = molecule("CH4")
    m.numbers[0] = 14  # a SiH4-like, only elements of the double
    m.numbers[1:] = 6
    m.positions *= 1.6
    mol = Simulation(mol_pot, m, ensemble="nve", temperature=100.0, timestep=0.5, seed=0)
    obs = mol.run(10, log_interval=10, progress=False)
    assert mol.les_kgrid is None and set(mol_pot.grids) == {()}
    assert np.isfinite(obs[-1]["epot"])


@pytest.mark.slow  # compiles a TACE model with LES (~1 min on 2 shared cores)
def test_tace_les_model_npt():
    import jax

    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    cfg = TACEConfig(atomic_numbers=(6, 14), cutoff=3.0, num_layers=1, num_channel=4,
                     lmax_node=1, lmax_edge=1, radial_hidden=(8,), readout_hidden=(4,),
                     zbl=False, les=True, les_output_scale=0.3)  # fmt: skip
    stats = Statistics(np.zeros((1, 2)), np.ones((1, 2)), np.zeros((1, 2)), 4.0)
    pot = Potential.init(cfg, stats, jax.random.key(0), dtype="float64")
    sim = Simulation(pot, _crystal(), ensemble="npt", temperature=300.0, tau_p=50.0,
                     timestep=0.5, seed=0)  # fmt: skip
    sim.run(10, log_interval=10, progress=False)
    final = sim.get_atoms()
    ref = pot.predict(final, properties=("energy",))
    assert final.get_potential_energy() == pytest.approx(float(ref["energy"]), abs=1e-8)
    assert sim.les_kgrid is not None and sim.les_reallocations == 0


def test_traced_grid_rule_matches_ewald_kgrid(rng):
    """The in-chunk rule (jax-md box, columns) equals the host rule on the cell (rows)."""
    fake = SimpleNamespace(les_kgrid=(2, 2, 2), les_dl=1.7)
    for _ in range(20):
        cell = np.diag(rng.uniform(3.0, 14.0, 3)) + rng.uniform(-1.5, 1.5, (3, 3))
        traced = Simulation._les_need(fake, jnp.asarray(cell.T))
        assert tuple(int(v) for v in traced) == ewald_kgrid(cell, 1.7)
    assert not np.any(Simulation._les_need(SimpleNamespace(les_kgrid=None), np.eye(3)))


def test_mixed_pbc_rejected():
    slab = _crystal()
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match=r"LES needs pbc all True or all False.*False\]"):
        Simulation(_pot(), slab, ensemble="nve")
