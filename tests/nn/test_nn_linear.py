"""Linear, ElementLinear, DenseWeights (+ ops.mlp_apply), NodeEmbedding and NormGate."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.nn import DenseWeights, ElementLinear, Linear, NodeEmbedding, NormGate
from tace_jax.ops import mlp_alphas, mlp_apply
from tace_jax.testing import assert_equivariant


def _cl(fn):
    """Adapt a channels-last module ``[..., 2l+1, C]`` to the compressed convention."""
    return lambda x, *a: jnp.swapaxes(fn(jnp.swapaxes(x, -1, -2), *a), -1, -2)


@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_linear(rank, key):
    x = jax.random.normal(key, (5, 2 * rank + 1, 6), jnp.float64)
    mod = Linear(4, use_bias=rank == 0)
    v = mod.init(key, x)
    w = v["params"]["weight"]
    assert w.shape == (6, 4) and v["params"].get("bias", jnp.zeros(4)).shape == (4,)
    b = v["params"]["bias"] if rank == 0 else 0.0
    np.testing.assert_allclose(mod.apply(v, x), x @ w / math.sqrt(6) + b, atol=1e-14)
    assert float(jnp.abs(w).max()) <= math.sqrt(3)
    assert_equivariant(
        _cl(lambda y: mod.apply(v, y)),
        key,
        jnp.swapaxes(x, -1, -2),
        in_ranks=rank,
        out_ranks=rank,
        layout="compressed",
        atol=1e-12,
    )


def test_linear_bias_only_rank0(key):
    with pytest.raises(ValueError, match="rank 0"):
        Linear(3, use_bias=True).init(key, jnp.ones((2, 3, 4)))


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_element_linear(rank, key):
    n, z, cin, cout = 7, 3, 5, 4
    species = jnp.array([0, 1, 2, 1, 0, 2, 2])
    onehot = jax.nn.one_hot(species, z, dtype=jnp.float64)
    x = jax.random.normal(key, (n, 2 * rank + 1, cin), jnp.float64)
    mod = ElementLinear(cout, z, use_bias=rank == 0)
    v = mod.init(key, x, onehot)
    v = jax.tree.map(lambda a: a + 0.3, v)
    w = v["params"]["weights"]
    assert w.shape == (z, cout, cin)
    want = jnp.einsum("nmc,ndc->nmd", x, w[species]) / math.sqrt(cin)
    if rank == 0:
        want = want + v["params"]["bias"][species][:, None, :]
    np.testing.assert_allclose(mod.apply(v, x, onehot), want, atol=1e-13)
    assert_equivariant(
        _cl(lambda y: mod.apply(v, y, onehot)),
        key,
        jnp.swapaxes(x, -1, -2),
        in_ranks=rank,
        out_ranks=rank,
        layout="compressed",
        atol=1e-12,
    )


def test_mlp_alphas():
    # radial MLP of the reference yaml (docs/theory.md §2.11)
    np.testing.assert_allclose(
        mlp_alphas([8, 64, 64, 64, 48 * 17]), [1 / math.sqrt(8)] + [math.sqrt(2) / 8] * 3
    )
    # last-layer energy readout, backward init: √2/√16, then 1
    np.testing.assert_allclose(mlp_alphas([48, 16, 1], "backward"), [math.sqrt(2) / 4, 1.0])
    with pytest.raises(ValueError, match="init"):
        mlp_alphas([2, 2], "sideways")


def test_dense_weights_and_mlp_apply(key):
    x = jax.random.normal(key, (4, 8), jnp.float64)
    dw = DenseWeights((8, 6, 5, 3))
    v = dw.init(key, jnp.float64)
    p = v["params"]
    a = mlp_alphas([8, 6, 5, 3])
    h = jax.nn.silu(x @ p["weight_0"] * a[0])
    h = jax.nn.silu(h @ p["weight_1"] * a[1])
    ws = dw.apply(v, jnp.float64)
    np.testing.assert_allclose(mlp_apply(ws, x), h @ p["weight_2"] * a[2], atol=1e-13)


def test_node_embedding(key):
    onehot = jax.nn.one_hot(jnp.array([0, 2, 1]), 3, dtype=jnp.float64)
    mod = NodeEmbedding(4)
    v = mod.init(key, onehot)
    out = mod.apply(v, onehot)
    assert out.shape == (3, 1, 4)
    np.testing.assert_allclose(out[1, 0], v["params"]["weight"][2] / math.sqrt(3), atol=1e-14)


@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_norm_gate(rank, key):
    x = jax.random.normal(key, (5, 2 * rank + 1, 4), jnp.float64)
    gate = NormGate()
    v = gate.init(key, x)
    out = gate.apply(v, x)
    if rank == 0:
        assert v == {} or not v.get("params")
        np.testing.assert_allclose(out, jax.nn.silu(x), atol=1e-14)
    else:
        sq = jnp.sum(x * x, axis=-2, keepdims=True)  # squared Frobenius norm (Q_l isometry)
        np.testing.assert_allclose(out, jax.nn.sigmoid(sq) * x, atol=1e-14)
        v = jax.tree.map(lambda a: a - 0.4, v)
    assert_equivariant(
        _cl(lambda y: gate.apply(v, y)),
        key,
        jnp.swapaxes(x, -1, -2),
        in_ranks=rank,
        out_ranks=rank,
        layout="compressed",
        atol=1e-12,
    )
