"""Cartesian harmonics ``Y_l(r̂) = ((2l−1)!!/l!) Π_l(r̂^{⊗l})`` (docs/theory.md §1.4)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial import legendre

from tace_jax.ops import cartesian_harmonics, to_compressed, to_full
from tace_jax.testing import Rep, assert_equivariant, assert_trees_close

LMAX = 6
NORMS = [1, 1, 3 / 2, 5 / 2, 35 / 8, 63 / 8, 231 / 16]  # (2l−1)!!/l!, written out
ATOL = 1e-12


def _unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _outer_power(v: np.ndarray, l: int) -> np.ndarray:
    out = np.ones(v.shape[:-1])
    for _ in range(l):
        out = out[..., None] * v.reshape(v.shape[:-1] + (1,) * (out.ndim - v.ndim + 1) + (3,))
    return out


def _legendre(l: int, x: np.ndarray) -> np.ndarray:
    return legendre.legval(x, [0] * l + [1])


@functools.cache
def _harmonics(layout: str, seed: int = 0, n: int = 16):
    """Cached float64 harmonics of fixed random unit vectors (l ≤ 6 is the costly part)."""
    rng = np.random.default_rng(seed)
    u = _unit(rng, n)
    ys = cartesian_harmonics(jnp.asarray(u), LMAX, layout=layout, normalize=False)
    return u, [np.asarray(y) for y in ys]


@pytest.mark.parametrize("layout", ["compressed", "full"])
def test_shapes_and_dtype(layout):
    ys = cartesian_harmonics(jnp.ones((5, 2, 3)), 3, layout=layout)
    if layout == "compressed":
        assert [y.shape for y in ys] == [(5, 2, 1), (5, 2, 3), (5, 2, 5), (5, 2, 7)]
    else:
        assert [y.shape for y in ys] == [(5, 2), (5, 2, 3), (5, 2, 3, 3), (5, 2, 3, 3, 3)]
    assert all(y.dtype == jnp.float64 for y in ys)


@pytest.mark.parametrize("layout", ["compressed", "full"])
def test_float32_in_float32_out(layout):
    v = np.random.default_rng(1).normal(size=(7, 3))
    ys32 = cartesian_harmonics(jnp.asarray(v, jnp.float32), 4, layout=layout)
    ys64 = cartesian_harmonics(jnp.asarray(v, jnp.float64), 4, layout=layout)
    assert all(y.dtype == jnp.float32 for y in ys32)
    assert_trees_close(ys32, ys64, atol=1e-5)


def test_legendre_addition_theorem():
    """Y_l(u)·v^{⊗l} = P_l(u·v) (full layout) and Y_l(u)·Y_l(v) = n_l P_l(u·v) (compressed)."""
    u, ys_full = _harmonics("full", seed=0)
    v, _ = _harmonics("full", seed=1)
    _, yc_u = _harmonics("compressed", seed=0)
    _, yc_v = _harmonics("compressed", seed=1)
    cos = np.sum(u * v, axis=-1)
    assert np.ptp(cos) > 0.5  # the check covers a range of angles
    for l in range(LMAX + 1):
        vl = _outer_power(v, l).reshape(len(v), -1)
        lhs = np.sum(ys_full[l].reshape(len(u), -1) * vl, axis=-1)
        np.testing.assert_allclose(lhs, _legendre(l, cos), rtol=0, atol=ATOL, err_msg=f"l={l}")
        dot = np.sum(yc_u[l] * yc_v[l], axis=-1)
        np.testing.assert_allclose(dot, NORMS[l] * _legendre(l, cos), rtol=0, atol=ATOL)


@pytest.mark.parametrize("layout", ["compressed", "full"])
def test_norms_unit_vectors(layout):
    _, ys = _harmonics(layout)
    for l, y in enumerate(ys):
        sq = np.sum(y.reshape(len(y), -1) ** 2, axis=-1)
        np.testing.assert_allclose(sq, NORMS[l], rtol=0, atol=ATOL, err_msg=f"l={l}")


def test_norms_long_vectors_with_default_normalisation():
    """With ``normalize=True`` the 1e-9 added to |r| perturbs at 1e-9/|r| only."""
    rng = np.random.default_rng(3)
    v = _unit(rng, 8) * rng.uniform(1e4, 1e5, size=(8, 1))
    ys = cartesian_harmonics(jnp.asarray(v), LMAX)
    for l, y in enumerate(ys):
        np.testing.assert_allclose(np.sum(np.asarray(y) ** 2, -1), NORMS[l], rtol=1e-11)


def test_epsilon_convention():
    """r̂ = r/(|r| + 1e-9), the reference convention: visible for short vectors."""
    r = jnp.asarray([[1e-9, 0.0, 0.0]])
    y1 = cartesian_harmonics(r, 1)[1]
    np.testing.assert_allclose(y1, [[0.5, 0.0, 0.0]], rtol=1e-12)


def test_closed_forms():
    """Y2, Y3, Y4 written out as in docs/theory.md §1.4."""
    u, ys = _harmonics("full")
    d = np.eye(3)
    y2 = 1.5 * (np.einsum("na,nb->nab", u, u) - d / 3)
    uuu = np.einsum("na,nb,nc->nabc", u, u, u)
    du = (
        np.einsum("ab,nc->nabc", d, u)
        + np.einsum("ac,nb->nabc", d, u)
        + np.einsum("bc,na->nabc", d, u)
    )
    y3 = 2.5 * (uuu - du / 5)
    u4 = np.einsum("na,nb,nc,nd->nabcd", u, u, u, u)
    pairs = ["ab,ncd", "ac,nbd", "ad,nbc", "bc,nad", "bd,nac", "cd,nab"]
    duu = sum(np.einsum(f"{p}->nabcd", d, np.einsum("na,nb->nab", u, u)) for p in pairs)
    dd = sum(np.einsum(f"{p}->abcd", d, d) for p in ["ab,cd", "ac,bd", "ad,bc"])
    y4 = 35 / 8 * (u4 - duu / 7 + dd / 35)
    np.testing.assert_allclose(ys[0], 1.0, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ys[1], u, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ys[2], y2, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ys[3], y3, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ys[4], y4, rtol=0, atol=ATOL)


def test_layouts_agree():
    _, yf = _harmonics("full")
    _, yc = _harmonics("compressed")
    for l in range(LMAX + 1):
        np.testing.assert_allclose(to_compressed(jnp.asarray(yf[l]), l), yc[l], atol=ATOL)
        np.testing.assert_allclose(to_full(jnp.asarray(yc[l]), l), yf[l], atol=ATOL)


@pytest.mark.parametrize("layout", ["compressed", "full"])
def test_equivariance(layout, key):
    lmax = LMAX if layout == "compressed" else 5
    v = jax.random.normal(jax.random.fold_in(key, 1), (6, 3), jnp.float64) * 2.0
    fn = jax.jit(functools.partial(cartesian_harmonics, lmax=lmax, layout=layout))
    err = assert_equivariant(
        fn,
        key,
        (v,),
        in_ranks=(Rep(1, "vector"),),
        out_ranks=list(range(lmax + 1)),
        layout=layout,
        atol=1e-12,
        n_trials=3,
    )
    assert err < 1e-12


def test_equivariance_check_detects_wrong_parity(key):
    """The odd-l harmonics flip under inversion; an invariant spec for them must fail."""
    v = jax.random.normal(key, (4, 3), jnp.float64)
    fn = functools.partial(cartesian_harmonics, lmax=3)
    with pytest.raises(AssertionError, match="improper"):
        assert_equivariant(fn, key, (v,), (1,), [0, 1, 2, 0], layout="compressed", n_trials=1)


@pytest.mark.parametrize("layout", ["compressed", "full"])
def test_gradients_finite_at_origin_and_elsewhere(layout):
    rng = np.random.default_rng(5)
    vs = jnp.asarray(np.concatenate([np.zeros((1, 3)), rng.normal(size=(3, 3))]), jnp.float64)
    ys0 = cartesian_harmonics(vs, LMAX, layout=layout)
    weights = [jnp.asarray(rng.normal(size=y.shape[1:])) for y in ys0]

    def objectives(x):
        """Per l: sum of squares and a random linear functional (2·(LMAX+1) scalars)."""
        ys = cartesian_harmonics(x, LMAX, layout=layout)
        sq = [jnp.sum(y**2) for y in ys]
        lin = [jnp.sum(y * w) for y, w in zip(ys, weights)]
        return jnp.stack(sq + lin)

    jac = np.asarray(jax.jit(jax.jacrev(objectives))(vs))  # (2(LMAX+1), 4, 3)
    assert np.all(np.isfinite(jac)), np.argwhere(~np.isfinite(jac))
    # the linear functionals have non-zero gradients away from the origin (the test is live)
    assert np.all(np.abs(jac[LMAX + 2 :, 1:]).max(axis=(1, 2)) > 1e-3)
    for l in range(LMAX + 1):  # values at r = 0: Y_0 = 1, Y_l = 0 for l ≥ 1
        np.testing.assert_allclose(ys0[l][0], 1.0 if l == 0 else 0.0, atol=0)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    v = jnp.asarray(rng.normal(size=(3, 3)))
    w = [jnp.asarray(rng.normal(size=(3, 2 * l + 1))) for l in range(4)]

    @jax.jit
    def f(x):
        ys = cartesian_harmonics(x, 3)
        return sum(jnp.sum(y * wl) for y, wl in zip(ys, w))

    jax.test_util.check_grads(f, (v,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("layout", ["compressed", "full"])
def test_jit_and_vmap(layout):
    v = jnp.asarray(np.random.default_rng(7).normal(size=(4, 5, 3)))
    eager = cartesian_harmonics(v, 3, layout=layout)
    jitted = jax.jit(cartesian_harmonics, static_argnames=("lmax", "layout"))(
        v, lmax=3, layout=layout
    )
    vmapped = jax.vmap(lambda x: cartesian_harmonics(x, 3, layout=layout))(v)
    assert_trees_close(jitted, eager, atol=1e-14)
    assert_trees_close(vmapped, eager, atol=1e-14)


def test_bad_arguments():
    with pytest.raises(ValueError):
        cartesian_harmonics(jnp.ones((4, 2)), 2)
    with pytest.raises(ValueError):
        cartesian_harmonics(jnp.ones((4, 3)), 2, layout="dense")
