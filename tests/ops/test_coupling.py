"""Irreducible coupling ``[X⊗Y]_{l3} = Π_{l3}(X ⋆_k Y)/√3^k`` (docs/theory.md §1.5)."""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import (
    L1L2_OPTIONS,
    contraction_order,
    couple,
    coupling_paths,
    coupling_tensor,
    is_allowed,
    rank_relation,
    stf_projector,
    to_compressed,
    to_full,
)
from tace_jax.testing import assert_equivariant, assert_trees_close, random_o3, wigner_cartesian

ATOL = 1e-12
PATHS_4 = coupling_paths(4, 4, 4)  # every allowed (l1, l2, l3) with all ranks ≤ 4
PATHS_48 = coupling_paths(4, 4, 8)  # l1, l2 ≤ 4, any l3

# docs/theory.md §1.5 table of ‖K^{(l1 l2 l3)}‖²_F (k > 0 rows and the explicit k = 0 rows)
NORM_TABLE = {
    (1, 1, 0): Fraction(1),
    (1, 1, 2): Fraction(5),
    (1, 2, 1): Fraction(5, 3),
    (2, 1, 1): Fraction(5, 3),
    (1, 2, 3): Fraction(7),
    (2, 1, 3): Fraction(7),
    (1, 3, 2): Fraction(7, 3),
    (3, 1, 2): Fraction(7, 3),
    (2, 2, 0): Fraction(5, 9),
    (2, 2, 2): Fraction(35, 36),
    (2, 3, 1): Fraction(7, 9),
    (3, 2, 1): Fraction(7, 9),
    (2, 3, 3): Fraction(14, 15),
    (3, 2, 3): Fraction(14, 15),
    (3, 3, 0): Fraction(7, 27),
    (3, 3, 2): Fraction(14, 45),
}

# docs/theory.md §2.4: interaction paths for L_in = 2, L_e = 3, written out (l1, l2, l3; k)
SPEC_PATHS = [
    (0, 0, 0, 0), (0, 1, 1, 0), (0, 2, 2, 0), (0, 3, 3, 0),
    (1, 0, 1, 0), (1, 1, 0, 1), (1, 1, 2, 0), (1, 2, 1, 1), (1, 2, 3, 0), (1, 3, 2, 1),
    (2, 0, 2, 0), (2, 1, 1, 1), (2, 1, 3, 0), (2, 2, 0, 2), (2, 2, 2, 1), (2, 3, 1, 2),
    (2, 3, 3, 1),
]  # fmt: skip


def _random_stf(seed, shape, l):
    """Random compressed and full STF tensors with leading ``shape`` (numpy RNG: no compiles)."""
    c = jnp.asarray(np.random.default_rng(seed).normal(size=(*shape, 2 * l + 1)))
    return c, to_full(c, l)


def _reference_couple_full(x: np.ndarray, y: np.ndarray, l1: int, l2: int, l3: int):
    """Independent numpy version: tensordot over the last k of x and first k of y, project."""
    k = (l1 + l2 - l3) // 2
    lead = x.shape[: x.ndim - l1]
    out = np.stack(
        [
            np.tensordot(xi, yi, axes=(list(range(l1 - k, l1)), list(range(k))))
            for xi, yi in zip(
                x.reshape(-1, *x.shape[len(lead) :]), y.reshape(-1, *y.shape[len(lead) :])
            )
        ]
    )
    out = out.reshape(len(out), 3**l3) @ stf_projector(l3) / math.sqrt(3**k)
    return out.reshape(*lead, *((3,) * l3))


# ---- path enumeration -----------------------------------------------------------------------


def test_interaction_paths_of_the_spec():
    paths = coupling_paths(range(3), range(4), 3)
    assert paths == [p[:3] for p in SPEC_PATHS]
    assert [contraction_order(*p) for p in paths] == [p[3] for p in SPEC_PATHS]
    le = coupling_paths(range(3), range(4), 3, l1l2="<=")
    assert le == [p[:3] for p in SPEC_PATHS if p[0] <= p[1]]
    assert len(le) == 13
    # per-l3 counts of docs/theory.md §2.4
    assert [sum(p[2] == l3 for p in paths) for l3 in range(4)] == [3, 5, 5, 4]
    assert [sum(p[2] == l3 for p in le) for l3 in range(4)] == [3, 3, 4, 3]
    assert coupling_paths(0, 3, 3) == [(0, l, l) for l in range(4)]  # first layer


