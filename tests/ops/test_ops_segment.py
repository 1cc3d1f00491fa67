"""Edge chunking of the scatter sums (tace_jax.ops._segment): balanced chunks, same sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import scan_edges
from tace_jax.ops._segment import balanced_chunk


@pytest.mark.parametrize("n_edges,chunk", [(384, 256), (1000, 333), (17, 4), (4096, 1024), (9, 8)])
def test_balanced_chunk_covers_with_same_count(n_edges, chunk):
    n_chunks = -(-n_edges // chunk)
    c = balanced_chunk(n_edges, n_chunks)
    assert c <= chunk or chunk < 8
    assert -(-n_edges // c) == n_chunks  # same number of chunks
    assert n_chunks * c - n_edges < 8 * n_chunks  # under 8 padding rows per chunk


@pytest.mark.parametrize("chunk", [None, 7, 64, 1000])
def test_scan_edges_equals_segment_sum(chunk):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(384, 5)))
    w = jnp.asarray(rng.normal(size=(5, 3)))
    recv = jnp.asarray(rng.integers(0, 20, size=384))
    fn = lambda a: jnp.tanh(a @ w)
    want = jax.ops.segment_sum(fn(x), recv, num_segments=20)
    got = scan_edges(fn, (x,), recv, 20, 3, chunk)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    g_want = jax.grad(lambda a: jnp.sum(jax.ops.segment_sum(fn(a), recv, num_segments=20) ** 2))(x)
    g_got = jax.grad(lambda a: jnp.sum(scan_edges(fn, (a,), recv, 20, 3, chunk) ** 2))(x)
    np.testing.assert_allclose(g_got, g_want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", [None, 7, 1000])
def test_scan_edges_several_outputs_keep_their_shapes(chunk):
    """A list of outputs (the interaction's per-l1 groups) is summed per output, each in its
    own trailing shape, and equals one segment sum per output (values and gradients)."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(100, 4)))
    w1, w2 = jnp.asarray(rng.normal(size=(4, 6))), jnp.asarray(rng.normal(size=(4, 3)))
    recv = jnp.asarray(rng.integers(0, 11, size=100))

    def fn(a):
        return [jnp.tanh(a @ w1).reshape(-1, 2, 3), jnp.sin(a @ w2)]

    got = scan_edges(fn, (x,), recv, 11, [(2, 3), (3,)], chunk)
    assert [g.shape for g in got] == [(11, 2, 3), (11, 3)]
    for g, m in zip(got, fn(x)):
        np.testing.assert_allclose(g, jax.ops.segment_sum(m, recv, num_segments=11), atol=1e-12)

    def loss(a, scan):
        outs = scan_edges(fn, (a,), recv, 11, [(2, 3), (3,)], chunk) if scan else fn(a)
        if not scan:
            outs = [jax.ops.segment_sum(m, recv, num_segments=11) for m in outs]
        return sum(jnp.sum(o**2) for o in outs)

    np.testing.assert_allclose(
        jax.grad(loss)(x, True), jax.grad(loss)(x, False), rtol=1e-10, atol=1e-12
    )
