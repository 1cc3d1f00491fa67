"""Product basis: path lists and counts, insertion order vs the recursive definition,
equivariance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.nn import Product, product_paths
from tace_jax.ops import couple, couple_batched, product_step
from tace_jax.testing import assert_equivariant


def _counts(le, nu_max, outs, l1l2=None):
    _, c = product_paths(le, nu_max, outs, l1l2)
    return [[c[nu].get(l, 0) for l in range(le + 1)] for nu in range(1, nu_max + 1)]


def test_counts_table():
    # docs/theory.md §2.6 (L_e = 3, unpruned: all ranks kept)
    assert _counts(3, 3, (0, 1, 2, 3)) == [[1, 1, 1, 1], [4, 6, 7, 6], [23, 36, 42, 36]]
    assert _counts(3, 3, (0, 1, 2, 3), "<=") == [[1, 1, 1, 1], [4, 3, 5, 3], [15, 12, 18, 12]]
    # reference tiny fixture (L_e = 2): linear widths 3/4/4 and 11/15/15 blocks
    assert _counts(2, 3, (0, 1, 2)) == [[1, 1, 1], [3, 4, 4], [11, 15, 15]]


def test_backward_pruning():
    paths, counts = product_paths(3, 3, (0,))
    assert paths[3] == [(0, 0, 0), (1, 1, 0), (2, 2, 0), (3, 3, 0)]
    assert counts[3] == {0: 23}
    paths, counts = product_paths(3, 4, (0,), "<=")
    assert all(p[2] == 0 for p in paths[4])
    needed = {p[0] for p in paths[4]} | {p[1] for p in paths[4]}
    assert all(p[2] in needed for p in paths[3])
    with pytest.raises(ValueError, match="l1l2"):
        product_paths(3, 3, (0,), "??")


def _reference_basis(a, le, nu_max, outs):
    """The recursive definition (docs/theory.md §2.6) with ops.couple, layout [N, C, 2l+1]."""
    paths, _ = product_paths(le, nu_max, outs)
    basis = {1: {l: [a[l]] for l in a}}
    for nu in range(2, nu_max + 1):
        basis[nu] = {}
        for l1, l2, l3 in paths[nu]:
            for t in basis[nu - 1].get(l1, []):
                basis[nu].setdefault(l3, []).append(couple(t, a[l2], l1, l2, l3))
    return basis


def test_insertion_order(key):
    le, c, n = 2, 3, 4
    a = {
        l: jax.random.normal(jax.random.fold_in(key, l), (n, c, 2 * l + 1), jnp.float64)
        for l in range(le + 1)
    }
    ref = _reference_basis(a, le, 3, (0, 1, 2))
    paths, _ = product_paths(le, 3, (0, 1, 2))
    a_cl = {l: jnp.swapaxes(x, 1, 2) for l, x in a.items()}  # channels last
    a_cat = jnp.concatenate([a_cl[l] for l in range(le + 1)], axis=1)
    basis = {1: {l: x[:, :, None] for l, x in a_cl.items()}}
    for nu in (2, 3):
        basis[nu] = product_step(basis[nu - 1], a_cat, paths[nu], le)
        for l, blocks in ref[nu].items():
            got = basis[nu][l]  # [N, g, n, C]
            assert got.shape[2] == len(blocks)
            for k, b in enumerate(blocks):
                np.testing.assert_allclose(got[:, :, k, :], jnp.swapaxes(b, 1, 2), atol=1e-13)
    # single-path helper agrees too
    t = basis[2][1]
    one = couple_batched(t, a_cl[2], 1, 2, 3 if le >= 3 else 1)
    np.testing.assert_allclose(
        one[:, :, 0, :],
        jnp.swapaxes(couple(jnp.swapaxes(t[:, :, 0], 1, 2), a[2], 1, 2, 1), 1, 2),
        atol=1e-13,
    )


@pytest.mark.parametrize("outs", [(0, 1, 2), (0,), (1,), (0, 2)])
def test_product_equivariance(outs, key):
    le, c, n, z = 3, 3, 5, 2
    a = {
        l: jax.random.normal(jax.random.fold_in(key, l), (n, c, 2 * l + 1), jnp.float64)
        for l in range(le + 1)
    }
    onehot = jax.nn.one_hot(jnp.array([0, 1, 1, 0, 1]), z, dtype=jnp.float64)
    mod = Product(le, 3, outs, c + 1, c, z, out_bias=True)
    a_cl = {l: jnp.swapaxes(x, 1, 2) for l, x in a.items()}
    v = mod.init(key, a_cl, onehot)
    v = jax.tree.map(lambda x: x + 0.1, v)
    out = mod.apply(v, a_cl, onehot)
    assert sorted(out) == list(outs) and all(out[l].shape == (n, 2 * l + 1, c + 1) for l in outs)

    def fn(a_c):
        o = mod.apply(v, {l: jnp.swapaxes(x, 1, 2) for l, x in a_c.items()}, onehot)
        return {l: jnp.swapaxes(x, 1, 2) for l, x in o.items()}

    assert_equivariant(
        fn,
        key,
        a,
        in_ranks={l: l for l in a},
        out_ranks={l: l for l in outs},
        layout="compressed",
        atol=1e-11,
    )