def test_coupling_paths_options():
    assert coupling_paths(2, 2, 4) == coupling_paths([2, 0, 1, 1], range(3), 4)
    assert all(a < b for a, b, _ in coupling_paths(3, 3, 6, l1l2="<"))
    assert all(a == b for a, b, _ in coupling_paths(3, 3, 6, l1l2="=="))
    assert all(is_allowed(*p) for p in PATHS_48)
    # the enumeration is complete: compare with brute force
    brute = [(a, b, c) for a in range(5) for b in range(5) for c in range(9) if is_allowed(a, b, c)]
    assert PATHS_48 == brute
    with pytest.raises(ValueError):
        coupling_paths(2, 2, 2, l1l2="<>")


@pytest.mark.parametrize(
    "triple", [(1, 1, 1), (0, 1, 0), (2, 1, 4), (1, 2, 0), (2, 2, 5), (-1, 1, 0)]
)
def test_disallowed_triples_raise(triple):
    assert not is_allowed(*triple)
    with pytest.raises(ValueError):
        contraction_order(*triple)
    with pytest.raises(ValueError):
        coupling_tensor(*triple)
    l1, l2, _ = triple
    if min(l1, l2) >= 0:
        with pytest.raises(ValueError):
            couple(jnp.ones((2, 2 * l1 + 1)), jnp.ones((2, 2 * l2 + 1)), *triple)


def test_shape_errors():
    with pytest.raises(ValueError):
        couple(jnp.ones((2, 3)), jnp.ones((2, 4)), 1, 1, 2)
    with pytest.raises(ValueError):
        couple(jnp.ones((2, 4)), jnp.ones((2, 3, 3)), 1, 2, 1, layout="full")
    with pytest.raises(ValueError):
        couple(jnp.ones((2, 3)), jnp.ones((2, 3, 2)), 1, 2, 1, layout="full")
    with pytest.raises(ValueError):
        couple(jnp.ones((2, 3)), jnp.ones((2, 3)), 1, 1, 2, layout="cartesian")


# ---- the coupling tensor K ------------------------------------------------------------------


def test_norm_table():
    for path, expected in NORM_TABLE.items():
        sq = float(np.sum(coupling_tensor(*path) ** 2))
        np.testing.assert_allclose(sq, float(expected), rtol=1e-12, err_msg=str(path))
    for path in PATHS_48:
        if contraction_order(*path) == 0:
            np.testing.assert_allclose(
                np.sum(coupling_tensor(*path) ** 2), 2 * path[2] + 1, rtol=1e-12
            )


def test_coupling_tensor_is_an_intertwiner(key):
    """D_{l3}(R) K(x, y) = K(D_{l1} x, D_{l2} y) for all allowed paths with l1, l2 ≤ 4."""
    for inversion in (True, False):
        rot = np.asarray(random_o3(key, inversion=inversion))
        d = [np.asarray(wigner_cartesian(rot, l)) for l in range(9)]
        for l1, l2, l3 in PATHS_48:
            kt = coupling_tensor(l1, l2, l3)
            assert kt.shape == (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1) and kt.dtype == np.float64
            lhs = np.einsum("cd,ijd->ijc", d[l3], kt)
            rhs = np.einsum("abc,ai,bj->ijc", kt, d[l1], d[l2])
            np.testing.assert_allclose(lhs, rhs, rtol=0, atol=ATOL, err_msg=str((l1, l2, l3)))


def test_special_coupling_tensors():
    """The shortcuts of the compressed ``couple``: K^{(0ll)} = K^{(l0l)} = I, K^{(ll0)} = δ/√3^l."""
    for l in range(6):
        np.testing.assert_allclose(coupling_tensor(0, l, l)[0], np.eye(2 * l + 1), atol=1e-14)
        np.testing.assert_allclose(coupling_tensor(l, 0, l)[:, 0], np.eye(2 * l + 1), atol=1e-14)
        np.testing.assert_allclose(
            coupling_tensor(l, l, 0)[..., 0], np.eye(2 * l + 1) / math.sqrt(3**l), atol=1e-14
        )


@pytest.mark.parametrize("path", [(1, 1, 2), (2, 3, 3), (3, 3, 2), (2, 1, 1)])
def test_contraction_orders_agree(path, seed):
    """x-shared, y-shared and equal-size inputs (three code paths) give the same result."""
    l1, l2, l3 = path
    x = _random_stf((seed, 0), (3, 4), l1)[0]
    y = _random_stf((seed, 1), (3, 4), l2)[0]
    kt = coupling_tensor(*path)
    ref = np.einsum("...a,...b,abc->...c", np.asarray(x), np.asarray(y), kt)
    np.testing.assert_allclose(couple(x, y, *path), ref, rtol=0, atol=1e-13)
    ref1 = np.einsum("...a,...b,abc->...c", np.asarray(x), np.asarray(y[:, :1]), kt)
    np.testing.assert_allclose(couple(x, y[:, :1], *path), ref1, rtol=0, atol=1e-13)
    ref2 = np.einsum("...a,...b,abc->...c", np.asarray(x[:1, :1]), np.asarray(y), kt)
    np.testing.assert_allclose(couple(x[:1, :1], y, *path), ref2, rtol=0, atol=1e-13)
    np.testing.assert_allclose(couple(x[0, 0], y, *path), ref2, rtol=0, atol=1e-13)


