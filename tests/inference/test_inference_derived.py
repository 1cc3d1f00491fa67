"""``Potential.inference_variables``: the merged product-basis weights, derived once from the
parameters (``tace_jax.nn.product.derive_weights``), give the per-call merge's results, are
never created by ``init`` and follow a replaced ``variables``."""

from __future__ import annotations

import ase.build
import jax
import numpy as np
import pytest

from tace_jax.inference import Potential
from tace_jax.models import Statistics
from tace_jax.nn.product import DERIVED
from tace_jax.properties import compute_properties
from tace_jax.testing.configs import tiny_tace_config

Z = (1, 6, 7, 8)


@pytest.fixture(scope="module")
def pot():
    cfg = tiny_tace_config(Z, num_layers=2, correlation=3, lmax_edge=2, lmax_node=1, cutoff=3.5)
    p = Potential.init(cfg, Statistics.default(len(Z)), jax.random.key(3), "float64")
    p.variables = jax.tree.map(lambda x: x + 0.05, p.variables)
    return p


def _mol(seed=0, formula="CH3CH2OH"):
    atoms = ase.build.molecule(formula)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def _ef(pot, variables, graph, budgets=None):
    static = {} if budgets is None else {"element_budgets": budgets}
    apply = lambda v, g, edge_vecs=None: pot.apply_fn(v, g, edge_vecs, **static)  # noqa: E731
    return compute_properties(apply, variables, graph, ("energy", "forces"))


def test_init_creates_no_derived_weights(pot):
    assert DERIVED not in pot.variables
    fresh = Potential.init(pot.config, pot.statistics, jax.random.key(0), "float64")
    assert DERIVED not in fresh.variables


def test_derived_weights_are_merged_and_give_the_same_result(pot):
    inf = pot.inference_variables()
    derived = inf[DERIVED]
    assert derived, "the dedup product basis has merged weights"
    for layer, ws in derived.items():
        for name, w in ws.items():
            full = pot.variables["params"][layer][name]
            assert w.shape[:2] == full.shape[:2] and w.shape[2] < full.shape[2], (layer, name)
    mols = [_mol(0), _mol(1, "CH3CN")]
    g = pot.graph_from_atoms(mols)
    want = _ef(pot, pot.variables, g)
    for budgets in (None, pot.element_budgets(g, force=True)):  # select and sorted paths
        got = _ef(pot, inf, g, budgets)
        for k in ("energy", "forces"):
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)
    # the model reads the derived weights (not the parameters) when they are present
    scaled = {**inf, DERIVED: jax.tree.map(lambda w: 2.0 * w, derived)}
    moved = _ef(pot, scaled, g)
    assert np.max(np.abs(np.asarray(moved["energy"] - want["energy"]))) > 1e-6


def test_derived_weights_follow_replaced_variables(pot):
    atoms = _mol(2)
    before = pot.predict(atoms, ("energy", "forces"))
    new = jax.tree.map(lambda x: 1.1 * x, pot.variables)
    ref = Potential(pot.config, pot.statistics, new, "float64").predict(atoms, ("energy",))
    old = pot.variables
    try:
        pot.variables = new
        after = pot.predict(atoms, ("energy", "forces"))
    finally:
        pot.variables = old
    np.testing.assert_allclose(after["energy"], ref["energy"], rtol=1e-12)
    assert abs(after["energy"] - before["energy"]) > 1e-6
    again = pot.predict(atoms, ("energy", "forces"))
    np.testing.assert_allclose(again["energy"], before["energy"], rtol=1e-12)


def test_derived_weights_follow_an_array_replaced_in_place(pot):
    atoms = _mol(4)
    before = pot.predict(atoms, ("energy",))
    params = pot.variables["params"]
    layer = next(k for k in params if k.startswith("product"))
    name = next(k for k in params[layer] if k.startswith("linears_3"))
    old = params[layer][name]
    try:
        params[layer][name] = 1.5 * old  # the same dicts, one new leaf
        changed = pot.predict(atoms, ("energy",))
        ref = Potential(
            pot.config, pot.statistics, jax.tree.map(lambda x: x, pot.variables), "float64"
        ).predict(atoms, ("energy",))
    finally:
        params[layer][name] = old
    np.testing.assert_allclose(changed["energy"], ref["energy"], rtol=1e-12)
    assert abs(changed["energy"] - before["energy"]) > 1e-8
