"""Scalar and tensor readouts, multi-head selection."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.nn import ScalarReadout, TensorReadout
from tace_jax.testing import assert_equivariant


def test_scalar_readout(key):
    x = jax.random.normal(key, (6, 8), jnp.float64)
    lin = ScalarReadout(())
    v = lin.init(key, x)
    np.testing.assert_allclose(lin.apply(v, x), (x @ v["params"]["weight_0"])[:, 0] / math.sqrt(8))
    mlp = ScalarReadout((4,))
    v = mlp.init(key, x)
    p = v["params"]
    h = jax.nn.silu(x @ p["weight_0"] * (math.sqrt(2) / 2))  # backward init: √2/√4
    np.testing.assert_allclose(mlp.apply(v, x), (h @ p["weight_1"])[:, 0], atol=1e-13)


def test_multi_head_selection(key):
    x = jax.random.normal(key, (4, 8), jnp.float64)
    level = jax.nn.one_hot(jnp.array([0, 1, 1, 0]), 2, dtype=jnp.float64)
    mod = ScalarReadout((3,), num_heads=2)
    v = mod.init(key, x, level)
    assert v["params"]["weight_0"].shape == (8, 6) and v["params"]["weight_1"].shape == (6, 2)
    out = mod.apply(v, x, level)
    # head m only sees its own hidden block
    p = v["params"]
    a = [math.sqrt(2) / math.sqrt(6), 1.0 / math.sqrt(2)]  # backward init on widths 6, 2
    h = jax.nn.silu(x @ p["weight_0"] * a[0])
    want = []
    for i, m in enumerate([0, 1, 1, 0]):
        hm = h[i, 3 * m : 3 * m + 3]
        want.append(hm @ p["weight_1"][3 * m : 3 * m + 3, m] * a[1])
    np.testing.assert_allclose(out, want, atol=1e-13)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("hidden", [(), (4,)])
def test_tensor_readout_equivariance(rank, hidden, key):
    x = jax.random.normal(key, (5, 2 * rank + 1, 6), jnp.float64)
    mod = TensorReadout(hidden)
    v = mod.init(key, x)
    out = mod.apply(v, x)
    assert out.shape == (5, 2 * rank + 1)
    assert_equivariant(
        lambda y: mod.apply(v, jnp.swapaxes(y, -1, -2)),
        key,
        jnp.swapaxes(x, -1, -2),
        in_ranks=rank,
        out_ranks=rank,
        layout="compressed",
        atol=1e-12,
    )