def test_intertwiner_check_is_live(key):
    """A perturbed K fails the same check (guards against a vacuous test)."""
    rot = np.asarray(random_o3(key, inversion=False))
    kt = coupling_tensor(2, 2, 2).copy()
    kt[0, 1, 2] += 1e-3
    d2 = np.asarray(wigner_cartesian(rot, 2))
    lhs = np.einsum("cd,ijd->ijc", d2, kt)
    rhs = np.einsum("abc,ai,bj->ijc", kt, d2, d2)
    assert np.abs(lhs - rhs).max() > 1e-6


# ---- couple ---------------------------------------------------------------------------------

E, C = 3, 2


@functools.cache
def _all_paths_fn(layout: str):
    """One jitted function evaluating every path with ranks ≤ 4 (one compilation per layout)."""

    def fn(xs, ys):
        return {p: couple(xs[p[0]], ys[p[1]], *p, layout=layout) for p in PATHS_4}

    return jax.jit(fn)


def _inputs(seed, layout):
    xs = [_random_stf((seed, 0, l), (E, C), l) for l in range(5)]
    ys = [_random_stf((seed, 1, l), (E, 1), l) for l in range(5)]
    pick = 0 if layout == "compressed" else 1
    return [x[pick] for x in xs], [y[pick] for y in ys]


@pytest.mark.parametrize("layout", ["compressed", "full"])
def test_couple_equivariant(layout, key, seed):
    xs, ys = _inputs(seed, layout)
    out_ranks = {p: p[2] for p in PATHS_4}
    err = assert_equivariant(
        _all_paths_fn(layout),
        key,
        (xs, ys),
        ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]),
        out_ranks,
        layout=layout,
        atol=ATOL,
        n_trials=2,
    )
    assert err < ATOL


def test_layouts_agree_and_full_output_is_stf(seed):
    xc, yc = _inputs(seed, "compressed")
    xf, yf = _inputs(seed, "full")
    oc, of = _all_paths_fn("compressed")(xc, yc), _all_paths_fn("full")(xf, yf)
    for (l1, l2, l3), full in of.items():
        comp = oc[(l1, l2, l3)]
        assert comp.shape == (E, C, 2 * l3 + 1)
        assert full.shape == (E, C, *((3,) * l3))
        np.testing.assert_allclose(to_compressed(full, l3), comp, rtol=0, atol=ATOL)
        np.testing.assert_allclose(to_full(comp, l3), full, rtol=0, atol=ATOL)
        # STF: symmetric in adjacent axes (these generate all permutations) and traceless
        f = np.asarray(full)
        for i in range(l3 - 1):
            np.testing.assert_allclose(f, np.swapaxes(f, 2 + i, 3 + i), rtol=0, atol=ATOL)
        if l3 >= 2:
            np.testing.assert_allclose(np.trace(f, axis1=2, axis2=3), 0, rtol=0, atol=ATOL)
        assert np.abs(f).max() > 1e-3  # non-trivial output


def test_full_layout_matches_definition(seed):
    """couple(full) equals Π_{l3}(X ⋆_k Y)/√3^k computed independently with tensordot."""
    xf, yf = _inputs(seed, "full")
    out = _all_paths_fn("full")(xf, yf)
    for l1, l2, l3 in PATHS_4:
        x = np.asarray(xf[l1])
        y = np.broadcast_to(np.asarray(yf[l2]), (E, C, *((3,) * l2)))
        ref = _reference_couple_full(x, y, l1, l2, l3)
        np.testing.assert_allclose(
            out[(l1, l2, l3)], ref, rtol=0, atol=ATOL, err_msg=str((l1, l2, l3))
        )


def test_explicit_low_rank_cases(seed):
    (xc, xf), (yc, yf) = _random_stf((seed, 0), (4,), 1), _random_stf((seed, 1), (4,), 1)
    dot = np.sum(np.asarray(xf) * np.asarray(yf), -1)
    np.testing.assert_allclose(
        couple(xf, yf, 1, 1, 0, layout="full"), dot / math.sqrt(3), atol=ATOL
    )
    np.testing.assert_allclose(couple(xc, yc, 1, 1, 0)[..., 0], dot / math.sqrt(3), atol=ATOL)
    outer = np.einsum("na,nb->nab", xf, yf)
    stf = 0.5 * (outer + np.swapaxes(outer, 1, 2)) - np.eye(3) * dot[:, None, None] / 3
    np.testing.assert_allclose(couple(xf, yf, 1, 1, 2, layout="full"), stf, atol=ATOL)
    s = jnp.asarray([[2.0]] * 4)
    np.testing.assert_allclose(couple(s, yc, 0, 1, 1), 2 * yc, atol=ATOL)
    np.testing.assert_allclose(couple(yc, s, 1, 0, 1), 2 * yc, atol=ATOL)


