"""``Potential.element_sort``: the element-sorted product basis through predict, the ASE
calculator and jax-md gives the select path's results, with one compile per composition."""

from __future__ import annotations

import ase
import ase.build
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.calculator import TACECalculator
from tace_jax.inference import Potential
from tace_jax.md import md_system
from tace_jax.models import Statistics
from tace_jax.testing.configs import tiny_tace_config

Z = (1, 6, 7, 8)


@pytest.fixture(scope="module")
def pots():
    cfg = tiny_tace_config(Z, num_layers=2, correlation=3, lmax_edge=2, lmax_node=1, cutoff=3.5)
    sorted_pot = Potential.init(cfg, Statistics.default(len(Z)), jax.random.key(7), "float64")
    sorted_pot.variables = jax.tree.map(lambda x: x + 0.05, sorted_pot.variables)
    select = Potential(cfg, sorted_pot.statistics, sorted_pot.variables, "float64", False)
    return sorted_pot, select


def _mol(seed=0, formula="CH3OH"):
    atoms = ase.build.molecule(formula)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def _close(a, b, tol=1e-10):
    for k in ("energy", "forces"):
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


def test_predict_sorted_equals_select_and_compiles_once(pots):
    sorted_pot, select = pots
    atoms = _mol()
    g = sorted_pot.graph_from_atoms(atoms)
    assert sorted_pot.element_budgets(g) == (4, 4, 0, 4)  # H4 C O, rounded up to 4
    assert select.element_budgets(g) is None
    want = select.predict(atoms, ("energy", "forces"))
    got = sorted_pot.predict(atoms, ("energy", "forces"))
    _close(got, want)
    n = sorted_pot.trace_count
    atoms.positions += 0.01
    sorted_pot.predict(atoms, ("energy", "forces"))
    assert sorted_pot.trace_count == n  # same composition: no recompile


def test_batches_auto_select_and_forced_sort(pots):
    sorted_pot, select = pots
    mols = [_mol(0), _mol(1, "CH3CH2OH"), _mol(2, "CH3CN")]
    g = sorted_pot.graph_from_atoms(mols)
    assert sorted_pot.element_budgets(g) is None  # "auto": several structures -> select
    assert sorted_pot.element_budgets(g, force=True) == (16, 8, 4, 4)  # H13 C5 N1 O2
    forced = Potential(
        sorted_pot.config, sorted_pot.statistics, sorted_pot.variables, "float64", True
    )
    want = select.predict(mols, ("energy", "forces"))
    for a, b in zip(forced.predict(mols, ("energy", "forces")), want):
        _close(a, b)
    assert forced.astype("float64").element_sort is True
    with pytest.raises(ValueError, match="element_sort"):
        Potential(sorted_pot.config, sorted_pot.statistics, sorted_pot.variables, "float64", 1)


def test_calculator_and_jax_md_sorted_equal_select(pots):
    sorted_pot, select = pots
    atoms = _mol(3, "CH3CH2OH")
    calc = {}
    for name, p in (("sorted", sorted_pot), ("select", select)):
        a = atoms.copy()
        a.calc = TACECalculator(p)
        calc[name] = {"energy": a.get_potential_energy(), "forces": a.get_forces()}
    _close(calc["sorted"], calc["select"])
    md = {}
    for name, p in (("sorted", sorted_pot), ("select", select)):
        s = md_system(p, atoms)
        nbrs = s.neighbor_fn.allocate(s.positions)
        e, g = jax.jit(jax.value_and_grad(lambda r: s.energy_fn(r, nbrs)))(s.positions)  # noqa: B023
        md[name] = {"energy": float(e), "forces": -np.asarray(g)}
    _close(md["sorted"], md["select"])
    np.testing.assert_allclose(md["sorted"]["energy"], calc["select"]["energy"], atol=1e-10)
    energy = sorted_pot.energy_fn(sorted_pot.graph_from_atoms(atoms))
    got = jax.jit(energy)(jnp.asarray(sorted_pot.graph_from_atoms(atoms).positions))
    np.testing.assert_allclose(float(got), calc["select"]["energy"], atol=1e-10)


@pytest.mark.allow_nans
def test_budgets_below_the_counts_give_nan_not_a_wrong_energy(pots):
    sorted_pot, _ = pots
    g = sorted_pot.graph_from_atoms(_mol())
    good = sorted_pot.element_budgets(g)
    ok = sorted_pot.apply_fn(sorted_pot.variables, g, element_budgets=good)
    assert np.isfinite(float(ok["energy"][0]))
    short = (good[0] - 1, *good[1:])  # one H atom too many for its block
    bad = sorted_pot.apply_fn(sorted_pot.variables, g, element_budgets=short)
    assert np.isnan(float(bad["energy"][0]))
