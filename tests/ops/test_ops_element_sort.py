"""The element-sorted layout (tace_jax.ops._element_sort) equals the select path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.nn import Product
from tace_jax.ops import (
    element_budgets,
    element_layout,
    element_linear_sum,
    sorted_element_linear_sum,
    take_rows,
)
from tace_jax.testing import assert_equivariant


def _species(n, z, n_pad, seed):
    rng = np.random.default_rng(seed)
    sp = np.concatenate([rng.integers(0, z, n), rng.integers(0, z, n_pad)])
    mask = np.arange(n + n_pad) < n
    rng.shuffle(perm := np.arange(n + n_pad))  # padding nodes anywhere, not only last
    return sp[perm], mask[perm]


def test_budgets_round_up_and_reject_bad_species():
    assert element_budgets([0, 2, 2, 0, 1], [1, 1, 1, 1, 0], 3) == (4, 0, 4)
    assert element_budgets([1] * 9, [1] * 9, 2, multiple=1) == (0, 9)
    assert element_budgets([], [], 2) == (0, 0)
    with pytest.raises(ValueError, match=r"species must lie in \[0, 2\)"):
        element_budgets([0, 2], [1, 1], 2)
    with pytest.raises(ValueError, match="differ"):
        element_budgets([0, 1], [1], 2)


@pytest.mark.parametrize("z", [1, 4, 89])
def test_layout_is_a_sorted_padded_permutation(z):
    sp, mask = _species(40, z, 7, seed=z)
    budgets = element_budgets(sp, mask, z)
    perm, inv = (np.asarray(a) for a in element_layout(jnp.asarray(sp), jnp.asarray(mask), budgets))
    total = sum(budgets)
    assert perm.shape == (total,) and inv.shape == (len(sp),)
    off = np.cumsum([0, *budgets])
    for e in range(z):  # element e's rows hold its real nodes, in node order, then empty rows
        rows = perm[off[e] : off[e + 1]]
        real = np.flatnonzero(mask & (sp == e))
        np.testing.assert_array_equal(rows[: len(real)], real)
        assert np.all(rows[len(real) :] == len(sp))
    np.testing.assert_array_equal(perm[inv[mask]], np.flatnonzero(mask))
    assert np.all(inv[~mask] == total)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(len(sp), 3)))
    back = take_rows(take_rows(x, jnp.asarray(perm)), jnp.asarray(inv))
    np.testing.assert_array_equal(np.asarray(back), np.asarray(x) * mask[:, None])


@pytest.mark.parametrize("z", [4, 89])
def test_sorted_linear_sum_equals_select_with_gradients(z):
    sp, mask = _species(33, z, 5, seed=1)
    n = len(sp)
    rng = np.random.default_rng(2)
    xs = [jnp.asarray(rng.normal(size=(n, 3, c))) for c in (6, 4)]
    ws = [jnp.asarray(rng.normal(size=(z, 5, c))) for c in (6, 4)]
    scales = [0.3, 1.7]
    onehot = jnp.asarray(np.eye(z)[sp] * mask[:, None])
    budgets = element_budgets(sp, mask, z)
    perm, inv = element_layout(jnp.asarray(sp), jnp.asarray(mask), budgets)

    def sorted_path(xs, ws):
        xs_s = [take_rows(x, perm) for x in xs]
        return take_rows(sorted_element_linear_sum(xs_s, ws, scales, budgets), inv)

    def select_path(xs, ws):
        return element_linear_sum(xs, ws, scales, onehot, method="select")

    got, want = sorted_path(xs, ws), select_path(xs, ws)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)
    assert np.all(np.asarray(got)[~mask] == 0.0)
    loss = lambda f: lambda xs, ws: jnp.sum(jnp.sin(f(xs, ws)))  # noqa: E731
    g_sorted = jax.grad(loss(sorted_path), argnums=(0, 1))(xs, ws)
    g_select = jax.grad(loss(select_path), argnums=(0, 1))(xs, ws)
    for a, b in zip(jax.tree.leaves(g_sorted), jax.tree.leaves(g_select)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-11)


def test_sorted_linear_sum_of_an_empty_batch():
    w = jnp.ones((3, 2, 4))
    out = sorted_element_linear_sum([jnp.ones((0, 1, 4))], [w], [1.0], (0, 0, 0))
    assert out.shape == (0, 1, 2)


def _product_case(key, z=3):
    le, c = 2, 3
    sp, mask = _species(9, z, 3, seed=5)
    n = len(sp)
    a = {
        l: jax.random.normal(jax.random.fold_in(key, l), (n, 2 * l + 1, c), jnp.float64)
        for l in range(le + 1)
    }
    onehot = jnp.asarray(np.eye(z)[sp] * mask[:, None])
    budgets = element_budgets(sp, mask, z)
    layout = (*element_layout(jnp.asarray(sp), jnp.asarray(mask), budgets), budgets)
    mod = Product(le, 3, (0, 1, 2), c + 1, c, z, out_bias=True)
    v = jax.tree.map(lambda x: x + 0.1, mod.init(key, a, onehot))
    return mod, v, a, onehot, layout, mask


def test_product_sorted_equals_select_and_is_equivariant(key):
    mod, v, a, onehot, layout, mask = _product_case(key)
    want = mod.apply(v, a, onehot)
    got = mod.apply(v, a, onehot, layout)
    for l in want:
        np.testing.assert_allclose(
            np.asarray(got[l])[mask], np.asarray(want[l])[mask], rtol=1e-12, atol=1e-12
        )

    @jax.jit
    def fn(a_c):  # channels-first in and out, as assert_equivariant's compressed layout wants
        o = mod.apply(v, {l: jnp.swapaxes(x, 1, 2) for l, x in a_c.items()}, onehot, layout)
        return {l: jnp.swapaxes(x, 1, 2) for l, x in o.items()}

    a_cf = {l: jnp.swapaxes(x, 1, 2) for l, x in a.items()}
    assert_equivariant(
        fn, key, a_cf, in_ranks={l: l for l in a}, out_ranks={0: 0, 1: 1, 2: 2},
        layout="compressed", atol=1e-11,
    )  # fmt: skip
    with pytest.raises(ValueError, match="element budgets"):
        mod.apply(v, a, onehot, (*layout[:2], layout[2][:-1]))