def test_broadcasting_channels(seed):
    """x [E, C, ...] with y [E, 1, ...] equals the explicit broadcast, in both layouts."""
    for layout in ("compressed", "full"):
        xs, ys = _inputs(seed, layout)
        for l1, l2, l3 in [(1, 2, 1), (2, 2, 2), (0, 3, 3), (3, 1, 2)]:
            y_b = jnp.broadcast_to(ys[l2], xs[l1].shape[:2] + ys[l2].shape[2:])
            got = couple(xs[l1], ys[l2], l1, l2, l3, layout=layout)
            want = couple(xs[l1], y_b, l1, l2, l3, layout=layout)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
            # the channel axis really differs (no accidental reduction)
            assert np.abs(np.asarray(got[:, 0]) - np.asarray(got[:, 1])).max() > 1e-6


def test_jit_vmap_and_dtypes(seed):
    xs, ys = _inputs(seed, "compressed")
    x, y = xs[2], ys[2]
    eager = couple(x, y, 2, 2, 2)
    jitted = jax.jit(couple, static_argnums=(2, 3, 4))(x, y, 2, 2, 2)
    vmapped = jax.vmap(lambda a, b: couple(a, b, 2, 2, 2))(x, y)
    assert_trees_close([jitted, vmapped], [eager, eager], atol=1e-14)
    out32 = couple(x.astype(jnp.float32), y.astype(jnp.float32), 2, 2, 2)
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(out32, eager, atol=1e-5)
    xf = to_full(x, 2).astype(jnp.float32)
    assert (
        couple(xf, to_full(y, 2).astype(jnp.float32), 2, 2, 2, layout="full").dtype == jnp.float32
    )


@pytest.mark.parametrize("layout", ["compressed", "full"])
def test_gradients_finite_and_correct(layout, seed):
    xs, ys = _inputs(seed, layout)
    paths = [(1, 1, 0), (2, 1, 3), (2, 2, 2), (3, 3, 2), (0, 2, 2)]
    rng = np.random.default_rng(seed)
    w = {p: jnp.asarray(rng.normal(size=_inputs(seed, layout)[0][p[2]].shape)) for p in paths}

    def loss(xs, ys):
        return sum(
            jnp.sum(couple(xs[a], ys[b], a, b, c, layout=layout) * w[(a, b, c)])
            for a, b, c in paths
        )

    gx, gy = jax.jit(jax.grad(loss, argnums=(0, 1)))(xs, ys)
    for g in [*gx, *gy]:
        assert np.all(np.isfinite(np.asarray(g)))
    assert np.abs(np.asarray(gy[2])).max() > 1e-6
    # the loss is bilinear: a central difference along a random direction is exact
    dx = [jnp.asarray(rng.normal(size=x.shape)) for x in xs]
    dy = [jnp.asarray(rng.normal(size=y.shape)) for y in ys]
    eps = 1e-3
    jloss = jax.jit(loss)
    plus = jloss([x + eps * d for x, d in zip(xs, dx)], [y + eps * d for y, d in zip(ys, dy)])
    minus = jloss([x - eps * d for x, d in zip(xs, dx)], [y - eps * d for y, d in zip(ys, dy)])
    directional = sum(jnp.vdot(g, d) for g, d in zip([*gx, *gy], [*dx, *dy]))
    np.testing.assert_allclose((plus - minus) / (2 * eps), directional, rtol=1e-9)


def test_l1l2_options():
    assert L1L2_OPTIONS == (None, "<=", "<", "==", ">=", ">", "!=")
    pairs = [(a, b) for a in range(3) for b in range(3)]
    ops = {"<=": "__le__", "<": "__lt__", "==": "__eq__", ">=": "__ge__", ">": "__gt__"}
    for opt in L1L2_OPTIONS:
        keep = rank_relation(opt)
        for a, b in pairs:
            want = True if opt is None else (a != b if opt == "!=" else getattr(a, ops[opt])(b))
            assert keep(a, b) == want, (opt, a, b)
    with pytest.raises(ValueError, match="l3l1 must be one of"):
        rank_relation("??", "l3l1")
    with pytest.raises(ValueError, match="l1l2"):
        coupling_paths(2, 2, 2, "??")
