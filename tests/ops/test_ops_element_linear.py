"""The grouped (element-sorted tiles) and select paths of element_linear agree exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import element_linear, element_linear_sum, grouped_element_linear


def _case(n, z, m, c, d, n_pad, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n + n_pad, m, c)))
    w = jnp.asarray(rng.normal(size=(z, d, c)))
    species = rng.integers(0, z, n)
    onehot = np.zeros((n + n_pad, z))
    onehot[np.arange(n), species] = 1.0
    return x, w, jnp.asarray(onehot), species


@pytest.mark.parametrize("z,tile", [(1, 4), (5, 16), (89, 16), (89, 3)])
def test_grouped_equals_select_and_numpy(z, tile):
    x, w, onehot, species = _case(n=37, z=z, m=3, c=6, d=4, n_pad=5)
    got = grouped_element_linear(x, w, onehot, tile=tile)
    sel = element_linear(x, w, onehot, method="select")
    want = np.einsum("nmc,ndc->nmd", np.asarray(x[:37]), np.asarray(w)[species])
    np.testing.assert_allclose(np.asarray(got[:37]), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(got), np.asarray(sel), rtol=1e-12, atol=1e-12)
    assert np.all(np.asarray(got[37:]) == 0.0)  # padding nodes give zero


def test_grouped_gradients_equal_select():
    x, w, onehot, _ = _case(n=20, z=12, m=2, c=5, d=3, n_pad=3, seed=1)

    def loss(method):
        return lambda x, w: jnp.sum(jnp.sin(element_linear(x, w, onehot, method=method)))

    gs = jax.grad(loss("grouped"), argnums=(0, 1))(x, w)
    gr = jax.grad(loss("select"), argnums=(0, 1))(x, w)
    for a, b in zip(gs, gr):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def test_grouped_extra_axes_and_auto_dispatch():
    x, w, onehot, _ = _case(n=10, z=16, m=6, c=4, d=2, n_pad=0, seed=2)
    x4 = x.reshape(10, 2, 3, 4)
    got = element_linear(x4, w, onehot)  # auto: 16 elements -> grouped
    want = element_linear(x, w, onehot, method="select").reshape(10, 2, 3, 2)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="method"):
        element_linear(x, w, onehot, method="dense")


def test_grouped_does_not_recompile_for_new_species():
    x, w, onehot, _ = _case(n=16, z=10, m=1, c=3, d=2, n_pad=2, seed=3)
    f = jax.jit(grouped_element_linear)
    f(x, w, onehot)
    other = jnp.roll(onehot, 3, axis=1)
    f(x, w, other)
    assert f._cache_size() == 1


@pytest.mark.parametrize("method,z", [("select", 5), ("grouped", 5), ("auto", 89)])
def test_element_linear_sum_equals_concatenated_blocks(method, z):
    """The blockwise sum (the product basis' ν blocks) equals one element-linear of the
    concatenated, scaled blocks, for each evaluation path; padding rows give zero."""
    rng = np.random.default_rng(3)
    x, _, onehot, species = _case(n=29, z=z, m=5, c=6, d=4, n_pad=3)
    xs = [x, jnp.asarray(rng.normal(size=(32, 5, 9))), jnp.asarray(rng.normal(size=(32, 5, 2)))]
    ws = [jnp.asarray(rng.normal(size=(z, 4, b.shape[-1]))) for b in xs]
    scales = [1.0, 0.25, 1 / 3]
    got = element_linear_sum(xs, ws, scales, onehot, method=method)
    cat_x = jnp.concatenate(xs, axis=-1)
    cat_w = jnp.concatenate([w * s for w, s in zip(ws, scales)], axis=-1)
    want = np.einsum("nmc,ndc->nmd", np.asarray(cat_x[:29]), np.asarray(cat_w)[species])
    np.testing.assert_allclose(np.asarray(got[:29]), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(got[29:]), 0.0)
