"""Deduplicated product basis (tace_jax.ops.product_plan): equal tensors computed once, the
reference blocks (and so the reference weights) unchanged."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.nn import Product, product_paths
from tace_jax.ops import coupling_is_symmetric, coupling_tensor, product_plan, product_step


def test_even_couplings_are_symmetric():
    for l1, l2 in itertools.product(range(4), repeat=2):
        for l3 in range(abs(l1 - l2), min(l1 + l2, 3) + 1, 2):
            assert coupling_is_symmetric(l1, l2, l3)
            k12, k21 = coupling_tensor(l1, l2, l3), coupling_tensor(l2, l1, l3)
            np.testing.assert_allclose(k12, np.swapaxes(k21, 0, 1), atol=1e-12)


def test_plan_of_the_default_model():
    paths, counts = product_paths(3, 3, (0, 1, 2))
    computed, maps = product_plan(paths, 3, 3)
    assert (len(paths[2]), len(computed[2])) == (23, 15)  # (l1, l2, l3) ~ (l2, l1, l3)
    assert computed[3] == paths[3]
    for nu in (2, 3):
        for l, n in counts[nu].items():
            assert len(maps[nu][l]) == n  # one entry per reference block
    assert {l: int(m.max()) + 1 for l, m in maps[3].items()} == {0: 15, 1: 23, 2: 26}


@pytest.mark.parametrize("le,nu_max", [(2, 3), (3, 4)])
def test_computed_blocks_equal_the_reference_blocks(le, nu_max, key):
    """Every reference block equals the computed tensor its map points to (float64)."""
    paths, counts = product_paths(le, nu_max, (0, 1, 2))
    computed, maps = product_plan(paths, le, nu_max)
    a = {
        l: jax.random.normal(jax.random.fold_in(key, l), (3, 2 * l + 1, 2), jnp.float64)
        for l in range(le + 1)
    }
    a_cat = jnp.concatenate([a[l] for l in range(le + 1)], axis=1)
    full = {l: x[:, :, None] for l, x in a.items()}
    dedup = dict(full)
    for nu in range(2, nu_max + 1):
        full = product_step(full, a_cat, paths[nu], le)
        dedup = product_step(dedup, a_cat, computed[nu], le)
        for l, ref in full.items():
            assert ref.shape[2] == counts[nu][l]
            got = jnp.take(dedup[l], jnp.asarray(maps[nu][l]), axis=2)
            np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-12, atol=1e-12)
        assert sum(x.shape[2] for x in dedup.values()) < sum(x.shape[2] for x in full.values())


@pytest.mark.parametrize("l1l2", [None, "<="])
def test_product_dedup_equals_full_with_gradients(l1l2, key):
    le, c, n, z = 3, 3, 4, 2
    a = {
        l: jax.random.normal(jax.random.fold_in(key, l), (n, 2 * l + 1, c), jnp.float64)
        for l in range(le + 1)
    }
    onehot = jax.nn.one_hot(jnp.array([0, 1, 1, 0]), z, dtype=jnp.float64)
    mods = {d: Product(le, 3, (0, 1, 2), c + 1, c, z, l1l2=l1l2, dedup=d) for d in (True, False)}
    v = jax.tree.map(lambda x: x + 0.1, mods[True].init(key, a, onehot))

    @jax.jit
    def loss(v, a):
        return {
            d: sum(jnp.sum(jnp.sin(y)) for y in m.apply(v, a, onehot).values())
            for d, m in mods.items()
        }

    out = loss(v, a)
    np.testing.assert_allclose(float(out[True]), float(out[False]), rtol=1e-12)
    grads = {
        d: jax.jit(jax.grad(lambda v, a, d=d: loss(v, a)[d], argnums=(0, 1)))(v, a)
        for d in (True, False)
    }
    for g1, g2 in zip(jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False])):
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-10, atol=1e-12)
