"""Interaction block: path lists, messages vs the irreducible coupling, equivariance, chunking."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.nn import Interaction, interaction_paths
from tace_jax.ops import (
    block_order,
    cartesian_harmonics,
    couple,
    edge_message_blocks,
    edge_messages,
    radial_features,
    safe_normalize,
    scan_edges,
)
from tace_jax.testing import Rep, assert_equivariant


def test_paths_reference_defaults():
    assert interaction_paths((0,), 3) == [(0, 0, 0), (0, 1, 1), (0, 2, 2), (0, 3, 3)]
    p = interaction_paths((0, 1, 2), 3)
    assert p == [
        (0, 0, 0), (0, 1, 1), (0, 2, 2), (0, 3, 3),
        (1, 0, 1), (1, 1, 0), (1, 1, 2), (1, 2, 1), (1, 2, 3), (1, 3, 2),
        (2, 0, 2), (2, 1, 1), (2, 1, 3), (2, 2, 0), (2, 2, 2), (2, 3, 1), (2, 3, 3),
    ]  # fmt: skip
    assert [sum(1 for q in p if q[2] == l) for l in range(4)] == [3, 5, 5, 4]
    p = interaction_paths((0, 1, 2), 3, "<=")
    assert len(p) == 13 and [sum(1 for q in p if q[2] == l) for l in range(4)] == [3, 3, 4, 3]


def test_edge_messages_match_coupling(key):
    n_e, c, le = 9, 4, 3
    paths = interaction_paths((0, 1, 2), le)
    ks = jax.random.split(key, 6)
    vec = jax.random.normal(ks[0], (n_e, 3), jnp.float64)
    ys = cartesian_harmonics(vec, le)
    x = {l: jax.random.normal(ks[1 + l], (n_e, 2 * l + 1, c), jnp.float64) for l in range(3)}
    radial = jax.random.normal(ks[5], (n_e, len(paths), c), jnp.float64)
    got = edge_messages(x, jnp.concatenate(ys, -1), radial, paths, le)
    off = 0
    for p, (l1, l2, l3) in enumerate(paths):
        g = 2 * l3 + 1
        # reference: R · [x ⊗ Y]_{l3} in the compressed layout [..., C, 2l+1]
        want = radial[:, p, :, None] * couple(
            jnp.swapaxes(x[l1], 1, 2), ys[l2][:, None, :], l1, l2, l3
        )
        np.testing.assert_allclose(got[:, off : off + g], jnp.swapaxes(want, 1, 2), atol=1e-13)
        off += g
    assert off == got.shape[1]


def test_message_derivatives_match_plain_formula(key):
    """The messages' custom tangent rule (tace_jax.ops._fused) gives the same first and
    second derivatives as the plain broadcast-multiply-sum, in float64."""
    n_e, c, le = 5, 3, 2
    paths = interaction_paths((0, 1, 2), le)
    ks = jax.random.split(key, 5)
    vec0 = jax.random.normal(ks[0], (n_e, 3), jnp.float64)
    x0 = {l: jax.random.normal(ks[1 + l], (n_e, 2 * l + 1, c), jnp.float64) for l in range(3)}
    radial = jax.random.normal(ks[4], (n_e, len(paths), c), jnp.float64)
    order = block_order(paths)

    def plain(vec, scale):
        ys = jnp.concatenate(cartesian_harmonics(vec, le), -1)
        out = []
        for l1, l2, l3 in paths:  # R · [x ⊗ Y]_{l3} path by path, no custom rule
            x = jnp.swapaxes(x0[l1] * scale, 1, 2)
            out.append(
                radial[:, len(out), :, None]
                * couple(
                    x, ys[:, None, sum(2 * k + 1 for k in range(l2)) : (l2 + 1) ** 2], l1, l2, l3
                )
            )
        return sum(jnp.sum(jnp.sin(o)) for o in out)

    def fused(vec, scale):
        ys = jnp.concatenate(cartesian_harmonics(vec, le), -1)
        x = {l: v * scale for l, v in x0.items()}
        msgs = edge_message_blocks(x, ys, radial[:, order], paths, le)
        return sum(jnp.sum(jnp.sin(m)) for m in msgs)

    s0 = jnp.asarray(1.3, jnp.float64)
    np.testing.assert_allclose(fused(vec0, s0), plain(vec0, s0), rtol=1e-12)
    for argnums in (0, 1):
        np.testing.assert_allclose(
            jax.grad(fused, argnums)(vec0, s0), jax.grad(plain, argnums)(vec0, s0), atol=1e-11
        )
    h_f = jax.hessian(fused)(vec0, s0)
    h_p = jax.hessian(plain)(vec0, s0)
    np.testing.assert_allclose(h_f, h_p, atol=1e-10)
    np.testing.assert_allclose(
        jax.jacfwd(jax.grad(fused, 1), 0)(vec0, s0),
        jax.jacfwd(jax.grad(plain, 1), 0)(vec0, s0),
        atol=1e-10,
    )


def test_scan_edges_chunking(key):
    n_e, n_n = 37, 5
    x = jax.random.normal(key, (n_e, 3), jnp.float64)
    recv = jax.random.randint(key, (n_e,), 0, n_n)
    fn = lambda a: jnp.concatenate([a, a**2], -1)  # noqa: E731
    full = scan_edges(fn, (x,), recv, n_n, 6, None)
    for chunk in (4, 8, 64):
        np.testing.assert_allclose(scan_edges(fn, (x,), recv, n_n, 6, chunk), full, atol=1e-13)


def _setup(key, input_ranks, le=3, c=4, n=6, n_e=20):
    ks = jax.random.split(key, 8)
    senders = jax.random.randint(ks[0], (n_e,), 0, n)
    receivers = jax.random.randint(ks[1], (n_e,), 0, n)
    vec = jax.random.normal(ks[2], (n_e, 3), jnp.float64) * 1.5
    h = {l: jax.random.normal(ks[3 + l], (n, 2 * l + 1, c), jnp.float64) for l in input_ranks}
    onehot = jax.nn.one_hot(jax.random.randint(ks[7], (n,), 0, 2), 2, dtype=jnp.float64)
    mask = jnp.ones(n_e, jnp.float64).at[-3:].set(0.0)
    mod = Interaction(
        input_ranks=input_ranks,
        lmax_edge=le,
        num_channel=c,
        num_channel_hidden=c + 1,
        radial_hidden=(8,),
        avg_num_neighbors=3.0,
        num_elements=2,
        sc_ranks=(0, 1, 2),
    )

    def run(variables, h, vec, chunk="auto"):
        unit, r = safe_normalize(vec)
        y_cat = jnp.concatenate(cartesian_harmonics(unit, le, normalize=False), -1)
        feats = radial_features(r, 5.0, 8, 5)
        m = mod.clone(edge_chunk=chunk)
        return m.apply(variables, h, feats, y_cat, senders, receivers, mask, onehot)

    unit, r = safe_normalize(vec)
    y_cat = jnp.concatenate(cartesian_harmonics(unit, le, normalize=False), -1)
    variables = mod.init(
        key, h, radial_features(r, 5.0, 8, 5), y_cat, senders, receivers, mask, onehot
    )
    variables = jax.tree.map(lambda a: a + 0.1, variables)
    return run, variables, h, vec


@pytest.mark.parametrize("input_ranks", [(0,), (0, 1, 2)])
def test_interaction_equivariance(input_ranks, key):
    run, variables, h, vec = _setup(key, input_ranks)
    a, sc = run(variables, h, vec)
    assert sorted(a) == [0, 1, 2, 3] and all(a[l].shape == (6, 2 * l + 1, 5) for l in a)
    assert sorted(sc) == [0, 1, 2] and all(sc[l].shape == (6, 2 * l + 1, 4) for l in sc)

    def fn(h_c, vec):  # compressed convention [..., C, 2l+1] for the checker
        a, sc = run(variables, {l: jnp.swapaxes(x, 1, 2) for l, x in h_c.items()}, vec)
        sw = lambda d: {l: jnp.swapaxes(x, 1, 2) for l, x in d.items()}  # noqa: E731
        return sw(a), sw(sc)

    h_c = {l: jnp.swapaxes(x, 1, 2) for l, x in h.items()}
    in_ranks = ({l: l for l in h_c}, Rep(1, "vector"))
    out_ranks = ({l: l for l in range(4)}, {l: l for l in range(3)})
    assert_equivariant(
        fn, key, (h_c, vec), in_ranks=in_ranks, out_ranks=out_ranks, layout="compressed", atol=1e-11
    )


def test_interaction_chunked_equals_unchunked(key):
    run, variables, h, vec = _setup(key, (0, 1, 2))
    a_full, _ = run(variables, h, vec, None)
    a_chunk, _ = run(variables, h, vec, 8)
    for l in a_full:
        np.testing.assert_allclose(a_chunk[l], a_full[l], atol=1e-13)
    # masked edges do not contribute
    run2, variables2, h2, vec2 = _setup(key, (0,))
    a1, _ = run2(variables2, h2, vec2)
    a2, _ = run2(variables2, h2, vec2.at[-3:].set(100.0))
    for l in a1:
        np.testing.assert_allclose(a1[l], a2[l], atol=1e-14)
