"""Polarization-quantum folding: a label shifted by whole quanta folds to the same difference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import fold_polarization


def _cell(rng, triclinic):
    a = np.diag(rng.uniform(3.5, 6.0, 3))
    if triclinic:
        a = a + rng.uniform(-0.8, 0.8, (3, 3)) * (1 - np.eye(3))
    return a


@pytest.mark.parametrize("triclinic", [False, True])
def test_shift_by_quantum_folds_to_same_difference(triclinic):
    rng = np.random.default_rng(3)
    cell = _cell(rng, triclinic)
    vol = abs(np.linalg.det(cell))
    d = rng.normal(scale=0.2 / vol, size=3)  # well inside the branch
    n = np.array([1, -2, 3])
    shifted = d + n @ cell / vol  # whole quanta e·R/Ω
    out = fold_polarization(jnp.asarray(shifted), jnp.asarray(cell), jnp.ones(3, bool))
    np.testing.assert_allclose(np.asarray(out), d, atol=1e-12)
    # the loss on the folded difference equals the loss on the unshifted one
    np.testing.assert_allclose(float(jnp.sum(out**2)), float(np.sum(d**2)), rtol=1e-10)


def test_non_periodic_and_partial_pbc():
    rng = np.random.default_rng(4)
    cell = _cell(rng, True)
    vol = abs(np.linalg.det(cell))
    d = np.array([0.3, -0.2, 0.1]) / vol
    big = d + np.array([2, 1, 1]) @ cell / vol
    # molecule: nothing is folded
    out = fold_polarization(jnp.asarray(big), jnp.asarray(cell), jnp.zeros(3, bool))
    np.testing.assert_allclose(np.asarray(out), big, atol=1e-14)
    # slab periodic in a and b: only the c quantum stays
    out = fold_polarization(jnp.asarray(big), jnp.asarray(cell), jnp.array([True, True, False]))
    np.testing.assert_allclose(np.asarray(out), d + cell[2] / vol, atol=1e-12)


def test_batched_and_gradient_passes_through():
    rng = np.random.default_rng(5)
    cells = np.stack([_cell(rng, True), np.zeros((3, 3))])  # a periodic graph and a padding one
    pbc = np.array([[True] * 3, [False] * 3])
    d = rng.normal(scale=1e-3, size=(2, 3))
    out = fold_polarization(jnp.asarray(d), jnp.asarray(cells), jnp.asarray(pbc))
    np.testing.assert_allclose(np.asarray(out), d, atol=1e-14)
    g = jax.grad(lambda x: jnp.sum(fold_polarization(x, cells, pbc) ** 2))(jnp.asarray(d))
    np.testing.assert_allclose(np.asarray(g), 2 * d, atol=1e-14)
    assert np.all(np.isfinite(np.asarray(g)))
