"""The project's test helpers (``tace_jax.testing``) themselves: they must pass on correct code
and fail on broken code."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import to_compressed, to_full
from tace_jax.testing import (
    Rep,
    assert_equivariant,
    assert_max_traces,
    assert_no_recompile,
    assert_trees_close,
    clear_trace_counter,
    count_traces,
    random_o3,
    rotate,
    rotate_tree,
    wigner_cartesian,
)

# ---- random_o3 ------------------------------------------------------------------------------


def test_random_o3_orthogonal_and_forced_sign(key):
    for inversion, det in [(True, -1.0), (False, 1.0)]:
        r = random_o3(key, inversion=inversion)
        assert r.shape == (3, 3) and r.dtype == jnp.float64
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-14)
        np.testing.assert_allclose(np.linalg.det(r), det, atol=1e-14)
    # same key: the improper element is minus the proper one
    np.testing.assert_array_equal(random_o3(key, inversion=True), -random_o3(key, inversion=False))


def test_random_o3_random_sign_and_rotation(key):
    keys = jax.random.split(key, 64)
    rs = np.asarray(jax.vmap(random_o3)(keys))  # traceable
    dets = np.linalg.det(rs)
    np.testing.assert_allclose(np.abs(dets), 1.0, atol=1e-14)
    np.testing.assert_allclose(
        rs @ np.swapaxes(rs, 1, 2), np.broadcast_to(np.eye(3), rs.shape), atol=1e-14
    )
    assert 10 < (dets < 0).sum() < 54
    np.testing.assert_allclose(random_o3(keys[3]), rs[3], atol=1e-15)  # same values eagerly
    assert len({tuple(np.round(r, 6).ravel()) for r in rs}) == 64


def test_random_o3_float32(key):
    r = random_o3(key, dtype=jnp.float32)
    assert r.dtype == jnp.float32
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)


# ---- wigner_cartesian / rotate --------------------------------------------------------------


@pytest.mark.parametrize("l", range(6))
def test_wigner_is_a_representation(l, key):
    k1, k2 = jax.random.split(key)
    r1, r2 = random_o3(k1, inversion=True), random_o3(k2)
    d1, d2 = wigner_cartesian(r1, l), wigner_cartesian(r2, l)
    np.testing.assert_allclose(d1 @ d1.T, np.eye(2 * l + 1), atol=1e-13)
    np.testing.assert_allclose(wigner_cartesian(r1 @ r2, l), d1 @ d2, atol=1e-13)
    np.testing.assert_allclose(wigner_cartesian(-r2, l), (-1) ** l * d2, atol=1e-13)
    np.testing.assert_allclose(jax.jit(wigner_cartesian, static_argnums=1)(r1, l), d1, atol=1e-14)
    if l == 1:
        np.testing.assert_allclose(d1, r1, atol=1e-14)
    if l >= 1:  # not the identity
        assert np.abs(d2 - np.eye(2 * l + 1)).max() > 1e-3


@pytest.mark.parametrize("l", range(5))
def test_rotate_layouts_agree(l, key):
    r = random_o3(key, inversion=True)
    c = jax.random.normal(jax.random.fold_in(key, 1), (4, 2 * l + 1), jnp.float64)
    full = to_full(c, l)
    np.testing.assert_allclose(
        to_compressed(rotate(full, r, l, "full"), l), rotate(c, r, l, "compressed"), atol=1e-13
    )
    traced = jax.jit(functools.partial(rotate, rank=l, layout="compressed"))(c, r)
    np.testing.assert_allclose(traced, rotate(c, r, l, "compressed"), atol=1e-14)


def test_rotate_explicit_forms(key):
    r = random_o3(key)
    x = jax.random.normal(key, (5, 3), jnp.float64)
    m = jax.random.normal(key, (2, 3, 3), jnp.float64)
    np.testing.assert_allclose(rotate(x, r, 1, "vector"), x @ r.T, atol=1e-14)
    np.testing.assert_allclose(rotate(x, r, 1), x @ r.T, atol=1e-14)
    np.testing.assert_allclose(rotate(m, r, 2), r @ m @ r.T, atol=1e-14)
    np.testing.assert_array_equal(rotate(x, r, 0), x)
    np.testing.assert_allclose(rotate(x, -r, 1, parity=-1), x @ r.T, atol=1e-14)
    assert rotate(x.astype(jnp.float32), r, 1).dtype == jnp.float32


def test_rotate_bad_arguments(key):
    r = random_o3(key)
    with pytest.raises(ValueError):
        rotate(jnp.ones((4, 3)), r, 2, "full")
    with pytest.raises(ValueError):
        rotate(jnp.ones((4, 4)), r, 1, "compressed")
    with pytest.raises(ValueError):
        rotate(jnp.ones((4, 3, 3)), r, 2, "vector")
    with pytest.raises(ValueError):
        rotate(jnp.ones((4, 3)), r, 1, "spherical")


def test_rotate_tree_prefix_specs(key):
    r = random_o3(key)
    tree = {"pos": jnp.ones((2, 3)), "z": jnp.arange(2), "h": [jnp.ones((2, 1)), jnp.ones((2, 5))]}
    out = rotate_tree(tree, r, {"pos": 1, "z": None, "h": [0, Rep(2, "compressed")]})
    np.testing.assert_array_equal(out["z"], tree["z"])
    np.testing.assert_allclose(out["pos"], tree["pos"] @ r.T, atol=1e-14)
    np.testing.assert_allclose(out["h"][1], rotate(tree["h"][1], r, 2, "compressed"), atol=1e-14)


# ---- assert_equivariant ---------------------------------------------------------------------


def _toy_model(positions, cell):
    """A pair + "cell" potential with energy, forces and stress (full-layout rank 2)."""

    def energy(pos, cell, strain):
        deform = jnp.eye(3) + 0.5 * (strain + strain.T)
        pos, cell = pos @ deform, cell @ deform
        d = pos[:, None, :] - pos[None, :, :]
        r2 = jnp.sum(d**2, axis=-1) + jnp.eye(len(pos))
        pair = jnp.sum(jnp.triu(jnp.exp(-r2) * r2, 1))
        rc = pos[:, None, :] - cell[None, :, :]
        return pair + jnp.sum(jnp.exp(-0.3 * jnp.sum(rc**2, axis=-1)))

    zero = jnp.zeros((3, 3), positions.dtype)
    e, (g_pos, g_strain) = jax.value_and_grad(energy, argnums=(0, 2))(positions, cell, zero)
    volume = jnp.abs(jnp.linalg.det(cell))
    return {"energy": e, "forces": -g_pos, "stress": g_strain / volume}


_toy_model_jit = jax.jit(_toy_model)


def test_assert_equivariant_whole_model(key):
    k1, k2 = jax.random.split(key)
    pos = jax.random.normal(k1, (5, 3), jnp.float64)
    cell = 2.0 * jnp.eye(3) + 0.3 * jax.random.normal(k2, (3, 3), jnp.float64)
    out = _toy_model(pos, cell)
    assert np.abs(out["stress"]).max() > 1e-3 and np.abs(out["forces"]).max() > 1e-3
    err = assert_equivariant(
        _toy_model_jit,
        key,
        (pos, cell),
        in_ranks=(1, 1),
        out_ranks={"energy": 0, "forces": 1, "stress": 2},
        n_trials=4,
    )
    assert err < 1e-12
    # a wrong spec (stress declared as rows of vectors, i.e. rank 1) is caught
    model = _toy_model_jit
    with pytest.raises(AssertionError, match="stress"):
        assert_equivariant(model, key, (pos, cell), (1, 1), {"energy": 0, "forces": 1, "stress": 1})
    # forgetting to rotate the cell is caught
    with pytest.raises(AssertionError):
        assert_equivariant(
            model, key, (pos, cell), (1, None), {"energy": 0, "forces": 1, "stress": 2}
        )


def test_assert_equivariant_skips_none_outputs_and_untouched_inputs(key):
    x = jax.random.normal(key, (4, 3), jnp.float64)
    species = jnp.array([1, 2, 1, 3])

    def fn(x, species):
        return {"v": x * species[:, None], "junk": x[:, 0]}

    assert_equivariant(fn, key, (x, species), (1, None), {"v": 1, "junk": None})
    with pytest.raises(AssertionError, match="junk"):
        assert_equivariant(fn, key, (x, species), (1, None), {"v": 1, "junk": 0})


def test_assert_equivariant_single_argument_and_compressed(key):
    x = jax.random.normal(key, (4, 5), jnp.float64)  # rank 2, compressed

    def square(x):  # |x|² x stays equivariant
        return jnp.sum(x**2, -1, keepdims=True) * x

    assert_equivariant(square, key, x, 2, 2, layout="compressed")
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: x + 1.0, key, x, 2, 2, layout="compressed")


def test_assert_equivariant_always_tries_an_improper_element(key):
    a, b, c = jax.random.normal(key, (3, 3), jnp.float64)

    def triple(a, b, c):  # det[a, b, c]: SO(3)-invariant, odd under inversion
        return jnp.dot(a, jnp.cross(b, c))

    def cross(a, b):  # an axial vector
        return jnp.cross(a, b)

    with pytest.raises(AssertionError, match="improper"):
        assert_equivariant(triple, key, (a, b, c), (1, 1, 1), 0, n_trials=1)
    with pytest.raises(AssertionError, match="improper"):
        assert_equivariant(cross, key, (a, b), (1, 1), 1, n_trials=1)
    assert_equivariant(triple, key, (a, b, c), (1, 1, 1), Rep(0, parity=-1))
    assert_equivariant(cross, key, (a, b), (1, 1), Rep(1, parity=-1))
    # both kinds are used in two trials: a proper-only-invariant spec passes trial 1 alone
    with pytest.raises(AssertionError, match="trial 0"):
        assert_equivariant(triple, key, (a, b, c), (1, 1, 1), 0, n_trials=2)


def test_assert_equivariant_bad_specs(key):
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError):
        assert_equivariant(lambda x, y: x, key, (x, x), (1,), 1)
    with pytest.raises(ValueError):
        assert_equivariant(lambda x: x, key, x, 1, 1, layout="dense")
    with pytest.raises(TypeError):
        assert_equivariant(lambda x: x, key, x, "1", 1)


# ---- assert_trees_close ---------------------------------------------------------------------


def test_assert_trees_close():
    a = {"x": jnp.array([1.0, 2.0]), "y": [jnp.ones((2, 2))]}
    b = {"x": jnp.array([1.0, 2.0 + 1e-13]), "y": [jnp.ones((2, 2))]}
    assert_trees_close(a, b, atol=1e-12)
    with pytest.raises(AssertionError, match=r"\['x'\]"):
        assert_trees_close(a, b, atol=1e-14)
    assert_trees_close(a, {"x": a["x"] * (1 + 1e-9), "y": a["y"]}, atol=0, rtol=1e-8)
    with pytest.raises(AssertionError, match="structure"):
        assert_trees_close(a, {"x": a["x"]})
    with pytest.raises(AssertionError, match="shape"):
        assert_trees_close(a, {"x": a["x"][:1], "y": a["y"]})
    with pytest.raises(AssertionError, match="NaN"):
        assert_trees_close(jnp.array([jnp.nan, 1.0]), jnp.array([0.0, 1.0]), atol=1e9)
    assert_trees_close(jnp.array([jnp.nan, jnp.inf]), jnp.array([jnp.nan, jnp.inf]))
    with pytest.raises(AssertionError, match="dtype"):
        assert_trees_close(a["x"], a["x"].astype(jnp.float32), check_dtypes=True)


# ---- retracing ------------------------------------------------------------------------------


def test_count_traces_and_assert_no_recompile():
    def f(x, n):
        return x * n

    outs = assert_no_recompile(f, (jnp.ones(3), 2.0), (jnp.zeros(3), 3.0))
    np.testing.assert_array_equal(outs[0], 2.0 * np.ones(3))
    with pytest.raises(AssertionError, match="traced 2 times"):
        assert_no_recompile(f, (jnp.ones(3), 2.0), (jnp.ones(4), 2.0))
    assert_no_recompile(f, (jnp.ones(3), 2.0), (jnp.ones(4), 2.0), max_traces=2)
    # a static argument that changes forces a retrace
    with pytest.raises(AssertionError):
        assert_no_recompile(f, (jnp.ones(3), 2), (jnp.ones(3), 3), static_argnums=1)
    # an already jitted function works too
    assert_no_recompile(jax.jit(f), (jnp.ones(3), 2.0), (jnp.zeros(3), 3.0))

    counted = count_traces(f)
    jf = jax.jit(counted)
    jf(jnp.ones(2), 1.0)
    jf(jnp.ones(2), 5.0)
    counted(jnp.ones(2), 1.0)  # eager: not a trace
    assert counted.n_traces == 1
    jf(jnp.ones(5), 1.0)
    assert counted.n_traces == 2


def test_chex_reexports():
    clear_trace_counter()

    @jax.jit
    @assert_max_traces(n=1)
    def g(x):
        return x + 1

    g(jnp.ones(2))
    g(jnp.ones(2))
    with pytest.raises(AssertionError):
        g(jnp.ones(3))
    clear_trace_counter()
